// Faults on the local commerce cluster (scripts/cluster/cluster.sh): a seeded open-loop load of
// orders through HAProxy, one fault injected on real processes mid-load (SIGKILL, restarts,
// PostgreSQL failover, a node cut off by a network namespace, a slow or failing payment gateway),
// then the commerce invariants checked
// from the outside, through the HTTP contract. `test/cluster/faults.test.ts` runs a reduced set
// (CI); `bench/commerce-faults.ts` runs them all and prints the report.

import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  type AuditCharge,
  type AuditOrder,
  type AuditStock,
  auditCommerce,
  fetchCharges,
  fetchOrders,
} from '../../apps/commerce/invariants.ts';
import { seededRandom } from '../../src/testing/index.ts';
import { partitionFault } from './partition-fault.ts';

const run = promisify(execFile);
const script = resolve(import.meta.dirname, '../../scripts/cluster/cluster.sh');

export interface Cluster {
  /** HAProxy's URL. */
  readonly url: string;
  /** Each node's own URL (a retry sent straight to another node). */
  readonly nodeUrls: readonly string[];
  /** HAProxy's stats page. */
  readonly statsUrl: string;
  /** The cluster's state directory (the nodes' logs). */
  readonly stateDir: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Runs `cluster.sh <args>` (kill, restart, pg-restart, ...). */
  sh(...args: string[]): Promise<string>;
  /** Whether startCluster started it (nothing of it was running before). */
  readonly startedHere: boolean;
}

/** Starts the cluster (a no-op for what already runs) and reads its endpoints. */
export async function startCluster(timeoutMs = 300_000): Promise<Cluster> {
  const sh = async (...args: string[]) =>
    (await run('bash', [script, ...args], { timeout: timeoutMs, maxBuffer: 1 << 22 })).stdout;
  const startedHere = !(await sh('status').then(
    () => true,
    () => false,
  ));
  await sh('start');
  const env = Object.fromEntries(
    [...(await sh('env')).matchAll(/(\w+)=(\S+)/g)].map((match) => [match[1], match[2]]),
  );
  const url = env.MERIDIAN_CLUSTER_URL ?? 'http://127.0.0.1:18080';
  const base = Number(process.env.MERIDIAN_CLUSTER_NODE_BASE_PORT ?? 18110);
  return {
    url,
    nodeUrls: [1, 2, 3].map((n) => `http://127.0.0.1:${base + n}`),
    statsUrl: `http://127.0.0.1:${Number(new URL(url).port) + 1}`,
    stateDir: process.env.MERIDIAN_CLUSTER_DIR ?? resolve(import.meta.dirname, '../../.meridian-cluster'),
    headers: { authorization: `Bearer ${env.MERIDIAN_TOKEN}` },
    sh,
    startedHere,
  };
}

/** What a fault watched for itself: lines for the report, and what should have held and did not. */
export interface FaultFindings {
  readonly notes: readonly string[];
  readonly violations: readonly string[];
}

export interface Fault {
  readonly name: string;
  /** Why it cannot run on this machine (not root, a tool missing), or undefined when it can. */
  unavailable?(): Promise<string | undefined>;
  /** Sets the stage before the load, once every node is ready (moves a node into a namespace). */
  prepare?(cluster: Cluster): Promise<void>;
  /** Injected `faultAtS` seconds into the load. */
  inject(cluster: Cluster): Promise<void>;
  /** Undoes it `healAfterS` later (restarts what was killed); awaited before the audit. */
  heal?(cluster: Cluster): Promise<void>;
  readonly healAfterS?: number;
  /** What it observed, asked after the heal and the retries. */
  findings?(): Promise<FaultFindings>;
  /** Undoes `prepare` after the audit, whether the run succeeded or not. */
  cleanup?(cluster: Cluster): Promise<void>;
}

export interface FaultRunOptions {
  readonly seed: number;
  /** Orders offered per second. */
  readonly rate: number;
  readonly durationS: number;
  readonly faultAtS: number;
  /** Bound on every accepted order reaching a terminal status after the load. */
  readonly settleTimeoutMs?: number;
}

