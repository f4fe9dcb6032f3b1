import { assert } from '../assert.ts';
import { ClosedError } from '../errors.ts';
import type { JournalEntry, SagaRecord } from '../store/types.ts';
import type { SagaDefinition } from './definitions.ts';
import type { ExecutionResult, SagaLaunch } from './saga-execution.ts';

/** A saga ready to run: its definition, record and journal. */
export interface LoadedSaga {
  readonly definition: SagaDefinition;
  readonly record: SagaRecord;
  readonly journal: JournalEntry[];
  /** The reason of a cancellation asked for while it was not running here, if any. */
  readonly cancelReason?: string;
}

/** One run of one saga, as the scheduler sees it. */
export interface ScheduledRun {
  /** Resolves with how the run ended (never rejects); 'parked' once it stopped where it was. */
  run(): Promise<ExecutionResult>;
  /** A durable timer of the saga fired at `nowMs` while the run holds its slot. */
  wake?(nowMs: number): void;
  /** A signal was delivered to the saga. */
  signalled?(): void;
  /** The saga was asked to cancel (durably). */
  cancelled?(reason: string): void;
}

export interface SagaSchedulerOptions {
  /** Sagas executing in memory at once (a saga in a durable sleep does not count). */
  readonly maxActive: number;
  /**
   * Loads a saga to resume it: what to run, its terminal result when it has already ended, or
   * null when it cannot run here now (the loader reports why). May throw (I/O).
   */
  load(sagaId: string): Promise<LoadedSaga | ExecutionResult | null>;
  /**
   * Makes the run of a loaded saga. `parking` aborts when the run must stop where it is (the
   * scheduler stops, or the saga is evicted): it parks at its next durable call.
   */
  execute(saga: LoadedSaga, parking: AbortSignal): ScheduledRun;
  report(problem: { sagaId: string; message: string; error: unknown }): void;
}

export interface SagaSchedulerStats {
  readonly active: number;
  readonly sleeping: number;
  readonly queued: number;
}

interface Queued {
  readonly id: string;
  /** Known when the saga was just created here; loaded by `load` otherwise. */
  readonly loaded?: LoadedSaga;
}

interface Active {
  readonly parking: AbortController;
  readonly run: ScheduledRun;
  readonly done: Promise<ExecutionResult>;
}

interface SlotWaiter {
  readonly id: string;
  /** true: a slot was handed over; false: woken without one (stopping, evicted). */
  readonly resume: (handed: boolean) => void;
}

type Settled = ExecutionResult | Error;

const parked: ExecutionResult = { outcome: 'parked', output: null, reason: null };

/**
 * Runs sagas in memory, at most `maxActive` at once: admission (a FIFO queue of sagas waiting
 * for a slot), slots, sleepers (a sleeping saga gives its slot back and takes one again, first
 * in line, when its timer fires), waiters for a saga's end, and parking on request — every
 * saga (`stop`) or some (`evict`). It knows nothing of the store or of definitions: `load` and
 * `execute` supply them.
 */
export class SagaScheduler {
  readonly #options: SagaSchedulerOptions;
  readonly #active = new Map<string, Active>();
  /** Sagas holding a slot while `load` reads them: evicting one aborts its run before it starts. */
  readonly #loading = new Map<string, AbortController>();
  readonly #queue: Queued[] = [];
  readonly #queuedIds = new Set<string>();
  readonly #sleepers = new Map<string, { wakeAt: number; wake: () => void }>();
  /** Executions waking from a sleep, waiting for a slot: served before new sagas. */
  readonly #slotWaiters: SlotWaiter[] = [];
  readonly #waiters = new Map<string, Array<(result: Settled) => void>>();
  /** Cancellations of sagas queued or loading, handed to their run once it exists. */
  readonly #cancels = new Map<string, string>();
  #freeSlots: number;
  #open = false;

  constructor(options: SagaSchedulerOptions) {
    assert(Number.isInteger(options.maxActive) && options.maxActive >= 1, 'maxActive is a positive integer');
    this.#options = options;
    this.#freeSlots = options.maxActive;
  }

  /** Starts admitting sagas. */
  open(): void {
    this.#open = true;
  }

