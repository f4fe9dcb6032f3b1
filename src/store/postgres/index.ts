/**
 * `meridian/postgres`: the store on PostgreSQL, for the cluster shape. `pg` loads when this
 * module is imported, never through `meridian` or `meridian/store`. See docs/store.md.
 */
export { migratePostgres } from './migrate.ts';
export { openPostgresStore, PostgresStore, type PostgresStoreOptions } from './store.ts';
