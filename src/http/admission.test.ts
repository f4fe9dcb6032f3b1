// Rate limits, load shedding and policy exposure on gateway routes: refusals come before any work.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RetryableError } from '../errors.ts';
import {
  aimdLimit,
  bulkhead,
  circuitBreaker,
  loadShedder,
  redisRateLimiter,
  tokenBucket,
} from '../resilience/index.ts';
import { ManualClock } from '../time.ts';
import { createGateway, type Gateway, type GatewayOptions } from './gateway.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';

const opened: Gateway[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((gateway) => gateway.close()));
});

async function gateway(options: Partial<GatewayOptions> = {}): Promise<Gateway> {
  const created = await createGateway({ auth: false, rateLimit: false, defaultMetrics: false, ...options });
  opened.push(created);
  return created;
}

describe('gateway rate limits', () => {
  it('answers 429 with Retry-After in whole seconds, rounded up, once the burst is used', async () => {
    const clock = new ManualClock();
    const g = await gateway({ clock });
    let handled = 0;
    g.route({
      method: 'GET',
      url: '/balance',
      rateLimit: { limiter: tokenBucket({ ratePerSecond: 0.4, burst: 2, clock }), per: 'route' },
      handler: async () => ({ handled: ++handled }),
    });
    await g.ready();
    expect((await g.server.inject({ url: '/balance' })).statusCode).toBe(200);
    expect((await g.server.inject({ url: '/balance' })).statusCode).toBe(200);
    const refused = await g.server.inject({ url: '/balance' });
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    // One token takes 2500 ms at 0.4/s: 3 s, never 2.
    expect(refused.headers['retry-after']).toBe('3');
    expect(refused.json()).toMatchObject({
      status: 429,
      type: 'urn:meridian:problem:rate-limited',
      retryAfterMs: 2500,
    });
    expect(handled).toBe(2);
    clock.advance(2500);
    expect((await g.server.inject({ url: '/balance' })).statusCode).toBe(200);
  });

  it('counts each client separately, identified by the configured header', async () => {
    const clock = new ManualClock();
    const g = await gateway({ clock, clientIdHeader: 'X-Client-Id' });
    g.route({
      method: 'GET',
      url: '/balance',
      rateLimit: { limiter: tokenBucket({ ratePerSecond: 1, burst: 1, clock }) },
      handler: async () => ({ ok: true }),
    });
    await g.ready();
    const as = (client: string) => g.server.inject({ url: '/balance', headers: { 'x-client-id': client } });
    expect((await as('alice')).statusCode).toBe(200);
    expect((await as('alice')).statusCode).toBe(429);
    expect((await as('bob')).statusCode).toBe(200);
    expect((await as('bob')).statusCode).toBe(429);
  });

  it('prefers clientIdentity over the header, and leaves operations routes unlimited', async () => {
    const clock = new ManualClock();
    const g = await gateway({
      clock,
      clientIdHeader: 'x-client-id',
      clientIdentity: (request) => request.headers.authorization,
      rateLimit: { limiter: tokenBucket({ ratePerSecond: 1, burst: 1, clock }) },
    });
    g.route({ method: 'GET', url: '/a', handler: async () => ({ ok: true }) });
    await g.ready();
    const call = (authorization: string, client: string) =>
      g.server.inject({ url: '/a', headers: { authorization, 'x-client-id': client } });
    expect((await call('token-1', 'x')).statusCode).toBe(200);
    // Same token, another header value: still the same client.
    expect((await call('token-1', 'y')).statusCode).toBe(429);
    expect((await call('token-2', 'x')).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) expect((await g.server.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  it('refuses before the Idempotency-Key is reserved, so a retry after Retry-After runs the request', async () => {
    const clock = new ManualClock();
    const g = await gateway({ clock, idempotencyStore: new MemoryIdempotencyStore() });
    let handled = 0;
    g.route({
      method: 'POST',
      url: '/transfers',
      idempotent: true,
      rateLimit: { limiter: tokenBucket({ ratePerSecond: 1, burst: 1, clock }), per: 'route' },
      handler: async (_request, reply) => reply.code(201).send({ n: ++handled }),
    });
    await g.ready();
    const post = (key: string) =>
      g.server.inject({
        method: 'POST',
        url: '/transfers',
        headers: { 'idempotency-key': key },
        payload: {},
      });
    expect((await post('k1')).statusCode).toBe(201);
    expect((await post('k2')).statusCode).toBe(429);
    clock.advance(1000);
    // Had k2 been reserved by the refused attempt, this would be 409 in flight.
    const retried = await post('k2');
    expect(retried.statusCode).toBe(201);
    expect(retried.json()).toEqual({ n: 2 });
  });
});

// Needs a real Redis (MERIDIAN_TEST_REDIS_URL): the point is one client's limit shared by two
// gateway instances, as two nodes behind a load balancer would share it.
describe.skipIf(!process.env.MERIDIAN_TEST_REDIS_URL)('gateway rate limits shared through Redis', () => {
  it('refuses a client on the second gateway once it used its burst on the first', async () => {
    const redis = new Redis(process.env.MERIDIAN_TEST_REDIS_URL ?? '');
    try {
      const keyPrefix = `meridian-test:${randomUUID()}:`;
      const nodes: Gateway[] = [];
      for (let i = 0; i < 2; i++) {
        const node = await gateway({ clientIdHeader: 'x-client-id' });
        node.route({
          method: 'GET',
          url: '/balance',
          // A slow refill, so the test's own duration cannot give a token back.
          rateLimit: {
            limiter: redisRateLimiter({
              redis,
              ratePerSecond: 0.01,
              burst: 2,
              onRedisError: 'fail-closed',
              keyPrefix,
            }),
          },
          handler: async () => ({ node: i }),
        });
        await node.ready();
        nodes.push(node);
      }
      const as = (node: Gateway, client: string) =>
        node.server.inject({ url: '/balance', headers: { 'x-client-id': client } });
      expect((await as(nodes[0]!, 'alice')).statusCode).toBe(200);
      expect((await as(nodes[1]!, 'alice')).statusCode).toBe(200);
      const refused = await as(nodes[0]!, 'alice');
      expect(refused.statusCode).toBe(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(99);
      expect((await as(nodes[1]!, 'bob')).statusCode).toBe(200);
    } finally {
      redis.disconnect();
    }
  });
});

describe('gateway load shedding', () => {
  it('answers 503 with Retry-After beyond the limit without starting the handler, and frees slots', async () => {
    const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 2, minLimit: 2, maxLimit: 2 }) });
    const g = await gateway({ loadShedder: shedder });
    let started = 0;
    const releases: Array<() => void> = [];
    g.route({
      method: 'GET',
      url: '/slow',
      handler: async () => {
        started++;
        await new Promise<void>((resolve) => releases.push(resolve));
        return { ok: true };
      },
    });
    await g.ready();
    const first = g.server.inject({ url: '/slow' });
    const second = g.server.inject({ url: '/slow' });
    while (started < 2) await new Promise((resolve) => setImmediate(resolve));
    const shed = await g.server.inject({ url: '/slow' });
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['retry-after']).toBe('1');
    expect(shed.json()).toMatchObject({ type: 'urn:meridian:problem:load-shed', limit: 2, inFlight: 2 });
    expect(started).toBe(2);
    // Operations routes are never shed: a probe must see an overloaded node.
    expect((await g.server.inject({ url: '/healthz' })).statusCode).toBe(200);
    for (const release of releases) release();
    expect((await first).statusCode).toBe(200);
    expect((await second).statusCode).toBe(200);
    expect(shedder.inFlight).toBe(0);
    const third = g.server.inject({ url: '/slow' });
    while (started < 3) await new Promise((resolve) => setImmediate(resolve));
    releases[2]!();
    expect((await third).statusCode).toBe(200);
  });

  it('counts a 503 answer as a drop, which shrinks the adaptive limit', async () => {
    const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 10, minLimit: 1, maxLimit: 10 }) });
    const g = await gateway({ loadShedder: shedder });
    g.route({
      method: 'GET',
      url: '/busy',
      handler: async () => {
        throw new RetryableError('downstream busy');
      },
    });
    await g.ready();
    expect((await g.server.inject({ url: '/busy' })).statusCode).toBe(503);
    expect(shedder.snapshot()).toEqual({ limit: 9, inFlight: 0 });
  });

  it('gives the slot back when the client hangs up before its answer', async () => {
    const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 1, minLimit: 1, maxLimit: 1 }) });
    const g = await gateway({ loadShedder: shedder });
    let started!: () => void;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    g.route({
      method: 'GET',
      url: '/hang',
      handler: () => {
        started();
        return new Promise(() => {});
      },
    });
    const url = await g.listen();
    const controller = new AbortController();
    const request = fetch(`${url}/hang`, { signal: controller.signal }).catch(() => undefined);
    await handlerStarted;
    expect(shedder.inFlight).toBe(1);
    controller.abort();
    await request;
    for (let turn = 0; turn < 10_000 && shedder.inFlight > 0; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(shedder.inFlight).toBe(0);
  });

  it('lets a route opt out of the gateway shedder', async () => {
    const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 1, minLimit: 1, maxLimit: 1 }) });
    const g = await gateway({ loadShedder: shedder });
    g.route({ method: 'GET', url: '/free', loadShedder: false, handler: async () => ({ ok: true }) });
    await g.ready();
    shedder.tryAcquire();
    expect((await g.server.inject({ url: '/free' })).statusCode).toBe(200);
  });
});

