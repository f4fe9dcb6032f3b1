import { notificationPayload, sagaEndedChannel } from '../cluster/fenced-transaction.ts';
import type { Ownership } from '../cluster/ownership.ts';
import {
  ClosedError,
  isMeridianError,
  MeridianError,
  type MeridianErrorOptions,
  NotFoundError,
} from '../errors.ts';
import type { Consumer, Log, LogRecord, TopicPartition } from '../log/types.ts';
import {
  endedSagaStatuses,
  type Json,
  notificationsMayBeMissed,
  type SagaRecord,
  type Store,
  type StoredReply,
  type StoreReader,
} from '../store/types.ts';
import type { Clock, TimerHandle, Timers } from '../time.ts';
import type { UnitScope } from './commit-path.ts';
import type { GroupCommitter } from './group-commit.ts';
import { decodeWorkRequest, encodeWorkRequest, type WorkRequest } from './work-requests.ts';

/** The notification channel a reply's request id is announced on. */
export const repliesChannel = 'meridian_replies';

/** The inbox consumer name of work requests. */
const workInbox = '$meridian.work';
/**
 * When a waiter first looks in the store in case a notification was missed; each later look
 * waits twice as long, up to `safetyPollMaxMs`. Notifications wake waiters at once, and a dropped
 * listener connection wakes them all on reconnect, so this is only the last safety net. A fixed
 * interval made an overloaded cluster worse: with waits of ~13 s behind a backlog, every waiter
 * read every 2 s, and those reads were 9 of the 10 statements per saga on three nodes.
 */
const safetyPollMs = 4000;
const safetyPollMaxMs = 60_000;

/** How long an expected reply nobody awaited is remembered (its publishing unit rolled back). */
const expectedForMs = 60_000;
/**
 * How long an expected saga end nobody awaits is remembered: most routed starts are never
 * awaited (an HTTP handler answers 202), and a later wait just reads the saga first.
 */
const expectedEndForMs = 10_000;

interface Expectation {
  /** The row a notification carried before anyone awaited it. */
  data: unknown;
  /** A notification came (with the row or without: one too large to carry it). */
  notified: boolean;
  forget(): void;
}

/** How a saga ended, as waiters on other nodes learn it. */
export interface SagaEnd {
  readonly status: SagaRecord['status'];
  readonly output: Json | null;
  readonly reason: string | null;
}

/** A routed request got no reply in time. It may still be applied later, exactly once. */
export class RequestTimeoutError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('TIMEOUT', message, options);
  }
}

/** What applying a request produced: the reply to store, and what to do once it committed. */
export interface AppliedRequest extends Omit<StoredReply, 'requestId' | 'partition' | 'createdAt'> {
  readonly afterCommit?: () => void;
}

/** What the node needs from the runtime that hosts it. */
export interface ClusterHost {
  /** This node now owns `partitions` (claimed): resume their sagas and timers. */
  gained(partitions: readonly number[]): Promise<void>;
  /** This node no longer owns `partitions` (released): stop their work. */
  lost(partitions: readonly number[]): Promise<void>;
  /** Applies a request inside `scope` (on an owned partition). */
  apply(scope: UnitScope, request: WorkRequest): Promise<AppliedRequest>;
  report(problem: { message: string; error: unknown }): void;
}

export interface ClusterNodeOptions {
  store: Store;
  log: Log;
  ownership: Ownership;
  committer: GroupCommitter;
  clock: Clock;
  timers: Timers;
  host: ClusterHost;
  workTopic: string;
  /** The consumer group every node of the cluster joins. */
  group: string;
}

/**
 * One node's membership in the cluster: a member of the consumer group on the work topic, whose
 * assignment is the set of work partitions this node owns. Assigned partitions are claimed
 * (a new fencing epoch each) before the runtime resumes their work; revoked ones are released
 * first. The same consumer receives the work requests other nodes route to this node's
 * partitions and applies each exactly once, storing its reply; callers wait for replies here.
 */