export interface FaultReport {
  readonly fault: string;
  readonly offered: number;
  readonly accepted: number;
  readonly confirmed: number;
  readonly cancelled: number;
  /** Requests (attempts) answered with an error or not at all. */
  readonly failedRequests: number;
  /** Orders not accepted within their attempts during the load (retried with their key after it). */
  readonly failedOrders: number;
  /** Seconds from the fault to the last failed request. */
  readonly errorWindowS: number;
  /** Seconds from the fault until a second's accepted orders were back to 90 % of the offered rate. */
  readonly recoveryS: number;
  /** Seconds of load after the fault: a recovery this long did not happen within the run. */
  readonly afterFaultS: number;
  /** Share of the orders due before the fault accepted at their first attempt (%). */
  readonly baselinePct: number;
  /** Failed attempts by HTTP status, 'timeout' or 'connection'. */
  readonly failures: Readonly<Record<string, number>>;
  readonly violations: readonly string[];
  /** What the fault observed of itself (see Fault.findings). */
  readonly notes: readonly string[];
}

const skuCount = 4;
const attemptsPerOrder = 4;
const retryDelayMs = 500;
// Above the nodes' own request timeout (10 s), so their 504 is seen rather than a client timeout.
const requestTimeoutMs = 12_000;

interface Attempt {
  /** The second (of the load) the order was due in. */
  readonly second: number;
  readonly first: boolean;
  readonly ok: boolean;
  /** The HTTP status, or 'timeout' / 'connection'. */
  readonly kind: string;
}

async function call(
  url: string,
  init: RequestInit & { headers: Record<string, string> },
): Promise<{ status: number; body: unknown } | { status: 'timeout' | 'connection'; body: undefined }> {
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(requestTimeoutMs) });
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: response.status, body };
  } catch (error) {
    const timeout = (error as Error).name === 'TimeoutError';
    return { status: timeout ? 'timeout' : 'connection', body: undefined };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** POSTs one order with its key, retrying with the same key; the order id, or undefined. */
async function placeOrder(
  base: string,
  headers: Record<string, string>,
  key: string,
  body: string,
  attempts: Attempt[],
  second: number,
  tries = attemptsPerOrder,
  delayMs = retryDelayMs,
): Promise<string | undefined> {
  for (let attempt = 0; attempt < tries; attempt++) {
    const answer = await call(`${base}/orders`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': key },
      body,
    });
    const orderId = (answer.body as { orderId?: unknown } | undefined)?.orderId;
    const first = attempt === 0;
    if (typeof answer.status === 'number' && answer.status < 300 && typeof orderId === 'string') {
      attempts.push({ second, first, ok: true, kind: String(answer.status) });
      return orderId;
    }
    attempts.push({ second, first, ok: false, kind: String(answer.status) });
    await sleep(delayMs);
  }
  return undefined;
}

function orderBody(random: { next(): number }, skus: readonly string[], index: number): string {
  const count = 1 + Math.floor(random.next() * 2);
  const picked = new Set<string>();
  while (picked.size < count) picked.add(skus[Math.floor(random.next() * skus.length)] as string);
  const items = [...picked].map((sku) => ({ sku, qty: 1 + Math.floor(random.next() * 2) }));
  return JSON.stringify({ customerId: `c-${index % 50}`, items });
}

interface LoadOutcome {
  readonly keys: Map<string, { body: string; orderId: string | undefined }>;
  readonly attempts: Attempt[];
}

async function offerLoad(
  cluster: Cluster,
  fault: Fault,
  skus: readonly string[],
  prefix: string,
  options: FaultRunOptions,
): Promise<{ load: LoadOutcome; healed: Promise<void> }> {
  const random = seededRandom(options.seed);
  const keys = new Map<string, { body: string; orderId: string | undefined }>();
  const attempts: Attempt[] = [];
  const startedMs = Date.now();
  const total = Math.round(options.rate * options.durationS);
  const pending: Promise<void>[] = [];
  let healed: Promise<void> = Promise.resolve();
  const injected = sleep(options.faultAtS * 1000).then(async () => {
    await fault.inject(cluster);
    healed = sleep((fault.healAfterS ?? 0) * 1000).then(() => fault.heal?.(cluster));
    // Awaited after the load; a failed heal must not be an unhandled rejection meanwhile.
    healed.catch(() => undefined);
  });
  for (let index = 0; index < total; index++) {
    const due = startedMs + (index * 1000) / options.rate;
    if (due > Date.now()) await sleep(due - Date.now());
    const key = `${prefix}-${index}`;
    const body = orderBody(random, skus, index);
    keys.set(key, { body, orderId: undefined });
    pending.push(
      placeOrder(
        cluster.url,
        { ...cluster.headers },
        key,
        body,
        attempts,
        Math.floor(index / options.rate),
      ).then((orderId) => {
        keys.set(key, { body, orderId });
      }),
    );
  }
  await Promise.all(pending);
  await injected;
  return { load: { keys, attempts }, healed };
}

