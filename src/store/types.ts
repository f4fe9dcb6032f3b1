/**
 * The durable store: one portable schema on SQLite (embedded) and PostgreSQL (cluster).
 * Everything one handler changes is committed in one transaction.
 */

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
   * Writes state if the stored version equals `expectedVersion` (0: the entity must not exist).
   * Returns the new version; ConflictError when another writer got there first.
   */
  put(type: string, id: string, state: Json, expectedVersion: number): Promise<number>;
  /** Deletes if the stored version equals `expectedVersion`; ConflictError otherwise. */
  delete(type: string, id: string, expectedVersion: number): Promise<void>;
  /** A page of one type's entities ordered by id, after `afterId`. */
  list(type: string, options?: { afterId?: string; limit?: number }): Promise<EntityRecord[]>;
}

export type SagaStatus = 'running' | 'compensating' | 'completed' | 'compensated' | 'failed';

export interface SagaRecord {
  readonly id: string;
  readonly type: string;
  readonly status: SagaStatus;
  readonly input: Json;
  /** The saga's result once completed. */
  readonly output: Json | null;
  /** Why it compensated or failed. */
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

export interface SagaStore {
  /** Creates the saga at version 1; AlreadyExistsError if a saga with this id exists. */
  create(saga: Omit<SagaRecord, 'output' | 'reason' | 'updatedAt' | 'version'>): Promise<void>;
  get(id: string): Promise<SagaRecord | null>;
  /** Sets status (and output/reason) if the stored version matches; returns the new version. */
  update(
    id: string,
    change: { status: SagaStatus; output?: Json | null; reason?: string | null; at: number },
    expectedVersion: number,
  ): Promise<number>;
  list(options?: {
    status?: SagaStatus;
    type?: string;
    limit?: number;
    afterId?: string;
  }): Promise<SagaRecord[]>;
  /**
   * ConflictError if an entry with that sequence exists (two runners of one saga);
   * ValidationError if the sequence is not the saga's next one (the journal stays dense).
   */
  appendJournal(entry: JournalEntry): Promise<void>;
  journal(sagaId: string): Promise<JournalEntry[]>;
}

export interface TimerRecord {
  readonly id: string;
  readonly dueAt: number;
  readonly kind: string;
  readonly payload: Json;
}

export interface TimerStore {
  /** Creates or replaces the timer with this id. */
  schedule(timer: TimerRecord): Promise<void>;
  /** Timers due at or before `nowMs`, earliest first. */
  due(nowMs: number, limit: number): Promise<TimerRecord[]>;
  /** Earliest due time of any timer, or null. */
  nextDueAt(): Promise<number | null>;
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
  /** Deletes entries older than `beforeMs`; returns how many. */
  prune(beforeMs: number): Promise<number>;
}

export interface OutboxMessage {
  readonly id: number;
  readonly topic: string;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly timestamp: number;
}

export interface OutboxStore {
  /** Appends messages in order; returns their ids (increasing). */
  add(messages: readonly Omit<OutboxMessage, 'id'>[]): Promise<number[]>;
  /** The oldest unpublished messages, in id order. */
  pending(limit: number): Promise<OutboxMessage[]>;
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
  /** Deletes keys whose expiry passed; returns how many. */
  expire(nowMs: number): Promise<number>;
}

export interface StoreTransaction {
  readonly entities: EntityStore;
  readonly sagas: SagaStore;
  readonly timers: TimerStore;
  readonly inbox: InboxStore;
  readonly outbox: OutboxStore;
  readonly idempotency: IdempotencyStore;
}

/** What a read-only transaction (`Store.read`) can do: the sub-stores' reads. */
export interface StoreReader {
  readonly entities: Pick<EntityStore, 'get' | 'list'>;
  readonly sagas: Pick<SagaStore, 'get' | 'list' | 'journal'>;
  readonly timers: Pick<TimerStore, 'due' | 'nextDueAt'>;
  readonly inbox: Pick<InboxStore, 'has'>;
  readonly outbox: Pick<OutboxStore, 'pending'>;
}

export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one transaction: commits when it resolves, rolls back when it throws.
   * Transactions are serialisable per key they touch; a lost race surfaces as ConflictError.
   * Called inside another transaction of the same store, it runs as a savepoint of it: a
   * failure rolls back only its own writes. `tx` is valid only until `fn` settles.
   */
  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` on one consistent snapshot of committed data, without taking any write lock:
   * SQLite reads on a read-only connection of its own (never queued behind the writer),
   * PostgreSQL in a REPEATABLE READ, READ ONLY transaction. What `fn` reads agrees with itself
   * even while others commit. Called inside a transaction of the same store, it reads through
   * that transaction (its own writes included). `tx` is valid only until `fn` settles.
   */
  read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