describe('gateway backlog bound', () => {
  it('answers 503 while the work the route leaves running is at its limit, before the key is reserved', async () => {
    const g = await gateway({ idempotencyStore: new MemoryIdempotencyStore() });
    let depth = 0;
    g.route({
      method: 'POST',
      url: '/jobs',
      idempotent: true,
      backlog: { depth: () => depth, limit: 2, what: 'jobs queued', retryAfterSeconds: 5 },
      handler: async (_request, reply) => reply.code(202).send({ queued: ++depth }),
    });
    await g.ready();
    const post = (key: string) =>
      g.server.inject({ method: 'POST', url: '/jobs', headers: { 'idempotency-key': key }, payload: {} });
    expect((await post('a')).statusCode).toBe(202);
    expect((await post('b')).statusCode).toBe(202);
    const refused = await post('c');
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.json()).toMatchObject({
      type: 'urn:meridian:problem:backlog-full',
      depth: 2,
      limit: 2,
      detail: 'POST /jobs is refused while 2 jobs queued are waiting (limit 2); retry after 5 s.',
    });
    depth = 1;
    // Not reserved by the refusal: the retry runs (a reserved key would answer 409 or replay).
    const retried = await post('c');
    expect(retried.statusCode).toBe(202);
    expect(retried.json()).toEqual({ queued: 2 });
  });

  it('refuses a backlog it cannot apply when the route is registered', async () => {
    const g = await gateway();
    let routes = 0;
    const route = (backlog: object) => () =>
      g.route({
        method: 'POST',
        url: `/x${++routes}`,
        backlog: backlog as never,
        handler: async () => ({}),
      });
    expect(route({ depth: 3, limit: 1, what: 'jobs' })).toThrow("'backlog of POST /x");
    expect(route({ depth: () => 0, limit: 0, what: 'jobs' })).toThrow(".limit' must be an integer >= 1");
    expect(route({ depth: () => 0, limit: 1, what: '' })).toThrow(".what' must name what the depth counts");
    expect(route({ depth: () => 0, limit: 1, what: 'jobs', retryAfterSeconds: 0 })).toThrow(
      ".retryAfterSeconds' must be an integer in [1, 3600]",
    );
  });
});

