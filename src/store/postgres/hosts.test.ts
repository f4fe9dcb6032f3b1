import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../errors.ts';
import { parsePostgresTarget, postgresUrlFor } from './hosts.ts';
import { openPostgresStore } from './store.ts';
import { testSchemas } from './test-schema.ts';

// The store part needs a PostgreSQL server: set MERIDIAN_TEST_PG_URL (one host). Without it only
// the parsing tests run. Failover between a real primary and standby: test/cluster/faults.test.ts.
const url = process.env.MERIDIAN_TEST_PG_URL ?? '';

describe('parsePostgresTarget', () => {
  it('splits a libpq-style host list, asks for a writable server by default, and keeps one host as is', () => {
    const target = parsePostgresTarget(
      'postgres://app:s3cret@10.0.0.1:5442,db-2,[::1]:5444/shop?sslmode=disable',
    );
    expect(target.hosts).toEqual([
      { host: '10.0.0.1', port: 5442 },
      { host: 'db-2', port: 5432 },
      { host: '::1', port: 5444 },
    ]);
    expect(target.writable).toBe(true);
    expect(target.url).toBe('postgres://app:s3cret@10.0.0.1:5442/shop?sslmode=disable');
    expect(postgresUrlFor(target, { host: '::1', port: 5444 })).toBe(
      'postgres://app:s3cret@[::1]:5444/shop?sslmode=disable',
    );
    const any = parsePostgresTarget('postgresql://u@a:1,b:2/db?target_session_attrs=any');
    expect(any.writable).toBe(false);
    expect(any.url).toBe('postgresql://u@a:1/db');
    const one = parsePostgresTarget('postgres://u@a:5432/db');
    expect(one).toMatchObject({ url: 'postgres://u@a:5432/db', writable: false });
  });

  it('refuses a bad host, port or session attribute with a typed error that hides the password', () => {
    for (const bad of [
      'postgres://u:pw@a:1,,b:2/db',
      'postgres://u:pw@a:70000,b:2/db',
      'postgres://u:pw@a:1,b:2/db?target_session_attrs=standby',
    ]) {
      const error = (() => {
        try {
          parsePostgresTarget(bad);
        } catch (caught) {
          return caught as Error;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(ValidationError);
      expect(error?.message).not.toContain('pw');
      expect(error?.message).toContain('host1:5432,host2:5432');
    }
  });
});

describe.skipIf(!url)('a store on several PostgreSQL hosts', () => {
  const schemas = testSchemas(url, 'hosts');
  afterAll(() => schemas.end());

  it('skips a host that refuses connections and writes to the one that accepts them', async () => {
    const real = parsePostgresTarget(url).hosts[0];
    // Port 1 on loopback refuses at once: a primary that died.
    const listed = url.replace(`${real?.host}:${real?.port}`, `127.0.0.1:1,${real?.host}:${real?.port}`);
    expect(parsePostgresTarget(listed).hosts).toHaveLength(2);
    const schema = schemas.next();
    const store = await openPostgresStore({ connectionString: listed, schema });
    try {
      const request = {
        scope: 's',
        key: 'k',
        fingerprint: 'f',
        nowMs: 1,
        leaseMs: 60_000,
        expiresAt: 120_000,
      };
      const first = await store.transaction((tx) => tx.idempotency.reserve(request));
      const again = await store.transaction((tx) => tx.idempotency.reserve(request));
      expect(first).not.toEqual(again);
    } finally {
      await store.close();
      await schemas.drop(schema);
    }
  });
});
