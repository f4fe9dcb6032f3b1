/**
 * The cache layer's figures, beside lru-cache and bentocache in the same run: `npm run bench:cache`.
 *
 * - L1 hit: ns per read of a cached key (10,000 keys, read in turn), for a plain Map, lru-cache,
 *   bentocache's memory tier, and Meridian's cache (sync `peek`, and `await get`, the API apps
 *   use). Cases run interleaved, round after round; each figure is the best round (interference
 *   on a shared machine only ever adds time).
 * - L2 hit: µs per read over loopback Redis with no L1 (Meridian: HMGET + decode + window checks;
 *   bentocache: its Redis tier alone), against a direct ioredis GET; one read at a time, then
 *   reads per second with 64 in flight.
 * - Stampede: 1,000 concurrent callers miss one key whose loader takes 5 ms; loads counted.
 * - Invalidation across nodes: a second process holds the cache on the same Redis; the time from
 *   `delete` on this node to the message reaching the other node's cache, p50 and p99.
 *
 * - Entity-change binding: an embedded runtime (SQLite) applying commands to 1,000 entities, 64 in
 *   flight, with a cache bound to its committed changes (`bindEntityChanges`) and without, in
 *   alternating rounds on one runtime: commands per second each way, the cost of reporting the
 *   changes and invalidating on the commit path.
 *
 * Needs Redis: MERIDIAN_BENCH_REDIS_URL, else MERIDIAN_TEST_REDIS_URL, else redis://127.0.0.1:6379.
 * Options: --rounds N (default 9), --round-ms N (default 40), --invalidations N (default 2000).
 */
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisDriver } from 'bentocache/drivers/redis';
import { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { bindEntityChanges, createCache, RedisInvalidationBus, RedisTier } from '../src/cache/index.ts';
import { createRuntime, entity } from '../src/index.ts';
import { openSqliteLog } from '../src/log/index.ts';
import { SqliteStore } from '../src/store/index.ts';
import { median } from './stats.ts';

const redisUrl =
  process.env.MERIDIAN_BENCH_REDIS_URL ?? process.env.MERIDIAN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Options {
  rounds: number;
  roundMs: number;
  invalidations: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { rounds: 9, roundMs: 40, invalidations: 2000 };
  for (let index = 0; index < argv.length; index += 2) {
    const value = Number(argv[index + 1]);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${argv[index]} needs a positive integer`);
    if (argv[index] === '--rounds') options.rounds = value;
    else if (argv[index] === '--round-ms') options.roundMs = value;
    else if (argv[index] === '--invalidations') options.invalidations = value;
    else throw new Error(`Unknown option ${argv[index]}`);
  }
  return options;
}

const KEY_COUNT = 10_000;
const keys = Array.from({ length: KEY_COUNT }, (_, index) => `product-${index}`);
const productOf = (key: string) => ({ sku: key, price: 12.5, available: 40 });

type Read = (key: string) => unknown;

interface Case {
  name: string;
  read: Read;
  async: boolean;
  iterations: number;
  nsPerRead: number[];
}

async function timeRound(testCase: Case): Promise<number> {
  const { read, iterations } = testCase;
  let sink = 0;
  const started = process.hrtime.bigint();
  if (testCase.async) {
    for (let index = 0; index < iterations; index++) {
      if ((await read(keys[index % KEY_COUNT]!)) !== undefined) sink++;
    }
  } else {
    for (let index = 0; index < iterations; index++) {
      if (read(keys[index % KEY_COUNT]!) !== undefined) sink++;
    }
  }
  const elapsedNs = Number(process.hrtime.bigint() - started);
  if (sink !== iterations) throw new Error(`${testCase.name}: ${iterations - sink} reads missed`);
  return elapsedNs / iterations;
}

/** Runs the cases interleaved, calibrating each to about roundMs per round. */
async function interleaved(cases: Case[], options: Options): Promise<void> {
  for (const testCase of cases) {
    const nsPerRead = await timeRound({ ...testCase, iterations: 10_000 });
    testCase.iterations = Math.max(10_000, Math.round((options.roundMs * 1e6) / nsPerRead));
  }
  for (let round = 0; round < options.rounds; round++) {
    for (const testCase of cases) testCase.nsPerRead.push(await timeRound(testCase));
  }
}

const best = (values: number[]) => Math.min(...values);

async function l1Hits(options: Options) {
  const map = new Map(keys.map((key) => [key, productOf(key)]));
  const lru = new LRUCache<string, object>({ max: KEY_COUNT * 2 });
  const bento = new BentoCache({
    default: 'memory',
    stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: KEY_COUNT * 2 })) },
  });
  const meridian = createCache<object>({
    name: 'bench-l1',
    ttlMs: 3_600_000,
    l1: { maxEntries: KEY_COUNT * 2 },
  });
  for (const key of keys) {
    lru.set(key, productOf(key));
    await bento.set({ key, value: productOf(key), ttl: '1h' });
    await meridian.set(key, productOf(key));
  }
  const cases: Case[] = [
    { name: 'Map', read: (key: string) => map.get(key), async: false },
    { name: 'lru-cache', read: (key: string) => lru.get(key), async: false },
    { name: 'meridian peek', read: (key: string) => meridian.peek(key), async: false },
    { name: 'meridian get', read: (key: string) => meridian.get(key), async: true },
    { name: 'bentocache get', read: (key: string) => bento.get({ key }), async: true },
  ].map((testCase) => ({ ...testCase, iterations: 0, nsPerRead: [] }));
  await interleaved(cases, options);
  await bento.disconnectAll();
  const figures = Object.fromEntries(cases.map((testCase) => [testCase.name, best(testCase.nsPerRead)]));
  const medians = Object.fromEntries(cases.map((testCase) => [testCase.name, median(testCase.nsPerRead)]));
  return { figures, medians, snapshot: meridian.snapshot() };
}

/** Reads per second with `inFlight` reads outstanding at all times, for about `durationMs`. */
async function throughput(read: Read, inFlight: number, durationMs: number): Promise<number> {
  let done = 0;
  const deadline = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, worker) => {
      let index = worker;
      while (performance.now() < deadline) {
        await read(keys[index % KEY_COUNT]!);
        index += inFlight;
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

async function l2Hits(options: Options) {
  const redis = new Redis(redisUrl);
  const keyPrefix = `meridian:bench:${randomUUID()}:`;
  const meridian = createCache<object>({
    name: 'bench-l2',
    ttlMs: 3_600_000,
    l1: false,
    l2: new RedisTier({ redis, keyPrefix, timeoutMs: 1000 }),
  });
  const bento = new BentoCache({
    default: 'redis',
    prefix: `${keyPrefix}bento`,
    stores: { redis: bentostore().useL2Layer(redisDriver({ connection: redis })) },
  });
  const count = 1000;
  for (const key of keys.slice(0, count)) {
    await meridian.set(key, productOf(key));
    await redis.set(`${keyPrefix}plain:${key}`, JSON.stringify(productOf(key)));
    await bento.set({ key, value: productOf(key), ttl: '1h' });
  }
  const slice = (key: string) => keys[Number(key.slice(8)) % count]!;
  const cases: Case[] = [
    { name: 'redis GET', read: (key: string) => redis.get(`${keyPrefix}plain:${slice(key)}`), async: true },
    { name: 'meridian get', read: (key: string) => meridian.get(slice(key)), async: true },
    { name: 'bentocache get', read: (key: string) => bento.get({ key: slice(key) }), async: true },
  ].map((testCase) => ({ ...testCase, iterations: 0, nsPerRead: [] }));
  await interleaved(cases, { ...options, rounds: Math.min(options.rounds, 5), roundMs: options.roundMs * 2 });
  // Alternating rounds, best of each, as for latency: interference only ever lowers a round.
  const perSecond = { redis: 0, meridian: 0 };
  for (let round = 0; round < 5; round++) {
    const direct = await throughput((key) => redis.get(`${keyPrefix}plain:${slice(key)}`), 64, 250);
    perSecond.redis = Math.max(perSecond.redis, direct);
    perSecond.meridian = Math.max(
      perSecond.meridian,
      await throughput((key) => meridian.get(slice(key)), 64, 250),
    );
  }
  if (meridian.snapshot().hitsL2 === 0) throw new Error('the L2 case never hit Redis');
  await bento.disconnectAll().catch(() => {});
  redis.disconnect();
  const figures = Object.fromEntries(cases.map((testCase) => [testCase.name, best(testCase.nsPerRead)]));
  return { figures, perSecond };
}

async function stampede() {
  let loads = 0;
  const cache = createCache<object>({ name: 'bench-stampede', ttlMs: 60_000 });
  const durationsMs: number[] = [];
  for (let round = 0; round < 20; round++) {
    const key = `cold-${round}`;
    const loader = () =>
      new Promise<object>((resolve) => {
        loads++;
        setTimeout(() => resolve(productOf(key)), 5);
      });
    const started = performance.now();
    await Promise.all(Array.from({ length: 1000 }, () => cache.get(key, loader)));
    durationsMs.push(performance.now() - started);
  }
  return { loadsPerStampede: loads / 20, medianMs: median(durationsMs) };
}

const WARMUP = 200;

/** Invalidations from this process to a child on the same Redis: delivery latency percentiles. */
async function invalidationLatency(options: Options) {
  const channel = `meridian:bench:invalidations:${randomUUID()}`;
  const child = fork(new URL('./cache-node.ts', import.meta.url), [redisUrl, channel], { stdio: 'inherit' });
  const received: number[] = [];
  const ready = new Promise<void>((resolve) => {
    child.on('message', (message: { ready?: boolean; receivedAtMs?: number }) => {
      if (message.ready) resolve();
      if (message.receivedAtMs !== undefined) received.push(message.receivedAtMs);
    });
  });
  await ready;
  const redis = new Redis(redisUrl);
  const bus = new RedisInvalidationBus({ redis, channel });
  await bus.ready();
  const cache = createCache<object>({ name: 'bench-nodes', ttlMs: 60_000, invalidation: bus });
  const sentAtMs: number[] = [];
  const total = options.invalidations + WARMUP;
  for (let index = 0; index < total; index++) {
    sentAtMs.push(performance.timeOrigin + performance.now());
    await cache.delete(`key-${index}`);
    // Paced, as real invalidations are: one every 0.5 ms on average.
    if (index % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const deadline = performance.now() + 5000;
  while (received.length < total && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  child.kill();
  await bus.close();
  redis.disconnect();
  if (received.length !== total) throw new Error(`only ${received.length} of ${total} invalidations arrived`);
  // The first WARMUP messages warm the JIT and the connections on both sides; they are not counted.
  const latencies = received
    .map((at, index) => at - sentAtMs[index]!)
    .slice(WARMUP)
    .sort((a, b) => a - b);
  const percentile = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  return { p50Ms: percentile(0.5), p99Ms: percentile(0.99), maxMs: latencies.at(-1)! };
}

const Tally = entity('BenchTally', {
  initial: () => ({ n: 0 }),
  commands: { add: (state) => ({ state: { n: state.n + 1 } }) },
});

/** Commands per second with and without a cache bound to the runtime's committed changes. */
async function entityBinding() {
  const directory = mkdtempSync(join(tmpdir(), 'meridian-bench-binding-'));
  const log = openSqliteLog({ path: join(directory, 'bench.db') });
  const store = new SqliteStore({ database: log.db });
  const runtime = createRuntime({ store, log, retention: { enabled: false } }).register(Tally);
  await runtime.start();
  const cache = createCache<number>({
    name: 'bench-tallies',
    ttlMs: 60_000,
    loader: async (id) => (await runtime.state(Tally, id))?.state.n ?? 0,
  });
  const round = async (bound: boolean): Promise<number> => {
    const binding = bound ? bindEntityChanges(runtime, cache, { entity: Tally }) : undefined;
    // Every entity cached, so each change has a copy to invalidate.
    await Promise.all(Array.from({ length: 1000 }, (_, index) => cache.get(`t-${index}`)));
    let next = 0;
    const commands = 3000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < commands) await runtime.send(Tally, `t-${next++ % 1000}`, 'add', undefined);
      }),
    );
    const perSecond = commands / ((performance.now() - started) / 1000);
    binding?.dispose();
    return perSecond;
  };
  const bound: number[] = [];
  const unbound: number[] = [];
  await round(false); // warm-up
  for (let index = 0; index < 6; index++) {
    unbound.push(await round(false));
    bound.push(await round(true));
  }
  await runtime.stop();
  await store.close();
  await log.close();
  rmSync(directory, { recursive: true, force: true });
  return { bound: Math.max(...bound), unbound: Math.max(...unbound) };
}

const options = parseOptions(process.argv.slice(2));
const l1 = await l1Hits(options);
const l2 = await l2Hits(options);
const herd = await stampede();
const invalidation = await invalidationLatency(options);
const binding = await entityBinding();
const ns = (value: number | undefined) => `${Math.round(value ?? Number.NaN)} ns`;
const us = (value: number | undefined) => `${((value ?? Number.NaN) / 1000).toFixed(1)} µs`;
console.log(
  `cache: L1 hit get ${ns(l1.figures['meridian get'])} peek ${ns(l1.figures['meridian peek'])}` +
    ` (Map ${ns(l1.figures.Map)}, lru-cache ${ns(l1.figures['lru-cache'])}, bentocache ${us(l1.figures['bentocache get'])})` +
    ` | L2 hit ${us(l2.figures['meridian get'])} (redis GET ${us(l2.figures['redis GET'])}, bentocache ${us(l2.figures['bentocache get'])})` +
    `, ${Math.round(l2.perSecond.meridian)}/s at 64 in flight (redis GET ${Math.round(l2.perSecond.redis)}/s)` +
    ` | stampede of 1000: ${herd.loadsPerStampede} load, ${herd.medianMs.toFixed(1)} ms` +
    ` | invalidation across 2 processes p50 ${invalidation.p50Ms.toFixed(2)} ms p99 ${invalidation.p99Ms.toFixed(2)} ms` +
    ` | commands ${Math.round(binding.bound)}/s with a bound cache, ${Math.round(binding.unbound)}/s without` +
    ` (medians of rounds: get ${ns(l1.medians['meridian get'])}, lru-cache ${ns(l1.medians['lru-cache'])})`,
);
