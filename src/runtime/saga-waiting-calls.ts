import { integerOption } from '../resilience/options.ts';
import type { JournalEntry, Json } from '../store/types.ts';
import type { UnitScope } from './commit-path.ts';
import type { SignalOptions } from './definitions.ts';
import { SignalTimeoutError } from './errors.ts';
import { requireRuntimeName } from './options.ts';
import type { CallOrder, CallRef } from './saga-calls.ts';
import { journalNames, sagaWakeTimerKind } from './saga-journal.ts';
import { takeSignal } from './saga-signals.ts';
import type { Waits } from './saga-waits.ts';

/** A signal wait's deadline, journaled when the wait starts (`timerId`: absent in older journals). */
interface SignalDeadline {
  readonly deadlineAt: number | null;
  readonly timeoutMs: number | null;
  readonly timerId?: string | null;
}

/** What the waiting calls need from the execution they belong to. */
export interface WaitingHost {
  readonly sagaId: string;
  readonly calls: CallOrder;
  readonly waits: Waits;
  now(): number;
  /** `SagaExecution`'s append: an entry (and `extra` effects) in one unit, handed over in turn. */
  append<T>(
    call: CallRef,
    entry: Omit<JournalEntry, 'sagaId' | 'sequence' | 'at'>,
    extra?: (scope: UnitScope, sequence: number) => Promise<T>,
    resultOf?: (sequence: number) => Json,
  ): Promise<T>;
  /** Submits a unit; parks the execution when it fails for good. */
  commit<T>(work: (scope: UnitScope) => Promise<T>): Promise<T>;
  /** A durable timer now exists at `dueAt`. */
  scheduled(dueAt: number): void;
  /** True once the execution must stop where it is. */
  parked(): boolean;
  park(): Promise<never>;
  /** True once the saga's code has returned or thrown. */
  codeEnded(): boolean;
  /** A durable boundary: rejects with the saga's cancellation when it was asked to cancel. */
  boundary(call: CallRef): Promise<void>;
}

/**
 * The calls of a saga that wait — `ctx.sleep` and `ctx.waitForSignal` — and how a replay finds
 * where their ends fall among the other calls' outcomes.
 */
export class WaitingCalls {
  readonly #host: WaitingHost;
  /** Replayed sleeps whose end the journal does not record (see `sleep`). */
  readonly #unsettledSleeps: Array<{ readonly index: number; readonly settle: () => void }> = [];
  /** The saga waited for a signal here: its mailbox is deleted when it ends. */
  usedSignals = false;

  constructor(host: WaitingHost) {
    this.#host = host;
  }

