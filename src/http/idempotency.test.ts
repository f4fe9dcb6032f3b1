import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openPostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import { openSqliteStore } from '../store/sqlite/store.ts';
import type { IdempotencyStore } from '../store/types.ts';
import { ManualClock } from '../time.ts';
import { createGateway, type Gateway, type GatewayOptions, idempotencyOf } from './gateway.ts';
import { idempotencyStoreOf, parseIdempotencyKey, requestFingerprint } from './idempotency.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
import { HttpProblem } from './problem.ts';

interface StoreCase {
  name: string;
  skip?: boolean;
  open(): Promise<{ store: IdempotencyStore; close(): Promise<void> }>;
}

// The PostgreSQL case needs a server: set MERIDIAN_TEST_PG_URL (e.g.
// postgres://postgres@127.0.0.1:5432/test). Without it that case is skipped, so `npm test`
// passes on a machine without PostgreSQL.
const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const pgSchemas = testSchemas(pgUrl ?? '', 'http');
afterAll(() => pgSchemas.end());

/** Every IdempotencyStore the gateway runs on passes the same protocol table, through a Store's transactions where it has one. */
const storeCases: StoreCase[] = [
  {
    name: 'MemoryIdempotencyStore',
    open: async () => ({ store: new MemoryIdempotencyStore(), close: async () => {} }),
  },
  {
    name: 'SqliteStore',
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'meridian-http-'));
      const store = await openSqliteStore({ path: join(dir, 'store.db') });
      return {
        store: idempotencyStoreOf(store),
        close: async () => {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'PostgresStore',
    skip: !pgUrl,
    open: async () => {
      const schema = pgSchemas.next();
      const store = await openPostgresStore({ connectionString: pgUrl ?? '', schema, maxConnections: 8 });
      return {
        store: idempotencyStoreOf(store),
        close: async () => {
          await store.close();
          await pgSchemas.drop(schema);
        },
      };
    },
  },
];

const TTL_MS = 60_000;
const LEASE_MS = 5_000;

function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

interface Harness {
  gateway: Gateway;
  clock: ManualClock;
  store: IdempotencyStore;
  /** Handler executions per customer id. */
  executions: Map<string, number>;
  /** When set, the next executions wait on it before answering. */
  gate: { promise: Promise<void> } | undefined;
  /** Called at the start of each execution. */
  onExecute: (() => void) | undefined;
  post(body: unknown, key?: string, extraHeaders?: Record<string, string>): Promise<LightMyRequestResponse>;
}

/** Checks the idempotency outcome counters of `/payments` in `/metrics`. */
async function expectOutcomeCounts(h: Harness, counts: Record<string, number>): Promise<void> {
  const metrics = await h.gateway.server.inject({ method: 'GET', url: '/metrics' });
  for (const [outcome, count] of Object.entries(counts)) {
    expect(metrics.body).toContain(
      `meridian_http_idempotency_outcomes_total{route="/payments",outcome="${outcome}"} ${count}`,
    );
  }
}

