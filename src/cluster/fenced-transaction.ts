import { storeLimits } from '../store/limits.ts';
import {
  type EntityRecord,
  type EntityStore,
  endedSagaStatuses,
  type Json,
  type ReplyStore,
  type SagaStore,
  type StoreTransaction,
  type TimerRecord,
  type TimerStore,
} from '../store/types.ts';
import type { Clock } from '../time.ts';
import { type EntityCache, type EntityOverlay, entityCacheKey } from './entity-cache.ts';
import type { Ownership } from './ownership.ts';

/** The notification channel a saga's id is sent on when its end commits. */
export const sagaEndedChannel = 'meridian_saga_ended';

/**
 * The id whose work partition a timer belongs to: its payload's `owner` (an entity id), else its
 * `sagaId` (the runtime's saga wake timers), else the timer's own id.
 */
function timerOwnerId(timer: TimerRecord): string {
  const payload = timer.payload as { owner?: Json; sagaId?: Json } | null;
  if (typeof payload?.owner === 'string') return payload.owner;
  return typeof payload?.sagaId === 'string' ? payload.sagaId : timer.id;
}

/** An entity cache and what one transaction adds to it (applied if the transaction commits). */
export interface CachedEntities {
  readonly cache: EntityCache;
  readonly overlay: EntityOverlay;
  readonly clock: Clock;
}

/**
 * Entity reads of owned partitions answered from what this transaction wrote, else from the
 * cache, else from the store; whatever is read or written is noted in the overlay.
 */
function cachedEntities(store: EntityStore, ownership: Ownership, cached: CachedEntities): EntityStore {
  const { cache, overlay, clock } = cached;
  /**
   * A copy of the record (null: known not to exist) if the overlay or the cache knows it, for an
   * entity of an owned partition; undefined to read the store.
   */
  const known = (type: string, id: string): { record: EntityRecord | null } | undefined => {
    const epoch = ownership.epochOf(ownership.partitionOf(id));
    if (epoch === undefined) return undefined;
    const key = entityCacheKey(type, id);
    const own = overlay.get(key);
    if (own !== undefined) return { record: own.record === null ? null : copy(own.record) };
    return cache.get(key, epoch);
  };
  return {
    ...store,
    get: async (type, id) => {
      const partition = ownership.partitionOf(id);
      if (ownership.epochOf(partition) === undefined) return store.get(type, id);
      const hit = known(type, id);
      if (hit !== undefined) return hit.record;
      const record = await store.get(type, id);
      overlay.set(entityCacheKey(type, id), { record, partition });
      return record === null ? null : copy(record);
    },
    // What the cache does not know of owned partitions, read in one statement into the overlay.
    getMany: async (type, ids) => {
      const found = new Map<string, EntityRecord>();
      const missing: string[] = [];
      for (const id of ids) {
        const hit = known(type, id);
        if (hit === undefined) missing.push(id);
        else if (hit.record !== null) found.set(id, hit.record);
      }
      if (missing.length === 0) return found;
      const read = await store.getMany(type, missing);
      for (const id of missing) {
        const record = read.get(id) ?? null;
        const partition = ownership.partitionOf(id);
        if (ownership.epochOf(partition) !== undefined) {
          overlay.set(entityCacheKey(type, id), { record, partition });
        }
        if (record !== null) found.set(id, copy(record));
      }
      return found;
    },
    put: async (type, id, state, expectedVersion) => {
      const version = await store.put(type, id, state, expectedVersion);
      const record = { type, id, state: structuredClone(state), version, updatedAt: clock.now() };
      overlay.set(entityCacheKey(type, id), { record, partition: ownership.partitionOf(id) });
      return version;
    },
    delete: async (type, id, expectedVersion) => {
      await store.delete(type, id, expectedVersion);
      overlay.set(entityCacheKey(type, id), { record: null, partition: ownership.partitionOf(id) });
    },
  };
}

/**
 * Reads ahead, into the transaction's overlay, the entities of `type` among `ids` in owned
 * partitions that neither the overlay nor the cache knows, in one statement of `store` (the
 * transaction's own, unfenced). Known ones are left alone: nothing is parsed or copied for them
 * until a unit reads them.
 */
export async function prefetchEntities(
  store: Pick<EntityStore, 'getMany'>,
  ownership: Pick<Ownership, 'epochOf' | 'partitionOf'>,
  cached: CachedEntities,
  type: string,
  ids: readonly string[],
): Promise<void> {
  const { cache, overlay } = cached;
  const missing = ids.filter((id) => {
    const epoch = ownership.epochOf(ownership.partitionOf(id));
    const key = entityCacheKey(type, id);
    return epoch !== undefined && overlay.get(key) === undefined && !cache.has(key, epoch);
  });
  if (missing.length === 0) return;
  const read = await store.getMany(type, missing);
  for (const id of missing) {
    overlay.set(entityCacheKey(type, id), {
      record: read.get(id) ?? null,
      partition: ownership.partitionOf(id),
    });
  }
}

/** A record whose state the caller may change without changing the cached one. */
function copy(record: EntityRecord): EntityRecord {
  return { ...record, state: structuredClone(record.state) };
}

