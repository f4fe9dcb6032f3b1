import { randomUUID } from 'node:crypto';
import { build, type Histogram } from 'hdr-histogram-js';
import { errors, Pool } from 'undici';
import type { Random } from '../../../src/index.ts';
import { seededRandom } from '../../../src/testing/index.ts';
import type { LoadOptions } from './load-options.ts';
import { type FeedOutcome, OrderFeedClient } from './order-feed-client.ts';

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface LoadProgress {
  /** `warm-up` while the orders not counted in the summary are offered, then `measured`. */
  phase: 'warm-up' | 'measured';
  /** Seconds since the phase began. */
  elapsedSeconds: number;
  offered: number;
  sent: number;
  notSentOnTime: number;
  accepted: number;
  /** Orders accepted during the last second. */
  acceptedLastSecond: number;
  completed: number;
  /** Orders in flight, of both phases. */
  inFlight: number;
  errors: number;
}

export interface LoadSummary {
  url: string;
  offered: number;
  offeredPerSecond: number;
  sent: number;
  /** Orders due while `concurrency` orders were in flight: not sent, so the server never saw them. */
  notSentOnTime: number;
  accepted: number;
  acceptedPerSecond: number;
  /** Orders that reached a terminal status. */
  completed: number;
  completedPerSecond: number;
  confirmed: number;
  cancelled: number;
  /** Accepted orders whose terminal status was not seen within the terminal timeout. */
  unfinished: number;
  /** Latency from when each order was due (not when it was sent) to its 202. */
  latencyToAccepted: LatencySummary;
  /** Latency from when each order was due to the moment the generator learnt that it ended. */
  latencyToTerminal: LatencySummary;
  /**
   * How the generator learnt that orders ended: `events` (the gateway's order feed, one stream
   * for all), `long-poll` (a `Prefer: wait` status request per order) or `poll`.
   */
  watchedBy: 'events' | 'long-poll' | 'poll';
  errorsByKind: Record<string, number>;
  /** From the first measured order's due time to the last answer. */
  durationSeconds: number;
  /** Seconds of load offered before the measured orders and left out of every figure above. */
  warmupSeconds: number;
  /** Orders of the warm-up that were accepted (for costs per order over the whole run). */
  warmupAccepted: number;
}

export interface LoadIo {
  /** Called once a second while orders are offered and in flight. */
  progress(progress: LoadProgress): void;
  /** Called as each order ends, with its latency to terminal (ms from its due time): for figures over time (the soak benchmark). */
  ended?(latencyMs: number): void;
}

export class LoadSetupError extends Error {}

/** The commerce gateway's order feed (Server-Sent Events of orders that ended). */
const ORDER_FEED_PATH = '/orders/events';
/** Inventory PUTs in flight at once during setup. */
const SETUP_CONCURRENCY = 32;

function skuName(index: number): string {
  return `sku-${String(index + 1).padStart(5, '0')}`;
}

function newHistogram(): Histogram {
  // Microseconds, 3 significant digits, resized as needed.
  return build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3, autoResize: true });
}

