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
    };
  });
});
