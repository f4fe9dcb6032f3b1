/**
 * The durable store: entity state with versions, sagas and their journals, durable timers, the
 * inbox and outbox, and Idempotency-Key records, on SQLite (embedded) or PostgreSQL (cluster)
 * with one schema and one contract. See docs/store.md.
 */

export { storeLimits } from './limits.ts';
export { migratePostgres } from './postgres/migrate.ts';
export { openPostgresStore, PostgresStore, type PostgresStoreOptions } from './postgres/store.ts';
export { SchemaMismatchError } from './schema-mismatch-error.ts';
export {
  type Durability,
  type Migration,
  SqliteDatabase,
  type SqliteDatabaseOptions,
} from './sqlite/database.ts';
export { openSqliteStore, SqliteStore, type SqliteStoreOptions } from './sqlite/store.ts';
export type {
  EntityRecord,
  EntityStore,
  IdempotencyClaim,
  IdempotencyReservation,
  IdempotencyReserveRequest,
  IdempotencyStore,
  InboxStore,
  JournalEntry,
  JournalEntryKind,
  Json,
  OutboxMessage,
  OutboxStore,
  SagaRecord,
  SagaStatus,
  SagaStore,
  Store,
  StoredResponse,
  StoreTransaction,
  TimerRecord,
  TimerStore,
} from './types.ts';
