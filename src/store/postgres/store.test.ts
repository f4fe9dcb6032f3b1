import { afterAll, describe, expect } from 'vitest';
import { describeStoreContract } from '../contract.ts';
import { openPostgresStore } from './store.ts';
import { testSchemas } from './test-schema.ts';

// Needs a PostgreSQL server: set MERIDIAN_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test).
// Without it this file is skipped, so `npm test` passes on a machine without PostgreSQL.
const url = process.env.MERIDIAN_TEST_PG_URL;

describe.skipIf(!url)('PostgresStore', () => {
  const schemas = testSchemas(url ?? '', 'store');
  // pg warns (once per process) when queries overlap on one client; the store must queue them.
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(warning.message);
  process.on('warning', onWarning);
  afterAll(async () => {
    process.off('warning', onWarning);
    await schemas.end();
    expect(warnings).toEqual([]);
  });

  describeStoreContract('postgres', async (clock) => {
    const schema = schemas.next();
    const store = await openPostgresStore({ connectionString: url ?? '', schema, clock, maxConnections: 8 });
    return {
      store,
      async cleanup() {
        await store.close();
        await schemas.drop(schema);
      },
      async untilLockWait() {
        // A backend of this test's schema waiting for a lock that is not granted yet.
        const deadline = Date.now() + 10_000;
        for (;;) {
          const waiting = await schemas.query(
            `SELECT count(*)::int AS waiting FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE NOT l.granted AND a.query LIKE $1`,
            [`%"${schema}".%`],
          );
          if (waiting.rows[0].waiting > 0) return;
          if (Date.now() > deadline) throw new Error('no transaction waited for a lock within 10 s');
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      },
    };
  });
});