export class ClusterNode {
  readonly #options: ClusterNodeOptions;
  readonly #stop = new AbortController();
  /** Callers waiting for a reply (`r:<request id>`) or a saga's end (`s:<saga id>`). */
  readonly #waiters = new Map<string, Set<(data?: unknown) => void>>();
  /** Replies announced before their request was sent (`expectReply`), with the row once notified. */
  readonly #expected = new Map<string, Expectation>();
  #consumer: Consumer | undefined;
  #changes: Promise<void> = Promise.resolve();
  #loop: Promise<void> = Promise.resolve();
  #unlisten: (() => Promise<void>) | undefined;

  constructor(options: ClusterNodeOptions) {
    this.#options = options;
  }

  async start(): Promise<void> {
    const replies = await this.#options.store.listen(repliesChannel, (payload) =>
      this.#notified('r:', payload),
    );
    const ended = await this.#options.store.listen(sagaEndedChannel, (payload) =>
      this.#notified('s:', payload),
    );
    this.#unlisten = async () => {
      await replies();
      await ended();
    };
    this.#consumer = this.#options.log.consumer({
      group: this.#options.group,
      topics: [this.#options.workTopic],
      onAssignment: (change) => {
        const partitions = (list: readonly TopicPartition[]) => list.map((tp) => tp.partition);
        this.#changes = this.#changes.then(() =>
          this.#reassign(partitions(change.assigned), partitions(change.revoked)),
        );
      },
    });
    this.#loop = this.#run(this.#consumer);
  }

  /** Leaves the group (the partitions go to other nodes) and stops waiting for replies. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await this.#consumer?.close();
    await this.#changes;
    await this.#lose(this.#options.ownership.owned());
    await this.#unlisten?.();
    for (const waiters of [...this.#waiters.values()]) for (const wake of [...waiters]) wake();
  }

  /** Resolves once assignment changes seen so far have been applied (claims done, work resumed). */
  settled(): Promise<void> {
    return this.#changes;
  }

  async #reassign(gained: readonly number[], revoked: readonly number[]): Promise<void> {
    try {
      await this.#lose(revoked);
    } catch (error) {
      this.#options.host.report({ message: 'giving up work partitions failed', error });
    }
    // Claiming (PostgreSQL unreachable) and resuming are each tried again while the group still
    // assigns the partitions here: until they succeed nobody runs them, which is safe, not lost.
    const claimed = await this.#untilDone('claiming work partitions', gained, (partitions) =>
      this.#options.ownership.claim(partitions),
    );
    await this.#untilDone('resuming work partitions', claimed, (partitions) =>
      this.#options.host.gained(partitions),
    );
  }

  /**
   * Runs `step` on `partitions` until it succeeds, pausing longer after each failure; between
   * tries, partitions the group took away (or this node gave up) are dropped. Returns those it
   * succeeded for.
   */
  async #untilDone(
    what: string,
    partitions: readonly number[],
    step: (partitions: readonly number[]) => Promise<unknown>,
  ): Promise<number[]> {
    let left = [...partitions];
    for (let attempt = 1; left.length > 0 && !this.#stop.signal.aborted; attempt++) {
      try {
        await step(left);
        return left;
      } catch (error) {
        this.#options.host.report({ message: `${what} failed (attempt ${attempt}); retrying`, error });
        await this.#pause(Math.min(5000, 250 * 2 ** Math.min(attempt, 5)));
        const still = new Set(this.#consumer?.assignment().map((tp) => tp.partition) ?? []);
        left = left.filter((partition) => still.has(partition));
      }
    }
    return [];
  }

  async #lose(partitions: readonly number[]): Promise<void> {
    const held = partitions.filter((partition) => this.#options.ownership.owns(partition));
    if (held.length === 0) return;
    this.#options.ownership.release(held);
    await this.#options.host.lost(held);
  }

  // -------------------------------------------------------------------------------------------
  // Requests this node applies

  async #run(consumer: Consumer): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let records: LogRecord[];
      try {
        records = await consumer.poll({ timeoutMs: 1000, signal });
        await this.#changes;
        this.#reconcile(consumer);
      } catch (error) {
        if (signal.aborted) break;
        this.#options.host.report({ message: 'polling the work topic failed', error });
        await this.#pause(1000);
        continue;
      }
      const owned = records.filter((record) => this.#options.ownership.owns(record.partition));
      this.#holdBack(consumer, records);
      if (owned.length === 0) continue;
      try {
        await Promise.all(owned.map((record) => this.#apply(record)));
        // Not awaited: the inbox already holds every request applied, so a request read again
        // (the offset commit failed or had not landed before a rebalance) is skipped. The next
        // poll need not wait a Kafka round trip.
        consumer.commit(owned).catch((error: unknown) => {
          if (!signal.aborted)
            this.#options.host.report({ message: 'committing work offsets failed', error });
        });
      } catch (error) {
        if (signal.aborted) break;
        // Nothing past the failure is committed: these records come again (here or at the next
        // owner), and the inbox skips the ones that were applied.
        this.#options.host.report({ message: 'applying work requests failed', error });
        this.#rewind(consumer, owned);
        await this.#pause(200);
      }
    }
  }

  /**
   * Repairs what assignment events can miss, so that a partition is never left assigned here
   * and held by nobody (its requests would wait forever: the group sees a live member). The
   * client can drop a partition and get it back between two polls without an event (a heartbeat
   * told it the group had forgotten it, as after a pause), so this node still holds an epoch
   * another node has replaced since; its first write is then fenced, which releases the
   * partition. Whatever the cause, a partition assigned here and not held is claimed again (a
   * new epoch), and one held but no longer assigned is given up. Checked after every poll;
   * the work is queued behind the assignment changes, and looks again when its turn comes.
   */
  #reconcile(consumer: Consumer): void {
    const drift = () => {
      const assigned = new Set(consumer.assignment().map((tp) => tp.partition));
      const { ownership } = this.#options;
      return {
        unheld: [...assigned].filter((partition) => !ownership.owns(partition)),
        unassigned: ownership.owned().filter((partition) => !assigned.has(partition)),
      };
    };
    const first = drift();
    if (this.#stop.signal.aborted || (first.unheld.length === 0 && first.unassigned.length === 0)) return;
    this.#changes = this.#changes.then(() => {
      if (this.#stop.signal.aborted) return;
      const { unheld, unassigned } = drift();
      return this.#reassign(unheld, unassigned);
    });
  }

  /**
   * Records of a partition the group assigned here but this node does not hold yet (its claim is
   * still being retried) are read again later.
   */
  #holdBack(consumer: Consumer, records: readonly LogRecord[]): void {
    this.#rewind(
      consumer,
      records.filter((record) => !this.#options.ownership.owns(record.partition)),
    );
  }

  /**
   * Moves the consumer back to the first of `records` in each partition it is still assigned
   * (a partition revoked meanwhile is read by its next owner from the committed offset).
   */
  #rewind(consumer: Consumer, records: readonly LogRecord[]): void {
    const assigned = new Set(consumer.assignment().map((tp) => tp.partition));
    const first = new Map<number, number>();
    for (const record of records) {
      if (assigned.has(record.partition) && !first.has(record.partition))
        first.set(record.partition, record.offset);
    }
    for (const [partition, offset] of first) consumer.seek(this.#options.workTopic, partition, offset);
  }

  async #apply(record: LogRecord): Promise<void> {
    let request: WorkRequest;
    try {
      request = decodeWorkRequest(record);
    } catch (error) {
      this.#options.host.report({
        message: 'skipped a record on the work topic that is not a request',
        error,
      });
      return;
    }
    const applied = await this.#options.committer.submit(
      async (scope) => {
        if (!(await scope.tx.inbox.markApplied(workInbox, request.requestId, this.#options.clock.now()))) {
          return undefined;
        }
        const result = await this.#options.host.apply(scope, request);
        const reply: StoredReply = {
          requestId: request.requestId,
          partition: record.partition,
          ok: result.ok,
          reply: result.reply,
          error: result.error,
          code: result.code,
          createdAt: this.#options.clock.now(),
        };
        await scope.tx.replies.put(reply);
        await scope.tx.notify(repliesChannel, notificationPayload(request.requestId, { ...reply }));
        return result;
      },
      request.kind === 'send' ? { reads: [{ entity: request.entity, id: request.id }] } : undefined,
    );
    applied?.afterCommit?.();
  }

  // -------------------------------------------------------------------------------------------
  // Requests this node sends

  /**
   * Sends `request` to the owner of its id's partition and waits up to `timeoutMs` for the
   * reply. RequestTimeoutError when none came in time: the request may still be applied, once.
   */
  async request(request: WorkRequest, timeoutMs: number, signal?: AbortSignal): Promise<StoredReply> {
    // Expected before it is sent, the reply's notification cannot come too early to be seen.
    this.expectReply(request.requestId);
    try {
      await this.#options.log.append(this.#options.workTopic, [encodeWorkRequest(request)]);
    } catch (error) {
      this.#expected.get(`r:${request.requestId}`)?.forget();
      throw error;
    }
    const deadline = new AbortController();
    const timer = this.#options.timers.setTimeout(() => deadline.abort(), timeoutMs);
    const onAbort = () => deadline.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.awaitReply(request.requestId, deadline.signal);
    } catch (error) {
      if (deadline.signal.aborted && !signal?.aborted && !this.#stop.signal.aborted) {
        throw new RequestTimeoutError(
          `No reply to ${request.kind} request '${request.requestId}' for '${request.id}' within ${timeoutMs} ms: the owner of its partition is busy, moving, or down. The request may still be applied later, exactly once`,
          { details: { requestId: request.requestId, id: request.id, timeoutMs } },
        );
      }
      throw error;
    } finally {
      timer.cancel();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Announces that a reply to `requestId` will be awaited, before the request can have been
   * applied (before it is sent, or inside the unit that publishes it): `awaitReply` then takes
   * the reply from its notification without a first read. Forgotten after `expectedForMs` if
   * never awaited (the unit that published it rolled back).
   */
  expectReply(requestId: string): void {
    this.#expect(`r:${requestId}`, expectedForMs);
  }

  /**
   * Announces that the end of saga `sagaId` will be awaited, before the saga can have ended (a
   * routed start not sent yet): `awaitSagaEnd` then waits for its notification without a first
   * read. `forgetSagaEnd` when the start did not create it (it may have ended long ago).
   */
  expectSagaEnd(sagaId: string): void {
    this.#expect(`s:${sagaId}`, expectedEndForMs);
  }

  forgetSagaEnd(sagaId: string): void {
    this.#expected.get(`s:${sagaId}`)?.forget();
  }

  #expect(key: string, forMs: number): void {
    if (this.#expected.has(key)) return;
    const timer = this.#options.timers.setTimeout(() => expectation.forget(), forMs);
    const expectation: Expectation = {
      data: undefined,
      notified: false,
      forget: () => {
        timer.cancel();
        this.#expected.delete(key);
      },
    };
    this.#expected.set(key, expectation);
  }

  /** Waits for the reply stored under `requestId` (woken by its notification; polling as a safety net). */
  awaitReply(requestId: string, signal?: AbortSignal): Promise<StoredReply> {
    return this.#awaitRow(`r:${requestId}`, signal, () =>
      this.#durableRead((tx) => tx.replies.get(requestId)),
    );
  }

  /** Waits until a saga (run by whichever node owns it) has ended; answers how. */
  awaitSagaEnd(sagaId: string, signal?: AbortSignal): Promise<SagaEnd> {
    const ended = async (tx: StoreReader) => {
      const record = await tx.sagas.get(sagaId);
      if (record === null) throw new NotFoundError(`Saga '${sagaId}' does not exist`);
      return endedSagaStatuses.has(record.status) ? record : null;
    };
    return this.#awaitRow<SagaEnd>(`s:${sagaId}`, signal, () => this.#durableRead(ended));
  }

  /**
   * `read`, and when it finds something, `read` again in a transaction with durable reads: what
   * is told to a caller was not read from a failed primary's surviving backends, which can show
   * commits its standby never received (see TransactionOptions.durableReads). Finding nothing
   * costs a plain read.
   */
  async #durableRead<T>(read: (tx: StoreReader) => Promise<T | null>): Promise<T | null> {
    const store = this.#options.store;
    if ((await store.read(read)) === null) return null;
    return store.transaction(read, { durableReads: true });
  }

  /**
   * Reads until `read` finds something, waiting in between for a notification on `key` (or the
   * slow safety-net poll); a notification that carries the row ends the wait without a read.
   * The waiter is registered before each read, so a notification that lands between the read
   * and the wait is not missed. A key expected before its row could exist skips the first read.
   */
  async #awaitRow<T>(
    key: string,
    signal: AbortSignal | undefined,
    read: () => Promise<T | null>,
  ): Promise<T> {
    const expectation = this.#expected.get(key);
    let mustRead = expectation === undefined;
    try {
      for (let looks = 0; ; looks++) {
        if (expectation?.data !== undefined) return expectation.data as T;
        // Notified before anyone waited, of a row too large to carry: it is there to read.
        if (expectation?.notified === true) mustRead = true;
        const wake = this.#waiter(key, signal, Math.min(safetyPollMaxMs, safetyPollMs * 2 ** looks));
        let found: T | null = null;
        try {
          if (mustRead) found = await read();
        } catch (error) {
          wake.cancel();
          throw error;
        }
        if (found !== null) {
          wake.cancel();
          return found;
        }
        if (this.#stop.signal.aborted) {
          wake.cancel();
          throw new ClosedError('The runtime is stopping: no more replies');
        }
        if (signal?.aborted) {
          wake.cancel();
          signal.throwIfAborted();
        }
        const data = await wake.woken;
        if (data !== undefined) return data as T;
        // Woken by the safety poll, a missed notification or one too large to carry the row.
        mustRead = true;
      }
    } finally {
      expectation?.forget();
    }
  }

  #waiter(
    key: string,
    signal: AbortSignal | undefined,
    pollMs: number,
  ): { woken: Promise<unknown>; cancel: () => void } {
    let done!: (data?: unknown) => void;
    const woken = new Promise<unknown>((resolve) => {
      let timer: TimerHandle | undefined;
      done = (data?: unknown) => {
        timer?.cancel();
        signal?.removeEventListener('abort', abort);
        const waiters = this.#waiters.get(key);
        waiters?.delete(done);
        if (waiters?.size === 0) this.#waiters.delete(key);
        resolve(data);
      };
      const abort = () => done();
      timer = this.#options.timers.setTimeout(abort, pollMs);
      signal?.addEventListener('abort', abort, { once: true });
      const waiters = this.#waiters.get(key) ?? new Set();
      waiters.add(done);
      this.#waiters.set(key, waiters);
    });
    return { woken, cancel: () => done() };
  }

  /**
   * A notification on the replies or saga-ended channel: wakes the waiters of its key with the
   * row it carries (if any), or every waiter when some may have been missed.
   */
  #notified(prefix: 'r:' | 's:', payload: string): void {
    if (payload === notificationsMayBeMissed) {
      for (const waiters of [...this.#waiters.values()]) for (const wake of [...waiters]) wake();
      return;
    }
    let id: unknown;
    let data: unknown;
    try {
      [id, data] = JSON.parse(payload) as [unknown, unknown];
    } catch (error) {
      this.#options.host.report({ message: 'skipped a notification that is not [id, row]', error });
      return;
    }
    const key = prefix + String(id);
    const expectation = this.#expected.get(key);
    if (expectation !== undefined) {
      expectation.notified = true;
      expectation.data ??= data;
    }
    const waiters = this.#waiters.get(key);
    if (waiters !== undefined) for (const wake of [...waiters]) wake(data);
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.#stop.signal;
      const done = () => {
        timer.cancel();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.#options.timers.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** True for errors that mean "this node cannot write there any more", not "the request is bad". */
export function isOwnershipError(error: unknown): boolean {
  return (
    isMeridianError(error) &&
    (error.code === 'NOT_OWNED' || error.code === 'FENCED' || error.code === 'CLOSED')
  );
}