  /**
   * A durable sleep. Its entry (the wake time, with its timer) is journaled when it starts; its
   * end is journaled (`$wake`) only when something else was journaled or in flight meanwhile,
   * since only then does the order of its end among the other outcomes need recording. On
   * replay, a sleep followed by other entries but by no `$wake` either ended before them (then
   * they wait for it: the call order settles it once nobody else claims them) or was still
   * sleeping while they ran (then it sleeps on after the replay).
   */
  async sleep(call: CallRef, name: string, durationMs: number): Promise<void> {
    requireRuntimeName('A sleep name', name);
    integerOption('durationMs', durationMs, 0, 0, 31_536_000_000);
    const journaled = await this.#host.calls.next(call, 'sleep', name);
    let wakeAt: number;
    let sleptFrom: number;
    if (journaled !== undefined) {
      wakeAt = (journaled.result as { wakeAt: number }).wakeAt;
      sleptFrom = journaled.sequence + 1;
      if (this.#host.calls.journaled(call, 'event', journalNames.wake(name))) {
        await this.#host.calls.next(call, 'event', journalNames.wake(name));
        return;
      }
      if (this.#host.calls.replaying && (await this.#endedBeforeWhatFollows(call))) return;
    } else {
      wakeAt = this.#host.now() + durationMs;
      sleptFrom = await this.#host.append(
        call,
        { kind: 'sleep', name, status: 'completed', result: null, error: null, attempts: 0 },
        async (scope, sequence) => {
          await scope.tx.timers.schedule({
            id: `saga/${this.#host.sagaId}/${sequence}`,
            dueAt: wakeAt,
            kind: sagaWakeTimerKind,
            payload: { sagaId: this.#host.sagaId },
          });
          return sequence + 1;
        },
        (sequence) => ({ wakeAt, timerId: `saga/${this.#host.sagaId}/${sequence}` }),
      );
      this.#host.scheduled(wakeAt);
    }
    while (this.#host.now() < wakeAt) {
      await this.#host.boundary(call);
      await this.#host.waits.until(wakeAt);
      if (this.#host.parked()) return this.#host.park();
      if (this.#host.codeEnded()) return;
    }
    if (this.#host.calls.length > sleptFrom || this.#host.calls.pending > 1) {
      await this.#host.append(call, {
        kind: 'event',
        name: journalNames.wake(name),
        status: 'completed',
        result: null,
        error: null,
        attempts: 0,
      });
    }
  }

  /**
   * A replayed sleep whose end the journal does not record, with entries after it: true once the
   * call order finds nobody to claim the next entry (the code waits for this sleep: it ended
   * before them), false when the replay ends first (they ran while it slept). When the replay
   * is cut short instead (a journaled cancellation handed over, or a mismatch), the sleep fails
   * with it: taking that for the replay's end made the sleep go on live mid-replay and journal
   * its end after the saga's `$failed`, which the replay then waited for forever (the runtime
   * crash test's rare "journal holds event '$failed' but the code waits for nothing").
   */
  #endedBeforeWhatFollows(call: CallRef): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const waiter = { index: call.index, settle: () => resolve(true) };
      this.#unsettledSleeps.push(waiter);
      const leave = () => {
        const index = this.#unsettledSleeps.indexOf(waiter);
        if (index !== -1) this.#unsettledSleeps.splice(index, 1);
      };
      this.#host.calls.afterReplay().then(
        () => {
          leave();
          resolve(false);
        },
        (error: unknown) => {
          leave();
          reject(error);
        },
      );
    });
  }

  /** The earliest-made replayed sleep without a recorded end ends (see #sleep); false if none. */
  settleSleep(): boolean {
    if (this.#unsettledSleeps.length === 0) return false;
    let earliest = 0;
    for (let index = 1; index < this.#unsettledSleeps.length; index++) {
      if (this.#unsettledSleeps[index]!.index < this.#unsettledSleeps[earliest]!.index) earliest = index;
    }
    this.#unsettledSleeps.splice(earliest, 1)[0]!.settle();
    return true;
  }

  /**
   * Waits for signal `name`: its start (deadline and timer) is journaled, then its outcome — the
   * value taken from the mailbox in the unit that journals it, or the timeout.
   */
  async waitForSignal(call: CallRef, name: string, options: SignalOptions): Promise<Json> {
    requireRuntimeName('A signal name', name);
    const timeoutMs =
      options.timeoutMs === undefined
        ? null
        : integerOption('timeoutMs', options.timeoutMs, 0, 1, 31_536_000_000);
    this.usedSignals = true;
    const started = await this.#host.calls.next(call, 'event', journalNames.awaitSignal(name));
    let deadline: SignalDeadline;
    if (started !== undefined) {
      deadline = started.result as unknown as SignalDeadline;
    } else {
      const deadlineAt = timeoutMs === null ? null : this.#host.now() + timeoutMs;
      const deadlineOf = (sequence: number): SignalDeadline => ({
        deadlineAt,
        timeoutMs,
        timerId: deadlineAt === null ? null : `saga/${this.#host.sagaId}/${sequence}`,
      });
      deadline = await this.#host.append(
        call,
        {
          kind: 'event',
          name: journalNames.awaitSignal(name),
          status: 'completed',
          result: null,
          error: null,
          attempts: 0,
        },
        async (scope, sequence) => {
          const started = deadlineOf(sequence);
          if (started.timerId && deadlineAt !== null) {
            await scope.tx.timers.schedule({
              id: started.timerId,
              dueAt: deadlineAt,
              kind: sagaWakeTimerKind,
              payload: { sagaId: this.#host.sagaId },
            });
          }
          return started;
        },
        (sequence) => deadlineOf(sequence) as unknown as Json,
      );
      if (deadlineAt !== null) this.#host.scheduled(deadlineAt);
    }
    let outcome = await this.#host.calls.next(call, 'event', journalNames.signal(name));
    while (outcome === undefined) {
      const seen = this.#host.waits.signals;
      outcome = await this.#takeSignal(call, name, deadline);
      if (outcome !== undefined || this.#host.waits.signals !== seen) continue;
      await this.#host.boundary(call);
      await this.#host.waits.until(deadline.deadlineAt ?? Number.POSITIVE_INFINITY, true);
      if (this.#host.parked()) return this.#host.park();
      if (this.#host.codeEnded()) return null;
    }
    if (outcome.status === 'failed') throw new SignalTimeoutError(name, deadline.timeoutMs ?? 0);
    return (outcome.result as { value: Json }).value;
  }

  /** One look at the mailbox: the signal's entry (its value, or its timeout), or undefined. */
  #takeSignal(call: CallRef, name: string, deadline: SignalDeadline): Promise<JournalEntry | undefined> {
    return this.#host.calls.append(call, journalNames.signal(name), async (sequence, tagged) => {
      const nowMs = this.#host.now();
      const entry = await this.#host.commit(async (scope) => {
        const taken = await takeSignal(scope, this.#host.sagaId, name);
        const timedOut = deadline.deadlineAt !== null && nowMs >= deadline.deadlineAt;
        if (taken === undefined && !timedOut) return undefined;
        // Taken in time: its deadline's timer has nothing left to wake.
        if (taken !== undefined && deadline.timerId) await scope.tx.timers.delete(deadline.timerId);
        const written: JournalEntry = {
          sagaId: this.#host.sagaId,
          sequence,
          kind: 'event',
          name: tagged,
          status: taken === undefined ? 'failed' : 'completed',
          result: taken === undefined ? { code: 'SIGNAL_TIMEOUT' } : { value: taken.value },
          error: taken === undefined ? `No signal '${name}' arrived within ${deadline.timeoutMs} ms` : null,
          attempts: 1,
          at: nowMs,
        };
        await scope.tx.sagas.appendJournal(written);
        return written;
      });
      return { entry, value: entry };
    });
  }
}
