import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { migratePostgres } from '../postgres/migrate.ts';
import { openPostgresStore } from '../postgres/store.ts';
import { testSchemas } from '../postgres/test-schema.ts';
import { SqliteDatabase } from '../sqlite/database.ts';
import { SqliteStore } from '../sqlite/store.ts';
import type { Store } from '../types.ts';
import { postgresDialect, type StoreTables, sqliteDialect, storeTables } from './dialect.ts';
import { storeComponent, storeMigrations } from './schema.ts';

// Migration 10 packs entity states, stored responses and ended sagas' input and output; users
// have rows written before it, as text. This file writes such rows into a schema at migration 9,
// opens a store of this version on it (which migrates), and reads them. PostgreSQL needs
// MERIDIAN_TEST_PG_URL (skipped without).

const state = {
  orderId: 'ord-01a24de8346f32e6bd59f585',
  note: 'written before migration 10, ünïcödé 🚀, long enough to be packed by this version',
};
const headers = { location: '/orders/ord-01a24de8346f32e6bd59f585', 'content-type': 'application/json' };
const body = JSON.stringify({
  orderId: 'ord-01a24de8346f32e6bd59f585',
  status: 'pending',
  padding: 'p'.repeat(120),
});
const nowMs = 1_800_000_000_000;
/** A request fingerprint as the gateway makes them (SHA-256, hex), stored as hex before migration 10. */
const digest = '0123456789abcdef'.repeat(4);

/** The rows as migration 9's code wrote them: JSON text in `state` and the response columns. */
function oldRows(t: StoreTables): Array<[string, unknown[]]> {
  return [
    [
      `INSERT INTO ${t.entities} (type, id, state, version, updated_at) VALUES ($1, $2, $3, 1, $4)`,
      ['Order', state.orderId, JSON.stringify(state), nowMs],
    ],
    [
      `INSERT INTO ${t.idempotencyKeys} (scope, key, fingerprint, status, response_status, response_headers,
         response_body, expires_at, token, reserved_at) VALUES ('orders', 'k1', $5, 'completed', 202, $1, $2, $3, 1, $4)`,
      [JSON.stringify(headers), body, nowMs + 86_400_000, nowMs, digest],
    ],
    [
      `INSERT INTO ${t.idempotencyKeys} (scope, key, fingerprint, status, lease_until, expires_at, token, reserved_at)
         VALUES ('orders', 'k2', $1, 'in_flight', $2, $3, 7, $4)`,
      [digest, nowMs + 30_000, nowMs + 86_400_000, nowMs],
    ],
    [
      `INSERT INTO ${t.sagas} (id, type, status, input, output, created_at, updated_at, version)
         VALUES ($1, 'OrderSaga', 'completed', $2, $3, $4, $4, 2)`,
      [state.orderId, JSON.stringify(state), JSON.stringify(state), nowMs],
    ],
  ];
}

/** What a user observes of the old rows through a store of this version, and that a write still works. */
async function expectOldRowsRead(store: Store): Promise<void> {
  const record = await store.transaction((tx) => tx.entities.get('Order', state.orderId));
  expect(record).toMatchObject({ state, version: 1 });
  const reserve = (key: string) =>
    store.transaction((tx) =>
      tx.idempotency.reserve({
        scope: 'orders',
        key,
        fingerprint: digest,
        nowMs,
        leaseMs: 1000,
        expiresAt: nowMs + 2000,
      }),
    );
  expect(await reserve('k1')).toEqual({ outcome: 'completed', response: { status: 202, headers, body } });
  // A request that held a key across the upgrade completes it, and its retry gets the response.
  const claim = { scope: 'orders', key: 'k2', fingerprint: digest, token: 7 };
  const created = { status: 201, headers: {}, body: '{}' };
  await store.transaction((tx) => tx.idempotency.complete(claim, created));
  expect(await reserve('k2')).toEqual({ outcome: 'completed', response: created });
  const saga = { id: state.orderId, status: 'completed', input: state, output: state, version: 2 };
  expect(await store.transaction((tx) => tx.sagas.get(state.orderId))).toMatchObject(saga);
  const request = { type: 'OrderSaga', endedBefore: nowMs + 1, limit: 10 };
  expect(await store.transaction((tx) => tx.sagas.foldEndedJournals(request))).toBe(1);
  expect(await store.transaction((tx) => tx.sagas.get(state.orderId))).toMatchObject(saga);
  const next = { ...state, status: 'confirmed' };
  expect(await store.transaction((tx) => tx.entities.put('Order', state.orderId, next, 1))).toBe(2);
  expect((await store.transaction((tx) => tx.entities.get('Order', state.orderId)))?.state).toEqual(next);
}

describe('packed values (store migration 10) on rows written before it', () => {
  it('SQLite: reads old text rows, and packs what it writes from then on', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-store-migration-'));
    try {
      const path = join(directory, 'store.db');
      const t = storeTables();
      const database = new SqliteDatabase({ path });
      database.migrate(storeComponent, storeMigrations(sqliteDialect, t).slice(0, 9));
      database.writeSync(() => {
        for (const [sql, params] of oldRows(t)) {
          database.prepare(sql.replace(/\$(\d+)/g, '?$1')).run(...(params as Array<string | number>));
        }
      });
      database.close();
      const store = new SqliteStore({ path });
      try {
        await expectOldRowsRead(store);
        const row = store.database.prepare(`SELECT state, state_packed FROM ${t.entities}`).get() as {
          state: string;
          state_packed: Uint8Array | null;
        };
        expect(row.state).toBe('');
        expect(row.state_packed?.length).toBeGreaterThan(0);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  const url = process.env.MERIDIAN_TEST_PG_URL ?? '';
  describe.skipIf(!url)('PostgreSQL', () => {
    const schemas = testSchemas(url, 'packed');
    const schema = schemas.next();
    afterAll(async () => {
      await schemas.drop(schema);
      await schemas.end();
    });

    it('reads old text rows, and packs what it writes from then on', async () => {
      const t = storeTables(schema);
      const pool = new pg.Pool({ connectionString: url, max: 1 });
      try {
        await migratePostgres(pool, schema, storeComponent, storeMigrations(postgresDialect, t).slice(0, 9));
        for (const [sql, params] of oldRows(t)) await pool.query(sql, params);
      } finally {
        await pool.end();
      }
      const store = await openPostgresStore({ connectionString: url, schema, maxConnections: 2 });
      try {
        await expectOldRowsRead(store);
      } finally {
        await store.close();
      }
      const rows = await schemas.query(`SELECT state, state_packed FROM ${t.entities}`);
      expect(rows.rows[0].state).toBe('');
      expect((rows.rows[0].state_packed as Buffer).length).toBeGreaterThan(0);
    });
  });
});
