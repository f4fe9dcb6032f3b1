/**
 * The commerce server of the soak benchmark (bench/soak.ts starts it as a child process): the
 * embedded commerce system, as `meridian demo` runs it, with a short retention everywhere —
 * finished orders' sagas and journals, Idempotency-Keys and the topics' records — so that a run
 * of minutes reaches the steady state a shop with a day's retention reaches in a day.
 *
 * Prints `listening <url>`, then every `--sample-s` seconds one JSON line of its own figures:
 * resident memory and V8 heap, the database files' size on disk, what retention removed, and
 * since the last line the event loop's longest delay and V8's longest and total pauses (what
 * tells a stall of the server from one of the machine or the load generator).
 *
 * The payment gateway runs in a process of its own (`meridian payments`, which bench/soak.ts
 * starts): the simulated provider keeps every charge in memory, which is not Meridian's memory.
 *
 * Options: --data-dir DIR and --payment-url URL (required), --retention-s S (default 60),
 * --sample-s S (default 10).
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { Inventory } from '../apps/commerce/inventory.ts';
import { Notifications } from '../apps/commerce/notifications.ts';
import { Order } from '../apps/commerce/order.ts';
import { startCommerceNode } from '../apps/commerce/server.ts';
import { SqliteLog } from '../src/log/index.ts';
import { SqliteDatabase, SqliteStore } from '../src/store/index.ts';

function option(name: string, fallback?: string): string {
  const index = process.argv.indexOf(`--${name}`);
  const value = index === -1 ? fallback : process.argv[index + 1];
  if (value === undefined) throw new RangeError(`--${name} is required`);
  return value;
}

function seconds(name: string, fallback: number): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < 1 || value > 86_400) {
    throw new RangeError(`--${name} must be an integer in [1, 86400]: current value is ${value}`);
  }
  return value;
}

const dataDir = option('data-dir');
const retentionMs = seconds('retention-s', 60) * 1000;
const sampleMs = seconds('sample-s', 10) * 1000;

const topics = Object.fromEntries(
  [Inventory.eventsTopic, Order.eventsTopic, Notifications.eventsTopic, 'meridian.dead-letters'].map(
    (topic) => [topic, { retentionMs }],
  ),
);
mkdirSync(dataDir, { recursive: true });
const database = new SqliteDatabase({ path: join(dataDir, 'meridian.db') });
const store = new SqliteStore({ database });
// The log deletes records past their topic's retention every 10 s (at most), not every 5 min.
const log = new SqliteLog(database, { retentionCheckIntervalMs: Math.min(retentionMs, 10_000) });
const server = await startCommerceNode({
  store,
  log,
  paymentUrl: option('payment-url'),
  // The gateway's credential, which bench/soak.ts gives both processes.
  ...(process.env.MERIDIAN_PAYMENTS_API_KEY ? { paymentApiKey: process.env.MERIDIAN_PAYMENTS_API_KEY } : {}),
  // Authentication off, as the soak was first measured: what it watches is storage and memory.
  auth: false,
  app: {
    maxOrdersInProgress: 1000,
    runtime: {
      topics,
      retention: {
        sagaMs: retentionMs,
        outcomeMs: retentionMs,
        // Orders and their notifications end once idle for the period; stock stays.
        entityMsByType: { [Order.name]: retentionMs, [Notifications.name]: retentionMs },
        intervalMs: 1000,
        storageSampleIntervalMs: sampleMs,
      },
    },
    // A key lives at least as long as its lease (30 s).
    http: {
      idempotencyKeyTtlMs: Math.max(retentionMs, 30_000),
      idempotencySweepIntervalMs: 5000,
      // The load generator is one client: the gateway's default per-client limit (100 requests/s
      // without authentication) would refuse four orders in five at 500/s.
      rateLimit: false,
    },
  },
});
console.log(`listening ${server.url}`);

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

const databasePath = join(dataDir, 'meridian.db');
/**
 * What of the resident memory is anonymous (heaps: V8's, malloc's, thread stacks) and what is
 * file-backed (code, mapped files), from Linux's /proc/self/smaps_rollup; zeros elsewhere.
 */
function residentKinds(): { anonymousBytes: number; fileBackedBytes: number } {
  try {
    const text = readFileSync('/proc/self/smaps_rollup', 'utf8');
    const kib = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { anonymousBytes: kib('Anonymous'), fileBackedBytes: kib('Rss') - kib('Anonymous') };
  } catch {
    return { anonymousBytes: 0, fileBackedBytes: 0 };
  }
}

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const pauses = { maxMs: 0, totalMs: 0, major: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    pauses.maxMs = Math.max(pauses.maxMs, entry.duration);
    pauses.totalMs += entry.duration;
    if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)
      pauses.major += 1;
  }
}).observe({ entryTypes: ['gc'] });

/**
 * The event loop's longest delay and V8's pauses since the last call, in ms, and how many of
 * those were full (mark-compact) collections: what releases native memory behind garbage.
 */
function stallFigures() {
  const figures = {
    loopDelayMaxMs: loopDelay.max / 1e6,
    gcPauseMaxMs: pauses.maxMs,
    gcPauseTotalMs: pauses.totalMs,
    majorGcs: pauses.major,
  };
  loopDelay.reset();
  pauses.maxMs = 0;
  pauses.totalMs = 0;
  pauses.major = 0;
  return figures;
}

/** Present when the benchmark ran this process with --expose-gc (its --gc option). */
const collectGarbage = (globalThis as { gc?: () => void }).gc;

const sampler = setInterval(() => {
  const stalls = stallFigures();
  collectGarbage?.();
  const memory = process.memoryUsage();
  const retention = server.app.runtime.stats.retention;
  console.log(
    JSON.stringify({
      atMs: Date.now(),
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      heapTotalBytes: memory.heapTotal,
      externalBytes: memory.external,
      arrayBuffersBytes: memory.arrayBuffers,
      ...residentKinds(),
      databaseBytes: fileBytes(databasePath),
      walBytes: fileBytes(`${databasePath}-wal`),
      freeBytes: retention.storage?.freeBytes ?? 0,
      kinds: retention.storage?.kinds ?? {},
      removedSagas: retention.sagas,
      removedKeys: retention.idempotencyKeys,
      removedEntities: retention.entities,
      ...stalls,
    }),
  );
}, sampleMs);

process.once('SIGTERM', () => {
  clearInterval(sampler);
  server
    .close()
    .then(async () => {
      await log.close();
      await store.close();
      database.close();
    })
    .then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
});