for (const storeCase of storeCases) {
  describe.skipIf(storeCase.skip === true)(`Idempotency-Key protocol on ${storeCase.name}`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    async function harness(options: Pick<GatewayOptions, 'clientIdentity'> = {}): Promise<Harness> {
      const opened = await storeCase.open();
      cleanups.push(opened.close);
      const clock = new ManualClock(1_700_000_000_000);
      const gateway = await createGateway({
        auth: false,
        rateLimit: false,
        idempotencyStore: opened.store,
        clock,
        timers: clock,
        idempotencyKeyTtlMs: TTL_MS,
        idempotencyLeaseMs: LEASE_MS,
        defaultMetrics: false,
        ...(options.clientIdentity === undefined ? {} : { clientIdentity: options.clientIdentity }),
      });
      cleanups.push(() => gateway.close());
      const state: Harness = {
        gateway,
        clock,
        store: opened.store,
        executions: new Map(),
        gate: undefined,
        onExecute: undefined,
        post(body, key, extraHeaders = {}) {
          return gateway.server.inject({
            method: 'POST',
            url: '/payments',
            headers: {
              'content-type': 'application/json',
              ...(key === undefined ? {} : { 'idempotency-key': key }),
              ...extraHeaders,
            },
            payload: typeof body === 'string' ? body : JSON.stringify(body),
          });
        },
      };
      gateway.route({
        method: 'POST',
        url: '/payments',
        idempotent: true,
        schema: {
          body: Type.Object({ customerId: Type.String(), amount: Type.Number({ exclusiveMinimum: 0 }) }),
        },
        handler: async (request, reply) => {
          const { customerId } = request.body;
          const count = (state.executions.get(customerId) ?? 0) + 1;
          state.executions.set(customerId, count);
          state.onExecute?.();
          if (state.gate !== undefined) await state.gate.promise;
          if (customerId === 'unknown') throw new HttpProblem({ status: 404, title: 'No such customer' });
          if (customerId === 'flaky' && count === 1) throw new Error('the database went away');
          const paymentId = `pay-${idempotencyOf(request)!.key}-${count}`;
          return reply
            .code(201)
            .header('location', `/payments/${paymentId}`)
            .header('x-app', 'kept')
            .send({ paymentId, execution: count });
        },
      });
      gateway.route({
        method: 'POST',
        url: '/refunds',
        idempotent: true,
        handler: async (_request, reply) => reply.code(201).send({ refunded: true }),
      });
      await gateway.ready();
      return state;
    }

    it('replays the first response for the same key and body: same status, body and headers, marked as a replay', async () => {
      const h = await harness();
      const first = await h.post({ customerId: 'ada', amount: 10 }, 'key-1');
      expect(first.statusCode).toBe(201);
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      const second = await h.post({ customerId: 'ada', amount: 10 }, 'key-1');
      expect(second.statusCode).toBe(201);
      expect(second.body).toBe(first.body);
      expect(second.json()).toEqual({ paymentId: 'pay-key-1-1', execution: 1 });
      expect(second.headers.location).toBe('/payments/pay-key-1-1');
      expect(second.headers['x-app']).toBe('kept');
      expect(second.headers['content-type']).toBe(first.headers['content-type']);
      expect(second.headers['idempotent-replayed']).toBe('true');
      expect(h.executions.get('ada')).toBe(1);
    });

    it('treats the structured-field form "key" and the bare token as the same key', async () => {
      const h = await harness();
      await h.post({ customerId: 'ada', amount: 10 }, 'abc-123');
      const quoted = await h.post({ customerId: 'ada', amount: 10 }, '"abc-123"');
      expect(quoted.headers['idempotent-replayed']).toBe('true');
      expect(h.executions.get('ada')).toBe(1);
    });

    it('answers 422 when a key is reused with a different body, even one that parses the same', async () => {
      const h = await harness();
      await h.post('{"customerId":"ada","amount":10}', 'key-2');
      const differentAmount = await h.post({ customerId: 'ada', amount: 11 }, 'key-2');
      expect(differentAmount.statusCode).toBe(422);
      expect(differentAmount.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(differentAmount.json()).toMatchObject({
        type: 'urn:meridian:problem:idempotency-key-reused',
        status: 422,
      });
      // Same JSON value, other bytes: the fingerprint is over the raw body, not a re-serialised parse.
      const reformatted = await h.post('{ "amount": 10, "customerId": "ada" }', 'key-2');
      expect(reformatted.statusCode).toBe(422);
      expect(h.executions.get('ada')).toBe(1);
    });

    it('scopes keys per route: the same key on another route is another request', async () => {
      const h = await harness();
      await h.post({ customerId: 'ada', amount: 10 }, 'shared');
      const refund = await h.gateway.server.inject({
        method: 'POST',
        url: '/refunds',
        headers: { 'idempotency-key': 'shared' },
      });
      expect(refund.statusCode).toBe(201);
      expect(refund.headers['idempotent-replayed']).toBeUndefined();
    });

    it('scopes keys per client when a client identity is configured', async () => {
      const h = await harness({
        clientIdentity: (request) => request.headers['x-client'] as string | undefined,
      });
      const alice = await h.post({ customerId: 'ada', amount: 10 }, 'same', { 'x-client': 'alice' });
      const bob = await h.post({ customerId: 'ada', amount: 10 }, 'same', { 'x-client': 'bob' });
      expect(alice.json().execution).toBe(1);
      expect(bob.json().execution).toBe(2);
      expect(bob.headers['idempotent-replayed']).toBeUndefined();
    });

    it('requires the key (400 when missing) and validates its length and characters', async () => {
      const h = await harness();
      const missing = await h.post({ customerId: 'ada', amount: 10 });
      expect(missing.statusCode).toBe(400);
      expect(missing.json()).toMatchObject({
        type: 'urn:meridian:problem:idempotency-key-missing',
        status: 400,
      });
      const tooLong = await h.post({ customerId: 'ada', amount: 10 }, 'k'.repeat(256));
      expect(tooLong.statusCode).toBe(400);
      expect(tooLong.json()).toMatchObject({ type: 'urn:meridian:problem:idempotency-key-invalid' });
      expect(tooLong.json().detail).toContain('at most 255 characters: current length is 256');
      const badCharacters = await h.post({ customerId: 'ada', amount: 10 }, 'has space');
      expect(badCharacters.statusCode).toBe(400);
      // A missing key is reported even when the body is invalid too: the key is checked first.
      const both = await h.post({ amount: -1 });
      expect(both.json().type).toBe('urn:meridian:problem:idempotency-key-missing');
      expect(h.executions.size).toBe(0);
    });

    it('does not reserve the key for a request that fails validation', async () => {
      const h = await harness();
      const invalid = await h.post({ customerId: 'ada', amount: -1 }, 'key-3');
      expect(invalid.statusCode).toBe(400);
      expect(invalid.json().type).toBe('urn:meridian:problem:validation-failed');
      // The same key with a corrected body is a first use, not a mismatch.
      const valid = await h.post({ customerId: 'ada', amount: 1 }, 'key-3');
      expect(valid.statusCode).toBe(201);
    });

    it('runs the handler exactly once for concurrent requests with one key; the others get 409 then the replay', async () => {
      const h = await harness();
      const gate = deferred();
      const started = deferred();
      h.gate = gate;
      h.onExecute = () => started.resolve();
      const body = { customerId: 'ada', amount: 10 };
      const first = h.post(body, 'race');
      await started.promise;
      const others = await Promise.all(Array.from({ length: 20 }, () => h.post(body, 'race')));
      for (const response of others) {
        expect(response.statusCode).toBe(409);
        expect(response.json()).toMatchObject({ type: 'urn:meridian:problem:idempotency-request-in-flight' });
        expect(response.headers['retry-after']).toBe('5');
      }
      gate.resolve();
      expect((await first).statusCode).toBe(201);
      const after = await h.post(body, 'race');
      expect(after.headers['idempotent-replayed']).toBe('true');
      expect(h.executions.get('ada')).toBe(1);
    });

    it('lets exactly one of many simultaneous first requests run, whatever order they reach the store in', async () => {
      const h = await harness();
      const body = { customerId: 'grace', amount: 5 };
      const responses = await Promise.all(Array.from({ length: 25 }, () => h.post(body, 'stampede')));
      expect(h.executions.get('grace')).toBe(1);
      const statuses = responses.map((response) => response.statusCode);
      expect(statuses.filter((status) => status === 201)).toHaveLength(
        1 + responses.filter((response) => response.headers['idempotent-replayed'] === 'true').length,
      );
      expect(statuses.every((status) => status === 201 || status === 409)).toBe(true);
    });

    it('stores 4xx outcomes and replays them', async () => {
      const h = await harness();
      const first = await h.post({ customerId: 'unknown', amount: 10 }, 'key-4');
      expect(first.statusCode).toBe(404);
      const retry = await h.post({ customerId: 'unknown', amount: 10 }, 'key-4');
      expect(retry.statusCode).toBe(404);
      expect(retry.body).toBe(first.body);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(h.executions.get('unknown')).toBe(1);
    });

    it('releases the key after a 5xx so that a retry runs the handler again', async () => {
      const h = await harness();
      const first = await h.post({ customerId: 'flaky', amount: 10 }, 'key-5');
      expect(first.statusCode).toBe(500);
      const retry = await h.post({ customerId: 'flaky', amount: 10 }, 'key-5');
      expect(retry.statusCode).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBeUndefined();
      expect(h.executions.get('flaky')).toBe(2);
    });

    it('lets a retry take over the key once the lease of an attempt that died has run out', async () => {
      const h = await harness();
      const body = JSON.stringify({ customerId: 'ada', amount: 10 });
      // A first attempt reserved the key, then its process died: nothing will complete or release it.
      const fingerprint = requestFingerprint('POST', '/payments', Buffer.from(body));
      const reservation = await h.store.reserve({
        scope: 'POST /payments',
        key: 'orphan',
        fingerprint,
        nowMs: h.clock.now(),
        leaseMs: LEASE_MS,
        expiresAt: h.clock.now() + TTL_MS,
      });
      expect(reservation.outcome).toBe('reserved');
      h.clock.advance(LEASE_MS - 1_500);
      const early = await h.post(body, 'orphan');
      expect(early.statusCode).toBe(409);
      expect(early.headers['retry-after']).toBe('2');
      h.clock.advance(1_500);
      const takeover = await h.post(body, 'orphan');
      expect(takeover.statusCode).toBe(201);
      expect(h.executions.get('ada')).toBe(1);
      const replay = await h.post(body, 'orphan');
      expect(replay.headers['idempotent-replayed']).toBe('true');
    });

    /**
     * Runs a first attempt that outlives its lease and a retry that takes the key over, both held
     * in their handlers until released: the retry's reservation is the live one.
     */
    async function overlappingAttempts(h: Harness, body: unknown, key: string) {
      const firstGate = deferred();
      const secondGate = deferred();
      let started = deferred();
      h.onExecute = () => started.resolve();
      h.gate = firstGate;
      const first = h.post(body, key);
      await started.promise;
      h.clock.advance(LEASE_MS);
      started = deferred();
      h.gate = secondGate;
      const second = h.post(body, key);
      await started.promise;
      h.gate = undefined;
      return {
        first,
        second,
        finishFirst: () => firstGate.resolve(),
        finishSecond: () => secondGate.resolve(),
      };
    }

    it('does not let an attempt that outlived its lease overwrite the response of the attempt that took over', async () => {
      const h = await harness();
      const body = { customerId: 'ada', amount: 10 };
      const attempts = await overlappingAttempts(h, body, 'slow');
      // The stale attempt finishes first: its client gets its answer, but it is not stored.
      attempts.finishFirst();
      expect((await attempts.first).json()).toEqual({ paymentId: 'pay-slow-1', execution: 1 });
      expect((await h.post(body, 'slow')).statusCode).toBe(409);
      attempts.finishSecond();
      expect((await attempts.second).json()).toEqual({ paymentId: 'pay-slow-2', execution: 2 });
      const replay = await h.post(body, 'slow');
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.json()).toEqual({ paymentId: 'pay-slow-2', execution: 2 });
      await expectOutcomeCounts(h, { lease_lost: 1, stored: 1 });
    });

    it('does not let an attempt that outlived its lease release the key the attempt that took over holds', async () => {
      const h = await harness();
      // The first execution for 'flaky' fails with a 500, which releases the key it reserved.
      const body = { customerId: 'flaky', amount: 10 };
      const attempts = await overlappingAttempts(h, body, 'stale-release');
      attempts.finishFirst();
      expect((await attempts.first).statusCode).toBe(500);
      // Still held by the retry: a third attempt must not run alongside it.
      expect((await h.post(body, 'stale-release')).statusCode).toBe(409);
      attempts.finishSecond();
      expect((await attempts.second).statusCode).toBe(201);
      const replay = await h.post(body, 'stale-release');
      expect(replay.json()).toEqual({ paymentId: 'pay-stale-release-2', execution: 2 });
      expect(h.executions.get('flaky')).toBe(2);
    });

    it('forgets a key after its time to live: it may then be used for a new request', async () => {
      const h = await harness();
      await h.post({ customerId: 'ada', amount: 10 }, 'key-6');
      h.clock.advance(TTL_MS - 1);
      expect((await h.post({ customerId: 'ada', amount: 99 }, 'key-6')).statusCode).toBe(422);
      h.clock.advance(1);
      const reused = await h.post({ customerId: 'ada', amount: 99 }, 'key-6');
      expect(reused.statusCode).toBe(201);
      expect(reused.headers['idempotent-replayed']).toBeUndefined();
      h.clock.advance(TTL_MS);
      expect(await h.gateway.sweepIdempotencyKeys()).toBe(1);
    });

    it('counts idempotency outcomes in /metrics', async () => {
      const h = await harness();
      await h.post({ customerId: 'ada', amount: 10 }, 'm');
      await h.post({ customerId: 'ada', amount: 10 }, 'm');
      await h.post({ customerId: 'ada', amount: 11 }, 'm');
      await expectOutcomeCounts(h, { reserved: 1, stored: 1, replayed: 1, mismatch: 1 });
    });

    it('documents the Idempotency-Key header and the 409/422 answers in the OpenAPI document', async () => {
      const h = await harness();
      const document = (await h.gateway.server.inject({ method: 'GET', url: '/openapi.json' })).json();
      const operation = document.paths['/payments'].post;
      expect(operation.parameters).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ name: 'idempotency-key', in: 'header', required: true }),
        ]),
      );
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['409', '422']));
    });
  });
}

