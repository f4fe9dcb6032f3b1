/**
 * The durable store: one portable schema on SQLite (embedded) and PostgreSQL (cluster).
 * Everything one handler changes is committed in one transaction.
 */
import type { WriteCheck, WriteHealthListener } from './write-health.ts';

/** Any JSON value. State, journal results and payloads are stored as JSON text. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface EntityRecord {
  readonly type: string;
  readonly id: string;
  readonly state: Json;
  /** 1 after the first write, +1 on each write. */
  readonly version: number;
  readonly updatedAt: number;
}

export interface EntityStore {
  get(type: string, id: string): Promise<EntityRecord | null>;
  /**
   * The records of those of `ids` (at most storeLimits.maxPageSize, of one type) that exist, by
   * id: one read instead of one per id.
   */
  getMany(type: string, ids: readonly string[]): Promise<Map<string, EntityRecord>>;
  /**
   * Writes state if the stored version equals `expectedVersion` (0: the entity must not exist).
   * Returns the new version; ConflictError when another writer got there first.
   */
  put(type: string, id: string, state: Json, expectedVersion: number): Promise<number>;
  /** Deletes if the stored version equals `expectedVersion`; ConflictError otherwise. */
  delete(type: string, id: string, expectedVersion: number): Promise<void>;
  /** A page of one type's entities ordered by id, after `afterId`. */
  list(type: string, options?: { afterId?: string; limit?: number }): Promise<EntityRecord[]>;
  /**
   * Retention: looks at the next `limit` entities of `type` in id order after `afterId` ('' from
   * the start) and deletes those last written before `idleBefore`. Returns how many it deleted
   * and the last id it looked at (null when none was left: the scan is through).
   */
  deleteIdle(request: IdleEntitiesRequest): Promise<{ deleted: number; lastId: string | null }>;
}

/** One step of retention's scan of a type's entities. */
export interface IdleEntitiesRequest {
  readonly type: string;
  /** '' to start from the first id. */
  readonly afterId: string;
  /** Entities last written before this time (ms since the epoch) are deleted. */
  readonly idleBefore: number;
  /** Entities looked at, at most (1 to storeLimits.maxPageSize). */
  readonly limit: number;
}

export type SagaStatus = 'running' | 'compensating' | 'completed' | 'compensated' | 'failed' | 'cancelled';

/** The statuses a saga ends in: it never changes again. */
export const endedSagaStatuses: ReadonlySet<SagaStatus> = new Set([
  'completed',
  'compensated',
  'failed',
  'cancelled',
]);

export interface SagaRecord {
  readonly id: string;
  readonly type: string;
  readonly status: SagaStatus;
  readonly input: Json;
  /** The saga's result once completed. */
  readonly output: Json | null;
  /** Why it compensated, failed or was cancelled. */
  readonly reason: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Saga code version / fencing token chosen by the runtime. */
  readonly version: number;
}

export type JournalEntryKind = 'step' | 'compensation' | 'sleep' | 'event';

export interface JournalEntry {
  readonly sagaId: string;
  /** Dense from 0 within a saga, in execution order: replay compares names in this order. */
  readonly sequence: number;
  readonly kind: JournalEntryKind;
  readonly name: string;
  readonly status: 'completed' | 'failed';
  readonly result: Json | null;
  readonly error: string | null;
  readonly attempts: number;
  readonly at: number;
}

/**
 * Which work partitions a scan covers (`sagas.list`, `timers.due`, `timers.nextDueAt`,
 * `outbox.pending`): absent, all of them; an empty array, none.
 */
export interface PartitionFilter {
  /** Partition numbers (0 .. storeLimits.maxPartitions - 1), at most storeLimits.maxPartitions of them. */
  readonly partitions?: readonly number[];
}

