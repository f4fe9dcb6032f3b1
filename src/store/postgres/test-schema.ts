import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * Fresh PostgreSQL schemas for tests: each test file and run gets names no other process uses,
 * and drops them when done, so test files can run in parallel against one database.
 */
export function testSchemas(connectionString: string, label: string) {
  let admin: pg.Pool | undefined;
  let sequence = 0;
  const prefix = `mt_${label}_${process.pid}_${randomBytes(3).toString('hex')}`;
  return {
    /** A schema name nobody has used. */
    next(): string {
      return `${prefix}_${++sequence}`;
    },
    async drop(schema: string): Promise<void> {
      admin ??= new pg.Pool({ connectionString, max: 2 });
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    },
    async query(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
      admin ??= new pg.Pool({ connectionString, max: 2 });
      return admin.query(sql, params);
    },
    async end(): Promise<void> {
      await admin?.end();
      admin = undefined;
    },
  };
}
