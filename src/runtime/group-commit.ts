import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { assert } from '../assert.ts';
import { ClosedError, ValidationError } from '../errors.ts';
import { integerOption } from '../resilience/options.ts';
import { BatchedWriteConflictError } from '../store/index.ts';
import { activeTraceparent, endSpan, linkTo, startSpan } from '../telemetry/index.ts';
import type { Clock, Timers } from '../time.ts';
import type { CommitPath, EntityRead, UnitScope } from './commit-path.ts';
import { type EntityChange, type EntityChangeFeed, trackingScope } from './entity-changes.ts';

/** One piece of work that must commit atomically: a command, a journal entry, a batch of records. */
export type Unit<T> = (scope: UnitScope) => Promise<T>;

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Aborts an optimistic transaction when one of its units throws (see GroupCommitter). */
class UnitFailed extends Error {
  constructor(failure: unknown) {
    super('A unit of the transaction failed', { cause: failure });
  }
}

/** What a unit tells the committer beside its work. */
export interface SubmitOptions {
  /** Entities the unit reads: read ahead with the others of its transaction (UnitScope.prefetch). */
  readonly reads?: readonly EntityRead[];
}

interface Pending {
  readonly work: Unit<unknown>;
  readonly reads: readonly EntityRead[] | undefined;
  /** The span that submitted the unit, when one records: the transaction's span links to it. */
  readonly submitter: string | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Lets every pending callback and promise continuation run before it resolves. The committer
 * yields so before each transaction: the sagas that the previous commit resumed reach their next
 * durable call first, and their units share the next transaction instead of trickling into many
 * small ones. It involves no time, so a simulated scheduler can supply its own.
 */
export type Yield = () => Promise<void>;

/** setImmediate runs after the microtask queue and pending I/O callbacks: one turn of the event loop. */
export const yieldToEventLoop: Yield = () => new Promise((resolve) => setImmediate(resolve));

export interface GroupCommitterOptions {
  /**
   * Units one transaction takes at most. Larger batches amortise the commit over more units;
   * smaller ones bound how long one transaction holds the writer. 1 to 10000. @default 1000
   */
  maxUnitsPerTransaction?: number;
  /** @default yieldToEventLoop */
  yield?: Yield;
  /**
   * After the yield, how long a transaction waits for more units before it starts (Kafka's
   * linger.ms): fewer, larger transactions. Not when the queue already fills one. 0 to 1000.
   * @default 0
   */
  lingerMs?: number;
  /** What the linger waits on. Required when lingerMs > 0. */
  timers?: Timers;
  /** Told each transaction's size and duration (for metrics). */
  onCommit?: (units: number, durationMs: number, ok: boolean) => void;
  /** What durations are measured with. @default none measured */
  clock?: Clock;
  /**
   * Told the entity changes of each committed transaction, before its units' callers resume;
   * changes are collected only while the feed has listeners.
   */
  changes?: EntityChangeFeed;
}

export interface GroupCommitStats {
  readonly transactions: number;
  readonly units: number;
  readonly failedUnits: number;
  readonly failedTransactions: number;
  /** Transactions rolled back because a unit threw, and run again with a savepoint per unit. */
  readonly retriedTransactions: number;
}

/**
 * Group commit: units submitted while a transaction is open (or in the same turn of the event
 * loop) share the next transaction. A unit that throws rejects only its own promise and leaves
 * nothing behind; the others commit. Every promise settles after the transaction's outcome is
 * known, so nobody acts on uncommitted state.
 *
 * Units run optimistically, straight in the transaction: units rarely throw (a rejected command
 * is an outcome, not an exception), and a savepoint per unit nearly doubled the statements of a
 * commit. When one does throw, the whole transaction rolls back and its units run again, each in
 * a savepoint of its own. So a unit may run more than once before it commits: it must be a
 * function of what it reads in the transaction and of its inputs (the runtime's units are: entity
 * command handlers are pure, saga steps journal results computed outside the unit).
 *
 * The transaction keeps taking units from the queue while it runs, and each transaction starts
 * after one yield to the event loop, so under load batches grow by themselves. By default no
 * timer is involved: the committer wakes on submissions alone (a simulated scheduler sees no
 * hidden time). With `lingerMs`, it also waits that long on the given timers before each
 * transaction that would not be full, trading that much latency for fewer, larger transactions
 * (docs/benchmarks.md).
 */
export class GroupCommitter {
  readonly #path: CommitPath;
  readonly #maxUnits: number;
  readonly #yield: Yield;
  readonly #lingerMs: number;
  readonly #timers: Timers | undefined;
  readonly #onCommit: GroupCommitterOptions['onCommit'];
  readonly #clock: Clock | undefined;
  readonly #changes: EntityChangeFeed | undefined;
  /** The context the committer was made in: transactions must not inherit a submitter's context. */
  readonly #root: AsyncResource;
  readonly #queue: Pending[] = [];
  /** Marks code running inside a unit, to refuse a submit that would wait for itself. */
  readonly #insideUnit = new AsyncLocalStorage<true>();
  #draining = false;
  #closed = false;
  #idle: Array<() => void> = [];
  #transactions = 0;
  #units = 0;
  #failedUnits = 0;
  #failedTransactions = 0;
  #retriedTransactions = 0;