/**
 * What the fault showed, by the second orders were due in: the error window runs from the fault
 * to the last second with a failed attempt; throughput has recovered from the first second from
 * which every second had at least 90 % of its orders accepted at their first attempt.
 */
function windows(attempts: readonly Attempt[], options: FaultRunOptions) {
  const failed = attempts.filter((attempt) => !attempt.ok && attempt.second >= options.faultAtS);
  const errorWindowS =
    failed.length === 0 ? 0 : Math.max(...failed.map((a) => a.second)) + 1 - options.faultAtS;
  const okPerSecond = new Map<number, number>();
  for (const attempt of attempts) {
    if (attempt.ok && attempt.first)
      okPerSecond.set(attempt.second, (okPerSecond.get(attempt.second) ?? 0) + 1);
  }
  let recoveryS = options.durationS - options.faultAtS;
  for (let second = options.durationS - 1; second >= options.faultAtS; second--) {
    if ((okPerSecond.get(second) ?? 0) < 0.9 * options.rate) break;
    recoveryS = second - options.faultAtS;
  }
  let before = 0;
  for (let second = 0; second < options.faultAtS; second++) before += okPerSecond.get(second) ?? 0;
  const baselinePct = Math.round((100 * before) / Math.max(1, options.faultAtS * options.rate));
  const failures: Record<string, number> = {};
  for (const attempt of attempts) if (!attempt.ok) failures[attempt.kind] = (failures[attempt.kind] ?? 0) + 1;
  return { errorWindowS, recoveryS, failures, baselinePct };
}

/** Waits (bounded) until no order of this run is pending; returns this run's orders. */
async function settledOrders(cluster: Cluster, ids: ReadonlySet<string>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = await fetchOrders(cluster.url, 'pending', cluster.headers);
    if (!pending.some((order) => ids.has(order.orderId)) || Date.now() > deadline) break;
    await sleep(1000);
  }
  return (await fetchOrders(cluster.url, undefined, cluster.headers)).filter((order) =>
    ids.has(order.orderId),
  );
}

/** Runs one fault under load and audits the result; what `prepare` set up is undone in any case. */
export async function runFault(
  cluster: Cluster,
  fault: Fault,
  options: FaultRunOptions,
): Promise<FaultReport> {
  try {
    await fault.prepare?.(cluster);
    await awaitAllNodesUp(cluster);
    return await runPrepared(cluster, fault, options);
  } finally {
    await fault.cleanup?.(cluster);
  }
}

