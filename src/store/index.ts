/**
 * The durable store: entity state with versions, sagas and their journals, durable timers, the
 * inbox and outbox, and Idempotency-Key records, on SQLite (embedded) or PostgreSQL (cluster)
 * with one schema and one contract. See docs/store.md. The PostgreSQL store is `meridian/postgres`
 * (src/store/postgres/index.ts), so that `pg` loads only for it.
 */

export {
  type ClaimOptions,
  claimDirectory,
  DirectoryInUseError,
  type DirectoryOwnerInfo,
  type DirectoryOwnership,
  OWNER_FILE,
} from './directory-owner.ts';
export { storeLimits } from './limits.ts';
export { SchemaMismatchError } from './schema-mismatch-error.ts';
export { BatchedWriteConflictError } from './sql/write-batch.ts';
export {
  type Durability,
  type Migration,
  SqliteDatabase,
  type SqliteDatabaseOptions,
} from './sqlite/database.ts';
export { openSqliteStore, SqliteStore, type SqliteStoreOptions } from './sqlite/store.ts';
export {
  type EndedSagasRequest,
  type EntityRecord,
  type EntityStore,
  endedSagaStatuses,
  type IdempotencyClaim,
  type IdempotencyReservation,
  type IdempotencyReserveRequest,
  type IdempotencyStore,
  type IdleEntitiesRequest,
  type InboxStore,
  type JournalEntry,
  type JournalEntryKind,
  type Json,
  type NewOutboxMessage,
  notificationsMayBeMissed,
  type OutboxMessage,
  type OutboxStore,
  type PartitionClaim,
  type PartitionFilter,
  type PartitionStore,
  type ReplyStore,
  type SagaRecord,
  type SagaStatus,
  type SagaStore,
  type StorageReport,
  type Store,
  type StoredReply,
  type StoredResponse,
  type StoreReader,
  type StoreTransaction,
  type TimerRecord,
  type TimerStore,
  type TransactionOptions,
} from './types.ts';
export {
  isStorageFault,
  StoreIntegrityError,
  type WriteCheck,
  type WriteHealthListener,
  type WriteHealthState,
} from './write-health.ts';