describe('Idempotency-Key parsing and fingerprints', () => {
  it('accepts 1 to 255 visible ASCII characters, bare or quoted, and nothing else', () => {
    expect(parseIdempotencyKey('8e03978e-40d5-43e8-bc93-6894a57f9324')).toEqual({
      ok: true,
      key: '8e03978e-40d5-43e8-bc93-6894a57f9324',
    });
    expect(parseIdempotencyKey('"8e03978e"')).toEqual({ ok: true, key: '8e03978e' });
    expect(parseIdempotencyKey(undefined)).toMatchObject({ ok: false, reason: 'missing' });
    expect(parseIdempotencyKey('""')).toMatchObject({ ok: false, reason: 'missing' });
    expect(parseIdempotencyKey(['a', 'b'])).toMatchObject({ ok: false, reason: 'invalid' });
    expect(parseIdempotencyKey('a\\b')).toMatchObject({ ok: false, reason: 'invalid' });
    expect(parseIdempotencyKey('é')).toMatchObject({ ok: false, reason: 'invalid' });
    expect(parseIdempotencyKey('k'.repeat(255))).toMatchObject({ ok: true });
  });

  it('fingerprints the method, the target and the exact body bytes', () => {
    const body = Buffer.from('{"a":1}');
    const base = requestFingerprint('POST', '/x', body);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(requestFingerprint('post', '/x', Buffer.from('{"a":1}'))).toBe(base);
    expect(requestFingerprint('PUT', '/x', body)).not.toBe(base);
    expect(requestFingerprint('POST', '/y', body)).not.toBe(base);
    expect(requestFingerprint('POST', '/x', Buffer.from('{"a": 1}'))).not.toBe(base);
  });
});