  constructor(path: CommitPath, options: GroupCommitterOptions = {}) {
    this.#path = path;
    this.#maxUnits = integerOption('maxUnitsPerTransaction', options.maxUnitsPerTransaction, 1000, 1, 10_000);
    this.#yield = options.yield ?? yieldToEventLoop;
    this.#lingerMs = integerOption('lingerMs', options.lingerMs, 0, 0, 1000);
    this.#timers = options.timers;
    this.#onCommit = options.onCommit;
    this.#clock = options.clock;
    this.#changes = options.changes;
    if (this.#lingerMs > 0 && this.#timers === undefined) {
      throw new ValidationError(`'timers' must be given with a 'lingerMs' above 0`);
    }
    this.#root = new AsyncResource('meridian.group-commit');
  }

  get stats(): GroupCommitStats {
    return {
      transactions: this.#transactions,
      units: this.#units,
      failedUnits: this.#failedUnits,
      failedTransactions: this.#failedTransactions,
      retriedTransactions: this.#retriedTransactions,
    };
  }

  /** Units waiting for a transaction. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Commits `work` in a shared transaction; resolves with its result once that transaction committed. */
  submit<T>(work: Unit<T>, options: SubmitOptions = {}): Promise<T> {
    if (this.#closed) return Promise.reject(new ClosedError('The runtime is stopped: no more writes'));
    if (this.#insideUnit.getStore() === true) {
      // The unit would wait for a transaction that cannot start until the unit ends.
      return Promise.reject(
        new ValidationError(
          'A runtime call was made from inside a transaction (an entity handler or a subscription handler): use the handler context (ctx.send, ctx.emit) instead',
        ),
      );
    }
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        work: work as Unit<unknown>,
        reads: options.reads,
        submitter: activeTraceparent(),
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (!this.#draining) {
        this.#draining = true;
        this.#root.runInAsyncScope(() => void this.#drain());
      }
    });
  }