describe('policy exposure', () => {
  it('lists snapshots at /policies and breaker states as gauges on /metrics', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({ name: 'auth', mode: 'consecutive', failureThreshold: 1, clock });
    const g = await gateway({ clock });
    g.exposePolicies({ auth: breaker, 'auth-bulkhead': bulkhead({ maxConcurrent: 3 }) });
    await g.ready();
    await expect(
      breaker.execute(() => {
        throw new Error('down');
      }),
    ).rejects.toThrow('down');
    const listed = (await g.server.inject({ url: '/policies' })).json();
    expect(listed.policies.auth).toMatchObject({ name: 'auth', state: 'open' });
    expect(listed.policies['auth-bulkhead']).toMatchObject({ active: 0, maxConcurrent: 3 });
    const metrics = (await g.server.inject({ url: '/metrics' })).body;
    expect(metrics).toContain('meridian_policy_circuit_state{policy="auth",state="open"} 1');
    expect(metrics).toContain('meridian_policy_circuit_state{policy="auth",state="closed"} 0');
    expect(metrics).toContain(
      'meridian_policy_snapshot_value{policy="auth-bulkhead",field="maxConcurrent"} 3',
    );
    expect(() => g.exposePolicies({ auth: breaker })).toThrow(/already exposed/);
  });
});
