import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { type RedisErrorEvent, redisRateLimiter, type SharedAlgorithm } from './redis-rate-limiter.ts';

/** A TCP port on 127.0.0.1 that nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('redis rate limiter when Redis is unreachable', () => {
  it('fail-open allows the request and reports the Redis error', async () => {
    const redis = new Redis({
      host: '127.0.0.1',
      port: await closedPort(),
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    const limiter = redisRateLimiter({ redis, ratePerSecond: 1, burst: 1, onRedisError: 'fail-open' });
    const events: RedisErrorEvent[] = [];
    limiter.onRedisError((event) => events.push(event));
    expect(await limiter.consume('k')).toEqual({ allowed: true, retryAfterMs: 0, remaining: 0 });
    expect(await limiter.consume('k')).toMatchObject({ allowed: true });
    expect(events).toHaveLength(2);
    expect(events[0]?.decision).toBe('allowed');
    expect(events[0]?.error).toBeInstanceOf(Error);
    redis.disconnect();
  });

  it('fail-closed refuses the request with failClosedRetryAfterMs and reports the Redis error', async () => {
    const redis = new Redis({
      host: '127.0.0.1',
      port: await closedPort(),
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    const limiter = redisRateLimiter({
      redis,
      ratePerSecond: 1,
      onRedisError: 'fail-closed',
      failClosedRetryAfterMs: 2000,
    });
    const events: RedisErrorEvent[] = [];
    limiter.onRedisError((event) => events.push(event));
    expect(await limiter.consume('k')).toEqual({ allowed: false, retryAfterMs: 2000, remaining: 0 });
    expect(events.map((event) => event.decision)).toEqual(['refused']);
    redis.disconnect();
  });

  it('decides after redisTimeoutMs when Redis neither answers nor fails (commands queued while reconnecting)', async () => {
    const clock = new ManualClock();
    // The offline queue holds commands while ioredis keeps reconnecting: without the limiter's own
    // timeout the request would wait as long as the outage lasts.
    const redis = new Redis({
      host: '127.0.0.1',
      port: await closedPort(),
      retryStrategy: () => 10_000,
      maxRetriesPerRequest: null,
    });
    redis.on('error', () => {});
    const limiter = redisRateLimiter({
      redis,
      ratePerSecond: 1,
      onRedisError: 'fail-closed',
      redisTimeoutMs: 100,
      timers: clock,
    });
    const events: RedisErrorEvent[] = [];
    limiter.onRedisError((event) => events.push(event));
    let settled = false;
    const decision = limiter.consume('k').finally(() => {
      settled = true;
    });
    await clock.advanceAsync(99);
    expect(settled).toBe(false);
    await clock.advanceAsync(1);
    expect(await decision).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    expect(events[0]?.error.message).toBe('Redis did not answer within 100 ms');
    redis.disconnect();
  });

  it('requires onRedisError, since neither choice is safe for every limit', () => {
    const redis = new Redis({ lazyConnect: true });
    expect(() =>
      redisRateLimiter({ redis, ratePerSecond: 1 } as Parameters<typeof redisRateLimiter>[0]),
    ).toThrow("'onRedisError' must be given explicitly");
    expect(() =>
      redisRateLimiter({ redis, ratePerSecond: 1, onRedisError: 'fail-sideways' as 'fail-open' }),
    ).toThrow("'onRedisError' must be one of 'fail-open', 'fail-closed'");
    redis.disconnect();
  });
});

// Needs a real Redis (MERIDIAN_TEST_REDIS_URL, e.g. redis://127.0.0.1:6379): the point is that the
// Lua scripts are atomic and shared across clients, which only a real server can show. The same
// cases run against a real Redis Cluster (MERIDIAN_TEST_REDIS_CLUSTER_NODES, from
// scripts/redis/cluster.sh): each decision touches one key, so it runs on that key's shard.
const clusterNodes = process.env.MERIDIAN_TEST_REDIS_CLUSTER_NODES;
const layouts: [string, (() => Redis | Cluster) | undefined][] = [
  [
    'Redis',
    process.env.MERIDIAN_TEST_REDIS_URL === undefined
      ? undefined
      : () => new Redis(process.env.MERIDIAN_TEST_REDIS_URL!),
  ],
  [
    'Redis Cluster',
    clusterNodes === undefined
      ? undefined
      : () =>
          new Cluster(
            clusterNodes.split(',').map((node) => {
              const [host, port] = node.split(':');
              return { host: host!, port: Number(port) };
            }),
          ),
  ],
];

describe.each(layouts)('redis rate limiter against real %s', (_name, connect) => {
  const keyPrefix = `meridian-test:${randomUUID()}:`;
  let first: Redis | Cluster;
  let second: Redis | Cluster;

  beforeAll(() => {
    if (connect === undefined) return;
    first = connect();
    second = connect();
  });

  afterAll(async () => {
    if (connect === undefined) return;
    // Every key the cases wrote expires by itself once it would be full again; nothing to clean.
    first.disconnect();
    second.disconnect();
  });

  describe.skipIf(connect === undefined).each(['gcra', 'token-bucket'] as SharedAlgorithm[])(
    '%s',
    (algorithm) => {
      it('two instances on two clients share one limit: exactly `burst` of many concurrent requests pass', async () => {
        // A rate of one per 100 s means nothing refills while the test runs.
        const options = {
          ratePerSecond: 0.01,
          burst: 5,
          algorithm,
          keyPrefix,
          onRedisError: 'fail-closed',
        } as const;
        const a = redisRateLimiter({ ...options, redis: first });
        const b = redisRateLimiter({ ...options, redis: second });
        const key = `shared-${algorithm}`;
        const decisions = await Promise.all(
          Array.from({ length: 40 }, (_, index) => (index % 2 === 0 ? a : b).consume(key)),
        );
        const allowed = decisions.filter((decision) => decision.allowed);
        expect(allowed).toHaveLength(5);
        expect(allowed.map((decision) => decision.remaining).sort()).toEqual([0, 1, 2, 3, 4]);
        for (const refused of decisions.filter((decision) => !decision.allowed)) {
          expect(refused.retryAfterMs).toBeGreaterThan(90_000);
          expect(refused.retryAfterMs).toBeLessThanOrEqual(100_000);
        }
        // Another key has its own limit.
        expect((await b.consume(`other-${algorithm}`)).allowed).toBe(true);
        // The key expires by itself once it would be full again.
        const ttl = await first.pttl(keyPrefix + key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(500_000);
      });

      it('lets a refused request through once its retryAfterMs has passed', async () => {
        const options = {
          ratePerSecond: 20,
          burst: 2,
          algorithm,
          keyPrefix,
          onRedisError: 'fail-closed',
        } as const;
        const a = redisRateLimiter({ ...options, redis: first });
        const b = redisRateLimiter({ ...options, redis: second });
        const key = `refill-${algorithm}`;
        expect((await a.consume(key)).allowed).toBe(true);
        expect((await b.consume(key)).allowed).toBe(true);
        const refused = await a.consume(key);
        expect(refused.allowed).toBe(false);
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(50);
        // Redis keeps the time, so waiting on it here is a cross-process wait, bounded by 50 ms.
        await new Promise((resolve) => setTimeout(resolve, refused.retryAfterMs + 2));
        expect((await b.consume(key)).allowed).toBe(true);
      });

      it('charges the cost of a request', async () => {
        const limiter = redisRateLimiter({
          ratePerSecond: 0.01,
          burst: 10,
          algorithm,
          keyPrefix,
          redis: first,
          onRedisError: 'fail-open',
        });
        const key = `cost-${algorithm}`;
        expect(await limiter.consume(key, 7)).toMatchObject({ allowed: true, remaining: 3 });
        expect(await limiter.consume(key, 4)).toMatchObject({ allowed: false, remaining: 3 });
        expect(await limiter.consume(key, 3)).toMatchObject({ allowed: true, remaining: 0 });
      });
    },
  );
});