function summarise(histogram: Histogram): LatencySummary {
  const ms = (micros: number) => Math.round(micros) / 1000;
  if (histogram.totalCount === 0) return { count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0 };
  // A percentile is reported as the top of its bucket, which can exceed the largest value seen.
  const max = histogram.maxValue;
  const at = (percentile: number) => ms(Math.min(histogram.getValueAtPercentile(percentile), max));
  return { count: histogram.totalCount, p50Ms: at(50), p90Ms: at(90), p99Ms: at(99), maxMs: ms(max) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What happened to the orders of one phase (the warm-up, or the measured run). */
class Tally {
  offered = 0;
  sent = 0;
  notSent = 0;
  accepted = 0;
  confirmed = 0;
  cancelled = 0;
  unfinished = 0;
  lastTerminalMs = 0;
  readonly toAccepted = newHistogram();
  readonly toTerminal = newHistogram();
  readonly errors = new Map<string, number>();

  error(kind: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  errorCount(): number {
    let count = 0;
    for (const value of this.errors.values()) count += value;
    return count;
  }
}

type Outcome =
  | { ok: true; status: number; body: unknown; headers: Record<string, string | string[] | undefined> }
  | { ok: false; kind: string };

/**
 * An open-loop load generator for the commerce contract. Order i is due at start + i/rate and is
 * sent then, whatever happened to the orders before it; latency is measured from when it was
 * due, so a server that stalls shows its stall in the percentiles instead of silently slowing
 * the generator down (coordinated omission). An order due while `concurrency` orders are in
 * flight is not sent and is counted as such.
 */
export class LoadGenerator {
  readonly #options: LoadOptions;
  readonly #io: LoadIo;
  readonly #random: Random;
  readonly #runId = randomUUID().slice(0, 8);
  #inFlight = 0;
  #idle: (() => void) | undefined;
  /** False once the gateway answered a long poll without applying it: poll from then on. */
  #longPoll: boolean;
  readonly #pool: Pool;
  /** The gateway's order feed while it serves (`--watch events`); undefined: status requests per order. */
  #feed: OrderFeedClient | undefined;
  /** The URL's path, without its trailing slash: prefixed to every request's path. */
  readonly #basePath: string;

  constructor(options: LoadOptions, io: LoadIo) {
    this.#options = options;
    this.#io = io;
    this.#random = seededRandom(options.seed);
    this.#longPoll = options.waitSeconds > 0;
    // Keep-alive connections, at most `connections` of them: requests beyond queue in the pool
    // (their wait counts in the latency), instead of opening a new connection per request. An
    // undici Pool rather than node:http: about half the CPU per request (74 µs against 145 µs
    // here), which matters as the generator shares the machine with the server it measures.
    const url = new URL(options.url);
    this.#basePath = url.pathname.replace(/\/$/, '');
    this.#pool = new Pool(url.origin, {
      connections: options.connections,
      connectTimeout: options.requestTimeoutMs,
    });
  }

  /** Sets every SKU's stock and price with `PUT /inventory/{sku}`. */
  async setup(): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.#options.skus) {
        const index = next++;
        const sku = skuName(index);
        const outcome = await this.#request('PUT', `/inventory/${encodeURIComponent(sku)}`, {
          available: this.#options.stock,
          price: 1 + (index % 50),
        });
        if (!outcome.ok || outcome.status !== 200) {
          const what = outcome.ok ? `answered ${outcome.status}` : `failed (${outcome.kind})`;
          throw new LoadSetupError(`Setting up inventory: PUT ${this.#options.url}/inventory/${sku} ${what}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SETUP_CONCURRENCY, this.#options.skus) }, worker));
  }

  /**
   * Offers the orders (the warm-up's, then the measured ones, on one schedule), waits for the
   * accepted ones to finish (bounded), and summarises the measured ones.
   */
  async run(signal?: AbortSignal): Promise<LoadSummary> {
    const { ratePerSecond, durationSeconds, warmupSeconds } = this.#options;
    if (this.#options.watch === 'events') {
      const feed = new OrderFeedClient(
        new URL(this.#options.url).origin,
        `${this.#basePath}${ORDER_FEED_PATH}`,
        undefined,
        this.#options.token,
      );
      // A gateway without the feed: follow each order with status requests instead.
      if (await feed.open()) this.#feed = feed;
      else feed.close();
    }
    const warmupCount = Math.floor(ratePerSecond * warmupSeconds);
    const total = warmupCount + Math.floor(ratePerSecond * durationSeconds);
    const intervalMs = 1000 / ratePerSecond;
    const warmup = new Tally();
    const measured = new Tally();
    const startMs = performance.now();
    const measuredStartMs = startMs + warmupCount * intervalMs;
    let offered = 0;
    let reported: Tally | undefined;
    let lastAccepted = 0;
    const progress = setInterval(() => {
      const nowMs = performance.now();
      const tally = nowMs < measuredStartMs ? warmup : measured;
      if (tally !== reported) lastAccepted = 0;
      reported = tally;
      const phaseStartMs = tally === warmup ? startMs : measuredStartMs;
      this.#io.progress({
        phase: tally === warmup ? 'warm-up' : 'measured',
        elapsedSeconds: Math.round((nowMs - phaseStartMs) / 100) / 10,
        offered: tally.offered,
        sent: tally.sent,
        notSentOnTime: tally.notSent,
        accepted: tally.accepted,
        acceptedLastSecond: tally.accepted - lastAccepted,
        completed: tally.confirmed + tally.cancelled,
        inFlight: this.#inFlight,
        errors: tally.errorCount(),
      });
      lastAccepted = tally.accepted;
    }, 1000);
    try {
      while (offered < total && signal?.aborted !== true) {
        const nowMs = performance.now();
        while (offered < total && startMs + offered * intervalMs <= nowMs) {
          this.#offer(offered < warmupCount ? warmup : measured, offered, startMs + offered * intervalMs);
          offered += 1;
        }
        if (offered < total) {
          await sleep(Math.max(0, startMs + offered * intervalMs - performance.now()));
        }
      }
      const offeringSeconds = Math.max(performance.now() - measuredStartMs, 0) / 1000;
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
      const completed = measured.confirmed + measured.cancelled;
      const completedSeconds = (Math.max(measured.lastTerminalMs, measuredStartMs) - measuredStartMs) / 1000;
      const perSecond = (count: number, seconds: number) =>
        count === 0 ? 0 : round(count / Math.max(seconds, 1e-9));
      return {
        url: this.#options.url,
        offered: measured.offered,
        offeredPerSecond: perSecond(measured.offered, offeringSeconds),
        sent: measured.sent,
        notSentOnTime: measured.notSent,
        accepted: measured.accepted,
        acceptedPerSecond: perSecond(measured.accepted, offeringSeconds),
        completed,
        completedPerSecond: perSecond(completed, completedSeconds),
        confirmed: measured.confirmed,
        cancelled: measured.cancelled,
        unfinished: measured.unfinished,
        latencyToAccepted: summarise(measured.toAccepted),
        latencyToTerminal: summarise(measured.toTerminal),
        errorsByKind: Object.fromEntries(
          [...measured.errors.entries()].sort(([a], [b]) => a.localeCompare(b)),
        ),
        watchedBy: this.#feed?.available === true ? 'events' : this.#longPoll ? 'long-poll' : 'poll',
        durationSeconds: round(Math.max(performance.now() - measuredStartMs, 0) / 1000),
        warmupSeconds,
        warmupAccepted: warmup.accepted,
      };
    } finally {
      clearInterval(progress);
    }
  }

  #offer(tally: Tally, index: number, dueMs: number): void {
    tally.offered += 1;
    // Drawn for every offered order, sent or not, so a seed gives the same orders whatever the timing.
    const order = this.#order();
    if (this.#inFlight >= this.#options.concurrency) {
      tally.notSent += 1;
      return;
    }
    this.#inFlight += 1;
    tally.sent += 1;
    this.#follow(tally, index, dueMs, order).finally(() => {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) this.#idle?.();
    });
  }

  /** An order drawn from the seeded source: a customer and 1..maxItems distinct SKUs. */
  #order(): { customerId: string; items: Array<{ sku: string; qty: number }> } {
    const random = this.#random;
    const pick = (bound: number) => Math.floor(random.next() * bound);
    const customerId = `customer-${pick(1000) + 1}`;
    const count = Math.min(this.#options.skus, 1 + pick(this.#options.maxItems));
    const skus = new Set<number>();
    while (skus.size < count) skus.add(pick(this.#options.skus));
    return { customerId, items: [...skus].map((sku) => ({ sku: skuName(sku), qty: 1 + pick(2) })) };
  }

  async #follow(tally: Tally, index: number, dueMs: number, order: unknown): Promise<void> {
    const placed = await this.#request('POST', '/orders', order, {
      'idempotency-key': `load-${this.#runId}-${index}`,
    });
    if (!placed.ok) return tally.error(placed.kind);
    if (placed.status !== 202) return tally.error(`http_${placed.status}`);
    tally.toAccepted.recordValue(Math.max(1, Math.round((performance.now() - dueMs) * 1000)));
    tally.accepted += 1;
    const orderId = (placed.body as { orderId?: unknown } | null)?.orderId;
    if (typeof orderId !== 'string') return tally.error('bad_response');

    const deadlineMs = performance.now() + this.#options.terminalTimeoutMs;
    if (this.#feed !== undefined) {
      const outcome = await this.#watch(this.#feed, orderId, deadlineMs);
      if (outcome.kind === 'ended') return this.#ended(tally, dueMs, outcome.status, outcome.atMs);
      if (outcome.kind === 'timeout') {
        tally.unfinished += 1;
        return tally.error('terminal_timeout');
      }
      // The feed is gone: ask about the order instead.
    }
    while (performance.now() < deadlineMs) {
      const longPoll = this.#longPoll;
      if (!longPoll) await sleep(this.#options.pollIntervalMs);
      const polled = longPoll
        ? await this.#request('GET', `/orders/${encodeURIComponent(orderId)}`, undefined, {
            prefer: `wait=${this.#options.waitSeconds}`,
          })
        : await this.#request('GET', `/orders/${encodeURIComponent(orderId)}`);
      if (longPoll && polled.ok && polled.headers['preference-applied'] === undefined) {
        // The gateway answers at once whatever the order's state: long polls would spin.
        this.#longPoll = false;
      }
      if (!polled.ok) {
        tally.error(`poll_${polled.kind}`);
        continue;
      }
      if (polled.status !== 200) {
        tally.error(`poll_http_${polled.status}`);
        continue;
      }
      const status = (polled.body as { status?: unknown } | null)?.status;
      if (status === 'confirmed' || status === 'cancelled') {
        return this.#ended(tally, dueMs, status, performance.now());
      }
    }
    tally.unfinished += 1;
    tally.error('terminal_timeout');
  }

  /**
   * Waits for the feed to tell the order's end. After a `gap` (events lost to the log's
   * retention), and once when the feed has said nothing for 10 s (or half the terminal timeout),
   * it asks about the order itself, so an end the feed missed never costs the whole timeout.
   */
  async #watch(feed: OrderFeedClient, orderId: string, deadlineMs: number): Promise<FeedOutcome> {
    let checkAtMs = performance.now() + Math.min(10_000, this.#options.terminalTimeoutMs / 2);
    for (;;) {
      const outcome = await feed.until(orderId, Math.min(deadlineMs, checkAtMs));
      if (outcome.kind === 'ended' || outcome.kind === 'unavailable') return outcome;
      if (performance.now() >= deadlineMs) return { kind: 'timeout' };
      checkAtMs = deadlineMs;
      const polled = await this.#request('GET', `/orders/${encodeURIComponent(orderId)}`);
      const status =
        polled.ok && polled.status === 200 ? (polled.body as { status?: unknown } | null)?.status : undefined;
      if (status === 'confirmed' || status === 'cancelled')
        return { kind: 'ended', status, atMs: performance.now() };
    }
  }

  /** Counts an order that ended, learnt of at `atMs`. */
  #ended(tally: Tally, dueMs: number, status: 'confirmed' | 'cancelled', atMs: number): void {
    tally.toTerminal.recordValue(Math.max(1, Math.round((atMs - dueMs) * 1000)));
    this.#io.ended?.(atMs - dueMs);
    tally.lastTerminalMs = Math.max(tally.lastTerminalMs, atMs);
    if (status === 'confirmed') tally.confirmed += 1;
    else tally.cancelled += 1;
  }

  async #request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Outcome> {
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    // Like a socket timeout: how long the connection may stay silent once the request is on it
    // (to within about a second: undici's header and body timers tick coarsely). A long poll
    // is answered up to `waitSeconds` late by design.
    const timeoutMs =
      this.#options.requestTimeoutMs + (headers.prefer === undefined ? 0 : this.#options.waitSeconds * 1000);
    try {
      const response = await this.#pool.request({
        method,
        path: `${this.#basePath}${path}`,
        headers: {
          ...(payload === null ? {} : { 'content-type': 'application/json' }),
          ...(this.#options.token === undefined ? {} : { authorization: `Bearer ${this.#options.token}` }),
          ...headers,
        },
        body: payload,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const text = await response.body.text();
      let parsed: unknown = null;
      try {
        parsed = text.length === 0 ? null : JSON.parse(text);
      } catch {
        parsed = null;
      }
      return { ok: true, status: response.statusCode, body: parsed, headers: response.headers };
    } catch (error) {
      const timedOut =
        error instanceof errors.HeadersTimeoutError ||
        error instanceof errors.BodyTimeoutError ||
        error instanceof errors.ConnectTimeoutError;
      return { ok: false, kind: timedOut ? 'timeout' : 'connection' };
    }
  }

  /** Closes the kept-alive connections and the order feed. */
  close(): void {
    this.#feed?.close();
    this.#pool.close().catch(() => {
      // Closing twice is the only failure: nothing is left to close.
    });
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