async function runPrepared(cluster: Cluster, fault: Fault, options: FaultRunOptions): Promise<FaultReport> {
  const prefix = `${fault.name}-${options.seed}-${Date.now().toString(36)}`;
  const skus = Array.from({ length: skuCount }, (_, index) => `${prefix}-sku-${index}`);
  // Less stock than the load asks for: some orders must be cancelled, and none may oversell.
  const stockPerSku = Math.ceil((options.rate * options.durationS * 2.25) / skuCount / 1.6);
  for (const sku of skus) {
    const answer = await call(`${cluster.url}/inventory/${sku}`, {
      method: 'PUT',
      headers: { ...cluster.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ available: stockPerSku, price: 10 }),
    });
    if (answer.status !== 200) throw new Error(`stocking ${sku} answered ${JSON.stringify(answer)}`);
  }
  const { load, healed } = await offerLoad(cluster, fault, skus, prefix, options);
  const violations: string[] = [];
  await healed.catch((error: Error) =>
    violations.push(`healing ${fault.name} failed: ${error.message.slice(0, 300)}`),
  );
  const failedOrders = [...load.keys.values()].filter((entry) => entry.orderId === undefined).length;
  await awaitAllNodesUp(cluster);
  // A client retries what failed with the same key (and every tenth that did not), each retry
  // sent straight to a node, in turn: the answer must be the first one, from whichever node.
  // A key whose first request died with its node stays reserved for the gateway's lease (30 s,
  // answered 409 meanwhile), so the retries go on for up to 45 s.
  const retried = [...load.keys].filter(
    ([key, entry]) => entry.orderId === undefined || Number(key.split('-').pop()) % 10 === 0,
  );
  await Promise.all(
    Array.from({ length: 32 }, async (_, worker) => {
      for (let index = worker; index < retried.length; index += 32) {
        const [key, entry] = retried[index] as (typeof retried)[number];
        const base = cluster.nodeUrls[index % cluster.nodeUrls.length] as string;
        const orderId = await placeOrder(base, { ...cluster.headers }, key, entry.body, [], 0, 45, 1000);
        if (orderId === undefined)
          violations.push(`order with key ${key} was never accepted, retried for 45 s after the fault`);
        else if (entry.orderId !== undefined && orderId !== entry.orderId) {
          violations.push(`key ${key} answered order ${orderId} on a retry, ${entry.orderId} the first time`);
        }
        load.keys.set(key, { ...entry, orderId: orderId ?? entry.orderId });
      }
    }),
  );
  const ids = new Set(
    [...load.keys.values()].flatMap((entry) => (entry.orderId === undefined ? [] : [entry.orderId])),
  );
  const found = (await fault.findings?.()) ?? { notes: [], violations: [] };
  violations.push(...found.violations);
  const orders = await settledOrders(cluster, ids, options.settleTimeoutMs ?? 90_000);
  const report = await audit(cluster, skus, stockPerSku, ids, orders, violations);
  return {
    fault: fault.name,
    offered: load.keys.size,
    accepted: ids.size,
    confirmed: report.confirmed,
    cancelled: report.cancelled,
    failedRequests: load.attempts.filter((attempt) => !attempt.ok).length,
    failedOrders,
    ...windows(load.attempts, options),
    afterFaultS: options.durationS - options.faultAtS,
    violations,
    notes: found.notes,
  };
}

async function audit(
  cluster: Cluster,
  skus: readonly string[],
  stockPerSku: number,
  ids: ReadonlySet<string>,
  mine: readonly AuditOrder[],
  violations: string[],
) {
  const all = await fetchOrders(cluster.url, undefined, cluster.headers);
  const ofMySkus = all.filter((order) => order.items.some((item) => skus.includes(item.sku)));
  // One order per Idempotency-Key: no order of this run's SKUs that no key answered with.
  for (const order of ofMySkus) {
    if (!ids.has(order.orderId))
      violations.push(`order ${order.orderId} exists, and no key answered with it`);
  }
  if (mine.length !== ids.size) violations.push(`${ids.size} orders accepted, ${mine.length} listed`);
  const charges: AuditCharge[] = (await fetchCharges(cluster.url, { headers: cluster.headers })).filter(
    (charge) => ids.has(charge.orderId),
  );
  const stock: AuditStock[] = [];
  for (const sku of skus) {
    const answer = await call(`${cluster.url}/inventory/${sku}`, { headers: { ...cluster.headers } });
    stock.push(answer.body as AuditStock);
  }
  const report = auditCommerce({
    orders: mine,
    charges,
    stock,
    initialStock: Object.fromEntries(skus.map((sku) => [sku, stockPerSku])),
  });
  violations.push(...report.violations);
  // Each confirmation notified once. Notifications follow the confirmation through a
  // subscription (after a fault, once its partitions have moved): one not sent yet is looked for
  // again, for a bounded time, before it counts as missing; a second one is a violation at once.
  const notified = async (orderId: string) => {
    const answer = await call(`${cluster.url}/notifications?orderId=${orderId}`, {
      headers: { ...cluster.headers },
    });
    const sent = (answer.body as { kind: string }[] | undefined) ?? [];
    return sent.filter((n) => n.kind === 'order-confirmed').length;
  };
  let pending = mine.filter((o) => o.status === 'confirmed').map((o) => o.orderId);
  const deadline = Date.now() + notificationWaitMs;
  for (;;) {
    const missing: string[] = [];
    for (const orderId of pending) {
      const confirmations = await notified(orderId);
      if (confirmations === 0) missing.push(orderId);
      else if (confirmations > 1)
        violations.push(`order ${orderId} was notified ${confirmations} times of its confirmation`);
    }
    pending = missing;
    if (pending.length === 0 || Date.now() > deadline) break;
    await sleep(500);
  }
  for (const orderId of pending) {
    violations.push(`order ${orderId} was not notified of its confirmation within ${notificationWaitMs} ms`);
  }
  return report;
}