export interface SagaStore {
  /**
   * Creates the saga at version 1 in work partition `partition` (default 0); AlreadyExistsError
   * if a saga with this id exists.
   */
  create(
    saga: Omit<SagaRecord, 'output' | 'reason' | 'updatedAt' | 'version'> & { readonly partition?: number },
  ): Promise<void>;
  get(id: string): Promise<SagaRecord | null>;
  /** Sets status (and output/reason) if the stored version matches; returns the new version. */
  update(
    id: string,
    change: { status: SagaStatus; output?: Json | null; reason?: string | null; at: number },
    expectedVersion: number,
  ): Promise<number>;
  /** A page of sagas ordered by id, after `afterId`, filtered by status, type and partitions. */
  list(
    options?: {
      status?: SagaStatus;
      type?: string;
      limit?: number;
      afterId?: string;
    } & PartitionFilter,
  ): Promise<SagaRecord[]>;
  /**
   * ConflictError if an entry with that sequence exists (two runners of one saga);
   * ValidationError if the sequence is not the saga's next one (the journal stays dense).
   */
  appendJournal(entry: JournalEntry): Promise<void>;
  journal(sagaId: string): Promise<JournalEntry[]>;
  /**
   * Retention: deletes up to `limit` sagas of `type` that ended (completed, compensated,
   * failed) before `endedBefore`, with their journals; returns how many. A saga that has not
   * ended is never touched.
   */
  deleteEnded(request: EndedSagasRequest): Promise<number>;
  /**
   * Retention: deletes the journals of up to `limit` sagas of `type` that ended before
   * `endedBefore`, keeping their records (the outcome a retried start is answered with);
   * returns how many sagas' journals. Each saga's journal is deleted once.
   */
  deleteEndedJournals(request: EndedSagasRequest): Promise<number>;
  /**
   * Folds the journals of up to `limit` sagas of `type` that ended before `endedBefore` into one
   * compressed value each on their records (a fraction of the rows' size; `journal` reads it the
   * same); returns how many sagas' journals. Each saga's journal is folded once.
   */
  foldEndedJournals(request: EndedSagasRequest): Promise<number>;
}

/** Which ended sagas a retention call deletes: of one type, ended before a time, a bounded batch. */
export interface EndedSagasRequest {
  readonly type: string;
  /** Sagas whose end (their last update) is before this time (ms since the epoch). */
  readonly endedBefore: number;
  /** At most this many sagas (1 to storeLimits.maxPageSize). */
  readonly limit: number;
}

export interface TimerRecord {
  readonly id: string;
  readonly dueAt: number;
  readonly kind: string;
  readonly payload: Json;
  /** The work partition the timer belongs to: 0 when scheduled without one; `due` always sets it. */
  readonly partition?: number;
}

export interface TimerStore {
  /** Creates or replaces the timer with this id (in partition `timer.partition`, default 0). */
  schedule(timer: TimerRecord): Promise<void>;
  /** Timers due at or before `nowMs`, earliest first (ties by id), in the given partitions. */
  due(nowMs: number, limit: number, options?: PartitionFilter): Promise<TimerRecord[]>;
  /** Earliest due time of any timer in the given partitions, or null. */
  nextDueAt(options?: PartitionFilter): Promise<number | null>;
  /** Returns false if no such timer existed (already fired or cancelled). */
  delete(id: string): Promise<boolean>;
}

export interface InboxStore {
  /**
   * Records that `consumer` applied the message `messageId`. Returns false, changing nothing,
   * when it was applied before: the caller must then skip its effects.
   */
  markApplied(consumer: string, messageId: string, atMs: number): Promise<boolean>;
  has(consumer: string, messageId: string): Promise<boolean>;
  /** Deletes at most `limit` (default 1000) entries older than `beforeMs`; returns how many. */
  prune(beforeMs: number, limit?: number): Promise<number>;
}

export interface OutboxMessage {
  readonly id: number;
  readonly topic: string;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly timestamp: number;
  /** The work partition whose relay publishes it (0 when added without one). */
  readonly partition: number;
}

/** What `OutboxStore.add` takes: a message without its id, its partition optional (default 0). */
export type NewOutboxMessage = Omit<OutboxMessage, 'id' | 'partition'> & { readonly partition?: number };

export interface OutboxStore {
  /** Appends messages in order; returns their ids (increasing). */
  add(messages: readonly NewOutboxMessage[]): Promise<number[]>;
  /** The oldest unpublished messages of the given partitions, in id order. */
  pending(limit: number, options?: PartitionFilter): Promise<OutboxMessage[]>;
  /** Removes published messages. */
  markPublished(ids: readonly number[]): Promise<void>;
}

export interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export type IdempotencyReservation =
  /**
   * The key is new, released, expired, or its earlier attempt's lease ran out: the caller owns it
   * now. `token` names this reservation; `complete` and `release` act only when given it.
   * `reservedAt` is when this request first reserved the key: kept when a retry of the same
   * request (same fingerprint) takes the key over, new for a new key, an expired one or another
   * request. Ids derived from the key and it are the same on every attempt, and time-ordered.
   */
  | { readonly outcome: 'reserved'; readonly token: number; readonly reservedAt: number }
  /** Another attempt holds an unexpired lease: answer 409. */
  | { readonly outcome: 'in_flight'; readonly leaseUntil: number }
  /** The key was used with another request fingerprint: answer 422. */
  | { readonly outcome: 'mismatch' }
  /** Done before: replay the stored response. */
  | { readonly outcome: 'completed'; readonly response: StoredResponse };

/**
 * One reservation, as the attempt that owns it names it to `complete` or `release`: what it
 * reserved and the token `reserve` answered. The token is a fencing token: each reservation of a
 * key (a new key, or a takeover of a released, expired or lapsed one) gets a greater token than
 * the one before, so an attempt whose lease lapsed and whose key was taken over holds a stale
 * token, and whatever it asks is refused instead of undoing the live attempt's work.
 */
export interface IdempotencyClaim {
  readonly scope: string;
  readonly key: string;
  readonly fingerprint: string;
  /** What `reserve` answered with `reserved`: a positive integer. */
  readonly token: number;
}

/** What `IdempotencyStore.reserve` is asked: one key, for one request fingerprint, for `leaseMs`. */
export interface IdempotencyReserveRequest {
  readonly scope: string;
  readonly key: string;
  readonly fingerprint: string;
  readonly nowMs: number;
  readonly leaseMs: number;
  readonly expiresAt: number;
}

export interface IdempotencyStore {
  /** Atomically reserves `key` in `scope` for `leaseMs`, or says why not. */
  reserve(request: IdempotencyReserveRequest): Promise<IdempotencyReservation>;
  /**
   * Stores the response of the reservation `claim` names. ConflictError, with the key left as it
   * is, when that reservation no longer holds the key: completed, released, or taken over by a
   * later reservation (another token), the attempt having outlived its lease.
   */
  complete(claim: IdempotencyClaim, response: StoredResponse): Promise<void>;
  /**
   * Gives the key up after a failure that should not be replayed (the client may retry): the next
   * `reserve` takes it, whatever its fingerprint. Does nothing unless the reservation `claim`
   * names still holds the key in flight (a completed response stays replayable; a later
   * reservation is not this attempt's to drop).
   */
  release(claim: IdempotencyClaim): Promise<void>;
  /**
   * Deletes at most `limit` (default 1000) keys whose expiry passed, earliest first; returns
   * how many. Call again while it returns `limit`: batches keep each transaction short.
   */
  expire(nowMs: number, limit?: number): Promise<number>;
}

/** One work partition's fencing row: who claimed it last, and the epoch that claim got. */
export interface PartitionClaim {
  readonly partition: number;
  /** 1 after the first claim, +1 on each claim. */
  readonly epoch: number;
  readonly owner: string;
  readonly claimedAt: number;
}

/**
 * Fencing of work partitions (cluster). A node that is assigned a partition claims it, which
 * bumps its epoch; every transaction that writes for a partition checks, before it commits, that
 * the epoch is still the one its node claimed (`epochs` with `lock`), so a node that lost the
 * partition can no longer commit for it.
 */