  /** Refuses new units and resolves once every queued unit has settled. */
  async close(): Promise<void> {
    this.#closed = true;
    if (!this.#draining) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  async #drain(): Promise<void> {
    try {
      for (;;) {
        await this.#yield();
        if (this.#lingerMs > 0 && this.#queue.length > 0 && this.#queue.length < this.#maxUnits) {
          await this.#linger();
        }
        if (this.#queue.length === 0) break;
        await this.#commitOne();
      }
    } finally {
      this.#draining = false;
      const idle = this.#idle;
      this.#idle = [];
      for (const resolve of idle) resolve();
    }
  }

  #linger(): Promise<void> {
    const timers = this.#timers;
    assert(timers !== undefined, 'a linger has timers');
    return new Promise((resolve) => timers.setTimeout(resolve, this.#lingerMs));
  }

  /**
   * One transaction, in a span of its own (`group-commit`, a root: it serves many traces at
   * once) linked to the spans that submitted its units.
   */
  async #commitOne(): Promise<void> {
    const span = startSpan('group-commit', { root: true });
    const taken: Pending[] = [];
    const startedMs = this.#clock?.monotonicNow() ?? 0;
    const failed = await this.#commitInto(taken);
    const durationMs = (this.#clock?.monotonicNow() ?? 0) - startedMs;
    this.#onCommit?.(taken.length, durationMs, failed === undefined);
    if (span.isRecording()) {
      span.setAttribute('meridian.commit.units', taken.length);
      for (const pending of taken.slice(0, 128)) {
        const link = linkTo(pending.submitter);
        if (link !== null) span.addLink(link);
      }
    }
    endSpan(span, failed);
  }

  /** Runs one transaction over units it takes into `taken`; the error when it failed as a whole. */
  async #commitInto(taken: Pending[]): Promise<unknown> {
    let outcomes: Outcome[];
    // The entity changes of the attempt that commits: a rolled-back attempt's are dropped.
    let changes: EntityChange[] | undefined;
    try {
      try {
        changes = this.#changes?.active === true ? [] : undefined;
        outcomes = await this.#attempt(taken, false, changes);
      } catch (error) {
        if (!(error instanceof UnitFailed || error instanceof BatchedWriteConflictError)) throw error;
        // One unit threw, and the transaction it shared rolled back whole: run the same units
        // again, each in a savepoint of its own this time, so that only the failing one fails.
        this.#retriedTransactions++;
        changes = this.#changes?.active === true ? [] : undefined;
        outcomes = await this.#attempt(taken, true, changes);
      }
    } catch (error) {
      // The transaction as a whole failed (the fence, the commit itself): nothing of it exists.
      // When it failed before taking any unit, the queued ones are refused too, or a path that
      // cannot open transactions (fenced, closed) would be retried forever.
      if (taken.length === 0) taken.push(...this.#queue.splice(0));
      this.#transactions++;
      this.#failedTransactions++;
      this.#failedUnits += taken.length;
      for (const pending of taken) pending.reject(error);
      return error;
    }
    assert(outcomes.length === taken.length, 'every unit taken into a transaction has an outcome');
    this.#transactions++;
    this.#units += taken.length;
    // Durable now: listeners (cache invalidation) hear of it before any caller acts on it.
    if (changes !== undefined && changes.length > 0) this.#changes?.committed(changes);
    taken.forEach((pending, index) => {
      const outcome = outcomes[index]!;
      if (outcome.ok) pending.resolve(outcome.value);
      else {
        this.#failedUnits++;
        pending.reject(outcome.error);
      }
    });
    return undefined;
  }

  /**
   * One transaction over the units in `taken` (run again first, on a retry) and whatever else is
   * queued, up to the limit. Without `isolated`, units run straight in the transaction, with no
   * savepoint each (a savepoint and its release were nearly half the statements of a commerce
   * order): the first unit to throw aborts it with UnitFailed. With `isolated`, each unit runs
   * in its own savepoint and a failure is that unit's outcome. With `changes`, the entity changes
   * the units note are collected there (a unit rolled back to its savepoint adds none).
   */
  async #attempt(
    taken: Pending[],
    isolated: boolean,
    changes: EntityChange[] | undefined,
  ): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    const prefetched = new Set<Pending>();
    // Marked once for the whole transaction: everything that runs in it is inside a unit.
    await this.#insideUnit.run(true, () =>
      this.#path.transaction(
        async (transactionScope) => {
          const scope = changes === undefined ? transactionScope : trackingScope(transactionScope, changes);
          for (let index = 0; ; index++) {
            let next = taken[index];
            if (next === undefined) {
              // The rerun after a failed unit takes no new units: with a savepoint per unit, a
              // unit that lost a lock race (a deadlock) rolls back alone while the transaction
              // keeps the locks of the others, so a rerun that grew from the queue held them
              // ever longer and deadlocked again (seen on the commerce cluster: 495 deadlocks on
              // Idempotency-Key rows over 5 minutes). Queued units wait for the next transaction.
              if (isolated || taken.length >= this.#maxUnits) break;
              next = this.#queue.shift();
              if (next === undefined) break;
              taken.push(next);
            }
            if (next.reads !== undefined && !prefetched.has(next)) {
              await scope.prefetch(this.#readsAhead(taken, index, prefetched));
            }
            if (!isolated) {
              try {
                outcomes.push({ ok: true, value: await next.work(scope) });
              } catch (error) {
                throw new UnitFailed(error);
              }
              continue;
            }
            try {
              outcomes.push({ ok: true, value: await scope.isolate(next.work) });
            } catch (error) {
              outcomes.push({ ok: false, error });
            }
          }
        },
        // The retry runs unbatched: each write then fails in the unit that made it.
        { batched: !isolated },
      ),
    );
    return outcomes;
  }

  /**
   * The reads of the units from `taken[index]` on and of those queued that this transaction can
   * still take, not read ahead yet (each then marked as read ahead).
   */
  #readsAhead(taken: readonly Pending[], index: number, prefetched: Set<Pending>): EntityRead[] {
    const reads: EntityRead[] = [];
    const room = Math.max(0, this.#maxUnits - taken.length);
    for (const pending of [...taken.slice(index), ...this.#queue.slice(0, room)]) {
      if (pending.reads === undefined || prefetched.has(pending)) continue;
      prefetched.add(pending);
      reads.push(...pending.reads);
    }
    return reads;
  }
}