/**
 * The notification of a saga's end: `[id, { status, output, reason }]` when the update names
 * what the saga ended with, else `[id]` (waiters read the saga). A saga's output is set only by
 * its completion and its reason only on its way to compensation, so a completion with an output
 * has no reason and an end with a reason has no output.
 */
function sagaEndedPayload(
  id: string,
  change: { status: string; output?: Json | null; reason?: string | null },
): string {
  const known =
    change.status === 'completed'
      ? change.output !== undefined && { status: change.status, output: change.output, reason: null }
      : change.reason !== undefined && { status: change.status, output: null, reason: change.reason };
  return notificationPayload(id, known === false ? undefined : known);
}

/**
 * A notification payload announcing the row of `id`: the JSON array `[id, row]`, or `[id]` when
 * there is no row or it does not fit in a notification (the waiter then reads it). Carrying the
 * row spares every waiter a read.
 */
export function notificationPayload(id: string, row: Json | undefined): string {
  if (row !== undefined) {
    const payload = JSON.stringify([id, row]);
    if (Buffer.byteLength(payload) <= storeLimits.maxNotificationBytes) return payload;
  }
  return JSON.stringify([id]);
}

/**
 * A view of `tx` that refuses at once a write for a partition this node does not hold (the unit
 * fails alone, before anything is written), notes the work partition of every entity, saga, timer and reply it writes
 * for (in `written`), and stamps sagas and timers with their partition, so that per-partition
 * scans (resume, due timers) find them. The commit path checks the epochs of `written` before
 * the transaction commits. Reads pass straight through.
 */
export function fencedTransaction(
  tx: StoreTransaction,
  ownership: Ownership,
  written: Set<number>,
  cached?: CachedEntities,
): StoreTransaction {
  const mark = (id: string): number => {
    const partition = ownership.partitionOf(id);
    ownership.requireOwned(partition, id);
    written.add(partition);
    return partition;
  };
  const plain: EntityStore = {
    get: (type, id) => tx.entities.get(type, id),
    getMany: (type, ids) => tx.entities.getMany(type, ids),
    list: (type, options) => tx.entities.list(type, options),
    put: (type, id, state, expectedVersion) => {
      mark(id);
      return tx.entities.put(type, id, state, expectedVersion);
    },
    delete: (type, id, expectedVersion) => {
      mark(id);
      return tx.entities.delete(type, id, expectedVersion);
    },
    // Retention (the leader's singleton) deletes entities idle past their type's period, in
    // every partition: a command racing it finds the entity gone and fails with ConflictError.
    deleteIdle: (request) => tx.entities.deleteIdle(request),
  };
  const entities = cached === undefined ? plain : cachedEntities(plain, ownership, cached);
  const sagas: SagaStore = {
    get: (id) => tx.sagas.get(id),
    list: (options) => tx.sagas.list(options),
    journal: (sagaId) => tx.sagas.journal(sagaId),
    create: (saga) => tx.sagas.create({ ...saga, partition: mark(saga.id) }),
    update: async (id, change, expectedVersion) => {
      mark(id);
      const version = await tx.sagas.update(id, change, expectedVersion);
      // Callers on other nodes wait for a saga's end: tell them once it commits.
      if (endedSagaStatuses.has(change.status))
        await tx.notify(sagaEndedChannel, sagaEndedPayload(id, change));
      return version;
    },
    appendJournal: (entry) => {
      mark(entry.sagaId);
      return tx.sagas.appendJournal(entry);
    },
    // Retention (the leader's singleton, fenced by the leader partition) deletes only sagas that
    // ended: no owner writes them again, so their own partitions' epochs need no check.
    deleteEnded: (request) => tx.sagas.deleteEnded(request),
    deleteEndedJournals: (request) => tx.sagas.deleteEndedJournals(request),
    foldEndedJournals: (request) => tx.sagas.foldEndedJournals(request),
  };
  const timers: TimerStore = {
    schedule: (timer) => tx.timers.schedule({ ...timer, partition: mark(timerOwnerId(timer)) }),
    // Due timers are deleted by the transaction that read them: reading them is writing for them.
    due: async (nowMs, limit, options) => {
      const due = await tx.timers.due(nowMs, limit, options);
      for (const timer of due) written.add(timer.partition ?? ownership.partitionOf(timerOwnerId(timer)));
      return due;
    },
    nextDueAt: (options) => tx.timers.nextDueAt(options),
    delete: (id) => tx.timers.delete(id),
  };
  const replies: ReplyStore = {
    get: (requestId) => tx.replies.get(requestId),
    require: (requestId) => tx.replies.require(requestId),
    prune: (beforeMs) => tx.replies.prune(beforeMs),
    put: (reply) => {
      written.add(reply.partition);
      return tx.replies.put(reply);
    },
  };
  return {
    entities,
    sagas,
    timers,
    replies,
    get inbox() {
      return tx.inbox;
    },
    get outbox() {
      return tx.outbox;
    },
    get idempotency() {
      return tx.idempotency;
    },
    get partitions() {
      return tx.partitions;
    },
    notify: (channel, payload) => tx.notify(channel, payload),
  };
}