export interface PartitionStore {
  /**
   * Claims `partition` for `owner`: epoch 1 if it was never claimed, else the stored epoch + 1.
   * Returns the new epoch. On PostgreSQL it waits for transactions that read the partition's
   * epoch with `lock: true` to end.
   */
  claim(partition: number, owner: string, nowMs: number): Promise<number>;
  /**
   * The current epochs of `partitions` (partitions never claimed are absent). With `lock: true`,
   * PostgreSQL reads them FOR SHARE, so a concurrent claim waits until this transaction ends:
   * a write checked against these epochs either commits before the claim or not at all.
   * SQLite ignores `lock` (its one writer already excludes a concurrent claim).
   */
  epochs(partitions: readonly number[], options?: { lock?: boolean }): Promise<Map<number, number>>;
  /**
   * Fails with a MeridianError of code FENCED (details: `partitions`) unless every partition of
   * `held` still has the epoch it maps to, and keeps them so until this transaction ends. On
   * PostgreSQL the check runs in the server, as one statement that takes FOR SHARE locks (a
   * concurrent claim waits) and aborts the transaction when an epoch moved: nothing has to wait
   * for its answer before COMMIT, which then fails if it failed. On SQLite (one writer, no
   * concurrent claim) it reads and compares: await it there.
   */
  requireEpochs(held: ReadonlyMap<number, number>): Promise<void>;
  /** Every claimed partition, by partition number. */
  list(): Promise<PartitionClaim[]>;
}

/** The reply to a command routed to a partition's owner, stored for the node that sent it. */
export interface StoredReply {
  /** The request id the sender chose; one reply per request id. */
  readonly requestId: string;
  /** The work partition that applied the command. */
  readonly partition: number;
  /** True when the command succeeded (`reply` holds its result), false when it failed (`error`). */
  readonly ok: boolean;
  readonly reply: Json | null;
  /** Why the command failed (a message), or null. */
  readonly error: string | null;
  /** The failure's error code (e.g. 'CONFLICT'), or null. */
  readonly code: string | null;
  readonly createdAt: number;
}

/** Replies of routed commands, written by the partition's owner, read by the sender. */
export interface ReplyStore {
  /**
   * Stores `reply`. Returns false, changing nothing, when a reply with that request id exists:
   * the first writer wins.
   */
  put(reply: StoredReply): Promise<boolean>;
  get(requestId: string): Promise<StoredReply | null>;
  /**
   * Makes this transaction fail with a ConflictError (at once, or at the latest when it
   * commits) unless the reply to `requestId` is stored. A reply read in another transaction is
   * acted on durably only this way: the read may have come from a server that had the reply but
   * lost it (a PostgreSQL primary killed before its standby received it, whose surviving
   * backends still answered), and a transaction that commits saw it where it commits.
   */
  require(requestId: string): Promise<void>;
  /**
   * Deletes at most `limit` (default 1000) replies created before `beforeMs`, but those to a
   * request of a saga that has not ended (`saga/<id>/<sequence>`): a saga resumed after a long
   * stop still finds the reply it journaled the request for. Returns how many.
   */
  prune(beforeMs: number, limit?: number): Promise<number>;
}

export interface StoreTransaction {
  readonly entities: EntityStore;
  readonly sagas: SagaStore;
  readonly timers: TimerStore;
  readonly inbox: InboxStore;
  readonly outbox: OutboxStore;
  readonly idempotency: IdempotencyStore;
  readonly partitions: PartitionStore;
  readonly replies: ReplyStore;
  /**
   * Sends `payload` to the listeners of `channel` (`Store.listen`) if and once this transaction
   * commits: a rollback (of the transaction, or of the savepoint that notified) drops it.
   * PostgreSQL: `pg_notify`; SQLite: an in-process emitter of the store. `channel` matches
   * /^[a-z0-9_.]{1,63}$/; `payload` is a non-empty string of at most
   * storeLimits.maxNotificationBytes UTF-8 bytes.
   */
  notify(channel: string, payload: string): Promise<void>;
}

/** What a read-only transaction (`Store.read`) can do: the sub-stores' reads. */
export interface StoreReader {
  readonly entities: Pick<EntityStore, 'get' | 'list'>;
  readonly sagas: Pick<SagaStore, 'get' | 'list' | 'journal'>;
  readonly timers: Pick<TimerStore, 'due' | 'nextDueAt'>;
  readonly inbox: Pick<InboxStore, 'has'>;
  readonly outbox: Pick<OutboxStore, 'pending'>;
  readonly partitions: Pick<PartitionStore, 'list'>;
  readonly replies: Pick<ReplyStore, 'get'>;
}

/**
 * The payload a listener (`Store.listen`) receives when notifications may have been missed (its
 * PostgreSQL connection dropped and was re-established): poll for whatever it waits for. A
 * notification's payload is never empty, so this cannot be mistaken for one.
 */