  get stats(): SagaSchedulerStats {
    return { active: this.#active.size, sleeping: this.#sleepers.size, queued: this.#queue.length };
  }

  /** Sagas running or queued to run (not those sleeping on a timer). */
  get inProgress(): number {
    return this.#active.size + this.#queue.length;
  }

  /** True while the saga runs here or waits in the queue. */
  has(sagaId: string): boolean {
    return this.#active.has(sagaId) || this.#queuedIds.has(sagaId);
  }

  /** Queues a saga to run (once: a saga running or queued already is left alone). */
  enqueue(launch: SagaLaunch): void {
    if (!this.#open || this.has(launch.sagaId)) return;
    this.#queuedIds.add(launch.sagaId);
    this.#queue.push(
      launch.definition === undefined
        ? { id: launch.sagaId }
        : {
            id: launch.sagaId,
            loaded: { definition: launch.definition, record: launch.record!, journal: launch.journal! },
          },
    );
    this.#pump();
  }

  /** Queues these sagas to resume from their journals (those not already here). */
  resume(sagaIds: Iterable<string>): void {
    for (const sagaId of sagaIds) this.enqueue({ sagaId });
  }

  /**
   * Parks the executions of the sagas `which` selects and drops them from the queue. Resolves,
   * with their ids, once every one has parked (a running step finishes first; see `stop`'s
   * drain for a bound). Their waiters are answered 'parked'. They stay running in the store.
   */
  async evict(which: (sagaId: string) => boolean): Promise<string[]> {
    const evicted: string[] = [];
    for (let index = this.#queue.length - 1; index >= 0; index--) {
      const queued = this.#queue[index]!;
      if (!which(queued.id)) continue;
      this.#queue.splice(index, 1);
      this.#queuedIds.delete(queued.id);
      this.#cancels.delete(queued.id);
      evicted.push(queued.id);
      this.#settle(queued.id, parked);
    }
    for (const [sagaId, loading] of this.#loading) {
      if (which(sagaId)) loading.abort();
    }
    const parking: Promise<ExecutionResult>[] = [];
    for (const [sagaId, active] of this.#active) {
      if (!which(sagaId)) continue;
      evicted.push(sagaId);
      this.#park(sagaId, active);
      parking.push(active.done);
    }
    await Promise.all(parking);
    return evicted;
  }

  /**
   * Stops admitting, and parks every execution at its next durable call (sleepers wake to park).
   * `idle` tells when they have.
   */
  stop(): void {
    this.#open = false;
    for (const loading of this.#loading.values()) loading.abort();
    for (const [sagaId, active] of this.#active) this.#park(sagaId, active);
  }

  /** Resolves when every execution running now has ended. */
  async idle(): Promise<void> {
    await Promise.all([...this.#active.values()].map((active) => active.done));
  }

  /** Answers every waiter left with the error `why` makes (after a stop). */
  rejectWaiters(why: (sagaId: string) => Error): void {
    for (const [sagaId, waiters] of this.#waiters) {
      for (const waiter of waiters) waiter(why(sagaId));
    }
    this.#waiters.clear();
  }

  /**
   * How the saga's run here ends (its result, or an error when it could not run). `signal`
   * stops waiting (rejecting with its reason) and leaves nothing behind.
   */
  settled(sagaId: string, signal?: AbortSignal): Promise<Settled> {
    return new Promise((resolve, reject) => {
      const waiter = (result: Settled) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onAbort = () => {
        const waiters = this.#waiters.get(sagaId);
        const index = waiters?.indexOf(waiter) ?? -1;
        if (index !== -1) waiters!.splice(index, 1);
        if (waiters?.length === 0) this.#waiters.delete(sagaId);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const waiters = this.#waiters.get(sagaId);
      if (waiters === undefined) this.#waiters.set(sagaId, [waiter]);
      else waiters.push(waiter);
    });
  }

  /**
   * A sleeping saga gives its slot back while it sleeps and takes one again (first in line) to
   * continue. Resolves once `timerFired` woke it, or it must park (then it holds no new slot: its
   * run ends and releases the one it is counted for).
   */
  async sleep(sagaId: string, wakeAt: number): Promise<void> {
    const active = this.#active.get(sagaId);
    if (active === undefined || active.parking.signal.aborted) return;
    await new Promise<void>((resolve) => {
      this.#sleepers.set(sagaId, { wakeAt, wake: resolve });
      this.#releaseSlot();
    });
    this.#sleepers.delete(sagaId);
    if (!active.parking.signal.aborted && this.#freeSlots <= 0) {
      const handed = await new Promise<boolean>((resume) => this.#slotWaiters.push({ id: sagaId, resume }));
      if (handed) return;
    }
    // Not handed one: take a slot (which may go below zero for a parking run, which gives it back).
    this.#freeSlots--;
  }

  /** Ends a saga's `sleep` early (it then takes a slot again, first in line). */
  wake(sagaId: string): void {
    this.#sleepers.get(sagaId)?.wake();
  }

  /** A saga's wake timer fired at `nowMs`: wakes it, or resumes it when it is not in memory. */
  timerFired(sagaId: string, nowMs: number): void {
    const sleeper = this.#sleepers.get(sagaId);
    const active = this.#active.get(sagaId);
    if (sleeper !== undefined) {
      if (sleeper.wakeAt <= nowMs) sleeper.wake();
    } else if (active !== undefined) {
      active.run.wake?.(nowMs);
    } else if (!this.has(sagaId)) {
      // Not in memory (evicted, or owned by no one here yet): resume it from its journal.
      this.enqueue({ sagaId });
    }
  }

  /**
   * A signal was delivered to the saga: its run here looks for it (woken if it gave its slot
   * back), or it is resumed when it is not in memory.
   */
  signal(sagaId: string): void {
    const active = this.#active.get(sagaId);
    if (active !== undefined) {
      active.run.signalled?.();
      this.#sleepers.get(sagaId)?.wake();
    } else if (!this.has(sagaId)) {
      this.enqueue({ sagaId });
    }
  }

  /**
   * The saga was asked to cancel: its run here is told (woken if it gave its slot back), or told
   * once it starts when it is queued, or it is resumed (its load reads the request) when it is
   * not in memory.
   */
  cancel(sagaId: string, reason: string): void {
    const active = this.#active.get(sagaId);
    if (active !== undefined) {
      active.run.cancelled?.(reason);
      this.#sleepers.get(sagaId)?.wake();
    } else if (this.has(sagaId)) {
      this.#cancels.set(sagaId, reason);
    } else {
      this.enqueue({ sagaId });
    }
  }

  #park(sagaId: string, active: Active): void {
    active.parking.abort();
    this.#sleepers.get(sagaId)?.wake();
    const index = this.#slotWaiters.findIndex((waiter) => waiter.id === sagaId);
    if (index !== -1) this.#slotWaiters.splice(index, 1)[0]!.resume(false);
  }

  #pump(): void {
    while (this.#open && this.#queue.length > 0 && this.#freeSlots > 0) {
      const next = this.#queue.shift()!;
      this.#freeSlots--;
      void this.#launch(next);
    }
  }

  async #launch(queued: Queued): Promise<void> {
    const parking = new AbortController();
    this.#loading.set(queued.id, parking);
    const loaded = queued.loaded ?? (await this.#load(queued.id));
    this.#loading.delete(queued.id);
    this.#queuedIds.delete(queued.id);
    const cancelReason = this.#cancels.get(queued.id);
    this.#cancels.delete(queued.id);
    if (loaded === undefined || parking.signal.aborted || !this.#open || this.#active.has(queued.id)) {
      this.#releaseSlot();
      if (loaded === undefined)
        this.#settle(queued.id, new ClosedError(`Saga '${queued.id}' could not be resumed`));
      else if (parking.signal.aborted && this.#open) this.#settle(queued.id, parked);
      return;
    }
    const run = this.#options.execute(loaded, parking.signal);
    if (cancelReason !== undefined) run.cancelled?.(cancelReason);
    // Active before it starts: a resumed saga may reach its sleep before run() returns.
    let ended!: (result: ExecutionResult) => void;
    this.#active.set(queued.id, { parking, run, done: new Promise((resolve) => (ended = resolve)) });
    const result = await run.run();
    ended(result);
    this.#active.delete(queued.id);
    this.#releaseSlot();
    this.#settle(queued.id, result);
  }

  /** The saga to run, or undefined when it cannot (its end already settled its waiters). */
  async #load(sagaId: string): Promise<LoadedSaga | undefined> {
    try {
      const found = await this.#options.load(sagaId);
      if (found === null) return undefined;
      if ('definition' in found) return found;
      this.#settle(sagaId, found);
    } catch (error) {
      this.#options.report({ sagaId, message: 'loading a saga to resume it failed', error });
    }
    return undefined;
  }

  #settle(sagaId: string, result: Settled): void {
    const waiters = this.#waiters.get(sagaId);
    if (waiters === undefined) return;
    this.#waiters.delete(sagaId);
    for (const waiter of waiters) waiter(result);
  }

  #releaseSlot(): void {
    const waiter = this.#slotWaiters.shift();
    if (waiter !== undefined) {
      waiter.resume(true);
      return;
    }
    this.#freeSlots++;
    assert(this.#freeSlots <= this.#options.maxActive, 'free saga slots never exceed maxActive');
    this.#pump();
  }
}
