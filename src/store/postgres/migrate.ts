import type { Pool } from 'pg';
import { assert } from '../../assert.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import { requireSchemaName } from '../sql/dialect.ts';
import type { Migration } from '../sqlite/database.ts';
import { mapPostgresError } from './errors.ts';

/**
 * Applies the numbered migrations of `component` that `schema` does not have yet, in one
 * transaction, recording each in `<schema>.meridian_migrations` (as SQLite's
 * `SqliteDatabase.migrate` does). A transaction-scoped advisory lock keyed by the schema makes
 * nodes that start together migrate one after the other: the second finds the work done.
 * Refuses (SchemaMismatchError) a schema newer than the code.
 */
export async function migratePostgres(
  pool: Pool,
  schema: string,
  component: string,
  migrations: readonly Migration[],
): Promise<void> {
  requireSchemaName(schema);
  migrations.forEach((migration, index) => {
    assert(migration.version === index + 1, `migrations of '${component}' must be numbered 1..n densely`);
  });
  const client = await pool.connect().catch((error: unknown) => {
    throw mapPostgresError(error);
  });
  let broken: Error | undefined;
  // A dropped connection arrives as an 'error' event, which would crash the process unheard.
  const onError = (error: Error) => {
    broken ??= error;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `meridian:migrate:${schema}`,
    ]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS "${schema}".meridian_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (component, version))`,
    );
    const result = await client.query<{ version: number | null }>(
      `SELECT MAX(version) AS version FROM "${schema}".meridian_migrations WHERE component = $1`,
      [component],
    );
    const current = result.rows[0]?.version ?? 0;
    if (current > migrations.length) {
      throw SchemaMismatchError.newerThanCode(
        `in PostgreSQL schema '${schema}'`,
        component,
        current,
        migrations.length,
      );
    }
    for (const migration of migrations.slice(current)) {
      // No parameters: the simple query protocol, which runs a multi-statement script.
      await client.query(migration.sql);
      await client.query(
        `INSERT INTO "${schema}".meridian_migrations (component, version, name) VALUES ($1, $2, $3)`,
        [component, migration.version, migration.name],
      );
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: unknown) => {
      broken = rollbackError as Error;
    });
    throw mapPostgresError(error);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