export const notificationsMayBeMissed = '';

export interface TransactionOptions {
  /**
   * PostgreSQL: defer the writes that need no answer before COMMIT (entity puts, saga inserts
   * and updates, journal appends, notifications) and send each kind as one multi-row statement — a handful
   * of round trips for a transaction of many small units instead of one each. A deferred write
   * reports success at once; when its condition (version, new id, journal sequence) turns out false, the
   * transaction fails with a BatchedWriteConflictError and nothing commits: run it again without
   * batching to learn which write failed. Ignored by SQLite, whose statements are in-process.
   * Ignored for a transaction nested in another (a savepoint). @default false
   */
  readonly batchWrites?: boolean;
  /**
   * PostgreSQL: the transaction commits only once the synchronous standby (if any) has
   * everything it read. Its COMMIT then waits for the standby like a write's (it share-locks one
   * row of the schema's migrations table, a WAL record, even when it writes nothing), so a
   * transaction that commits did not read from a primary that had the data but lost it: one
   * killed before its standby received it, whose surviving backends still answered. Use it for
   * reads acted on outside the database (published, or told to a caller). Ignored by SQLite,
   * which has no standby. @default false
   */
  readonly durableReads?: boolean;
}

export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one transaction: commits when it resolves, rolls back when it throws.
   * Transactions are serialisable per key they touch; a lost race surfaces as ConflictError.
   * Called inside another transaction of the same store, it runs as a savepoint of it: a
   * failure rolls back only its own writes. `tx` is valid only until `fn` settles.
   */
  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Runs `fn` on one consistent snapshot of committed data, without taking any write lock:
   * SQLite reads on a read-only connection of its own (never queued behind the writer),
   * PostgreSQL in a REPEATABLE READ, READ ONLY transaction. What `fn` reads agrees with itself
   * even while others commit. Called inside a transaction of the same store, it reads through
   * that transaction (its own writes included). `tx` is valid only until `fn` settles.
   */
  read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T>;
  /**
   * Calls `listener` with the payload of each notification on `channel` committed from now on
   * (`StoreTransaction.notify`), by any node on PostgreSQL, by this store on SQLite. Resolves
   * once listening; the function it returns stops it.
   *
   * Delivery is at most once and best effort: PostgreSQL listens on a dedicated connection, and
   * notifications sent while it is down are lost. It reconnects with a bounded backoff and then
   * calls `listener` with `notificationsMayBeMissed` (''), so callers must also poll (slowly) for
   * what they wait on and treat a notification as a hint to look now.
   */
  listen(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * What the data occupies, per table (indexes included): SQLite reads its pages (dbstat), so
   * call it seldom on a large file; PostgreSQL asks its catalog (pg_total_relation_size).
   */
  storage(): Promise<StorageReport>;
  /**
   * Gives space freed by deletions back, at most `maxPages` pages per call: SQLite's
   * incremental vacuum (on files created with it; others keep reusing their free pages, which
   * already stops growth). PostgreSQL leaves it to autovacuum and returns 0. Returns the bytes
   * given back to the file system.
   */
  reclaim(maxPages: number): Promise<number>;
  /**
   * Whether the store takes writes now: commits a small write (SQLite: a row of its own;
   * PostgreSQL: a transaction that takes a transaction id). Never throws: a failure is `ok:
   * false` with the storage's reason. A readiness check's question.
   */
  checkWrites(): Promise<WriteCheck>;
  /**
   * Calls `listener` when writes start failing for a storage fault (disk full, read-only, I/O
   * error) and when a write commits again: once per change, not per failed write.
   */
  onWriteHealth(listener: WriteHealthListener): () => void;
  close(): Promise<void>;
}

/** Space per table, and what a store's files hold beyond them. */
export interface StorageReport {
  /** Each table with its indexes, largest first. */
  readonly tables: readonly { readonly table: string; readonly bytes: number }[];
  /** Everything: the tables, and free space kept for reuse. */
  readonly totalBytes: number;
  /** Free space inside the files, reused before they grow (SQLite's free pages; PostgreSQL: 0). */
  readonly freeBytes: number;
}