/** How long the audit waits for a confirmed order's notification before it counts as missing. */
const notificationWaitMs = 30_000;

/** Waits (bounded) until HAProxy has every node in rotation again. */
export async function awaitAllNodesUp(cluster: Cluster, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await Promise.all(
      cluster.nodeUrls.map(async (url) => (await call(`${url}/readyz`, { headers: {} })).status === 200),
    );
    if (ready.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error(`nodes not all ready within ${timeoutMs} ms: ${ready}`);
    await sleep(500);
  }
}

async function gatewaySettings(cluster: Cluster, settings: Record<string, number>): Promise<void> {
  const answer = await call(`${cluster.url}/payments/settings`, {
    method: 'PUT',
    headers: { ...cluster.headers, 'content-type': 'application/json' },
    body: JSON.stringify(settings),
  });
  if (answer.status !== 200) throw new Error(`PUT /payments/settings answered ${JSON.stringify(answer)}`);
}

const kill = (name: string) => (cluster: Cluster) => cluster.sh('kill', name).then(() => undefined);
const restart =
  (...names: string[]) =>
  async (cluster: Cluster) => {
    for (const name of names) await cluster.sh('restart', name);
  };

/** Every fault of the issue, by name. */
export const faults: Record<string, Fault> = {
  'node-kill': { name: 'node-kill', inject: kill('node-2'), healAfterS: 12, heal: restart('node-2') },
  'two-nodes-kill': {
    name: 'two-nodes-kill',
    inject: async (cluster) => {
      await cluster.sh('kill', 'node-1');
      await sleep(4000);
      await cluster.sh('kill', 'node-2');
    },
    healAfterS: 12,
    heal: restart('node-1', 'node-2'),
  },
  'kafka-broker-kill': {
    name: 'kafka-broker-kill',
    inject: kill('kafka-2'),
    healAfterS: 8,
    heal: restart('kafka-2'),
  },
  'pg-failover': {
    name: 'pg-failover',
    inject: kill('pg-primary'),
    healAfterS: 10,
    heal: (cluster) => cluster.sh('pg-rebuild-standby').then(() => undefined),
  },
  'node-partition': partitionFault(3, 15),
  'pg-restart': { name: 'pg-restart', inject: (cluster) => cluster.sh('pg-restart').then(() => undefined) },
  'redis-restart': { name: 'redis-restart', inject: kill('redis'), healAfterS: 3, heal: restart('redis') },
  'slow-gateway': {
    name: 'slow-gateway',
    inject: (cluster) => gatewaySettings(cluster, { latencyMs: 2000 }),
    healAfterS: 8,
    heal: (cluster) => gatewaySettings(cluster, { latencyMs: 0 }),
  },
  'failing-gateway': {
    name: 'failing-gateway',
    inject: (cluster) => gatewaySettings(cluster, { failureRate: 0.5 }),
    healAfterS: 8,
    heal: (cluster) => gatewaySettings(cluster, { failureRate: 0 }),
  },
};

export function formatReport(report: FaultReport): string {
  return [
    report.fault.padEnd(18),
    `offered ${report.offered}`,
    `accepted ${report.accepted} (confirmed ${report.confirmed}, cancelled ${report.cancelled})`,
    `failed requests ${report.failedRequests} ${JSON.stringify(report.failures)}`,
    `orders not accepted in their 4 attempts ${report.failedOrders}`,
    `error window ${report.errorWindowS} s`,
    `${report.recoveryS >= report.afterFaultS ? `not back to 90 % within the run's ${report.afterFaultS} s` : `back to 90 % in ${report.recoveryS} s`} (before the fault ${report.baselinePct} % at first attempt)`,
    report.violations.length === 0
      ? 'invariants hold'
      : `VIOLATIONS ${report.violations.length}: ${report.violations.slice(0, 3).join('; ')}`,
    ...report.notes,
  ].join('  ');
}
