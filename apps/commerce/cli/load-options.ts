import type { ParseArgsOptionsConfig } from 'node:util';
import { choice, parseCommandLine } from '../../../src/cli/index.ts';
import { ValidationError } from '../../../src/index.ts';

export interface LoadOptions {
  /** Base URL of the commerce gateway. @default 'http://127.0.0.1:7070' */
  url: string;
  /** Orders offered per second, on a fixed schedule. @default 100 */
  ratePerSecond: number;
  /** How long orders are offered (seconds). @default 10 */
  durationSeconds: number;
  /**
   * Seconds of orders offered at the same rate before the measured ones, not counted in the
   * summary (like wrk2's calibration period): connections, JIT and caches of both sides settle
   * first, so the figures are those of a running system rather than of a cold start. @default 0
   */
  warmupSeconds: number;
  /** SKUs set up and ordered from. @default 10 */
  skus: number;
  /** Units of stock per SKU. @default 100000 */
  stock: number;
  /** Orders in flight at most (from POST to terminal status); a scheduled order beyond it is not sent. @default 1000 */
  concurrency: number;
  /** Keep-alive connections to the gateway at most; requests beyond wait for a free one. @default 256 */
  connections: number;
  /** Seed of the order contents (customers, SKUs, quantities). @default 1 */
  seed: number;
  /** Most distinct SKUs per order (1 to this many). @default 3 */
  maxItems: number;
  /**
   * How the generator learns that orders ended: `events` follows them all over the gateway's
   * order feed (`GET /orders/events`, one Server-Sent Events stream; a gateway without it is
   * asked per order instead); `orders` asks about each order (`GET /orders/{id}`, see
   * `waitSeconds`). @default 'events'
   */
  watch: 'events' | 'orders';
  /**
   * Long poll: each status request asks the gateway to answer once the order ends, or after this
   * many seconds (`Prefer: wait`). 0 polls every `pollIntervalMs` instead, as the generator also
   * does against a gateway that does not apply the preference. @default 10
   */
  waitSeconds: number;
  /** Delay between two status polls of one order when not long polling (ms). @default 25 */
  pollIntervalMs: number;
  /** How long an accepted order may take to reach a terminal status (ms). @default 30000 */
  terminalTimeoutMs: number;
  /** Timeout of one HTTP request (ms). @default 10000 */
  requestTimeoutMs: number;
  /** Skip `PUT /inventory/{sku}` (the stock is already set up). @default false */
  skipSetup: boolean;
  /** Print the summary as one JSON object instead of text. @default false */
  json: boolean;
  /**
   * An operator's bearer token (the generator places orders for many customers and sets up
   * stock), from MERIDIAN_TOKEN: an environment variable, so it does not show in process lists.
   */
  token?: string;
}

export const LOAD_USAGE = `Usage: commerce load [options]

Offers orders to a running commerce gateway at a fixed rate (open loop: an order is sent when
it is due, whatever happened to the earlier ones, so slow answers cannot hide latency), then
follows each accepted order to its terminal status.

Options:
  --url <url>                  gateway base URL (default http://127.0.0.1:7070)
  --rate <orders/s>            orders offered per second, 1..100000 (default 100)
  --duration <s>               seconds of offered load, >0..3600 (default 10)
  --warmup <s>                 seconds of load at the same rate before those measured, not
                               counted in the summary, 0..3600 (default 0)
  --skus <n>                   SKUs to set up and order from, 1..100000 (default 10)
  --stock <units>              units of stock per SKU, 0..1000000000 (default 100000)
  --concurrency <n>            orders in flight at most, 1..100000 (default 10000); an order
                               due while the limit is reached is counted as not sent on time
  --connections <n>            keep-alive connections at most, 1..10000 (default 256)
  --seed <n>                   seed of the order contents, 0..4294967295 (default 1)
  --max-items <n>              most distinct SKUs per order, 1..20 (default 3)
  --watch <events|orders>      how to learn that orders ended: 'events' follows them all over
                               the gateway's order feed (GET /orders/events, one stream),
                               falling back to 'orders' without one; 'orders' asks about each
                               order (GET /orders/{id}) (default events)
  --wait <s>                   with --watch orders, long poll: ask the gateway to answer each
                               status request once the order ends or after this many seconds
                               (Prefer: wait), 0..60 (default 10); 0, or a gateway that ignores
                               it, means polling
  --poll-interval-ms <ms>      delay between status polls of an order when polling, 1..10000
                               (default 25)
  --terminal-timeout-ms <ms>   bound on an order reaching a terminal status, 100..600000 (default 30000)
  --request-timeout-ms <ms>    timeout of one HTTP request, 100..600000 (default 10000)
  --skip-setup                 do not PUT /inventory/{sku} first
  --json                       print the summary as JSON
  -h, --help                   show this help

Environment: MERIDIAN_TOKEN, an operator's bearer token, when the gateway authenticates
('meridian demo' prints one).`;

function integer(
  name: string,
  raw: string | undefined,
  defaultValue: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return defaultValue;
  const value = /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ValidationError(
      `'--${name}' must be an integer in [${min}, ${max}]: current value is '${raw}'`,
    );
  }
  return value;
}

function positiveNumber(name: string, raw: string | undefined, defaultValue: number, max: number): number {
  if (raw === undefined) return defaultValue;
  const value = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new ValidationError(`'--${name}' must be a number in (0, ${max}]: current value is '${raw}'`);
  }
  return value;
}

function httpUrl(raw: string | undefined): string {
  const value = raw ?? 'http://127.0.0.1:7070';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(`'--url' must be an absolute http(s) URL: current value is '${value}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ValidationError(`'--url' must be an absolute http(s) URL: current value is '${value}'`);
  }
  return url.toString().replace(/\/$/, '');
}

/** Parses and validates `commerce load`'s arguments; `help` when the usage was asked for. */
export function parseLoadOptions(
  argv: string[],
  env: Record<string, string | undefined> = {},
): LoadOptions | 'help' {
  const values = parseCommandLine('commerce load', argv, commandOptions);
  if (values === 'help') return 'help';
  const ratePerSecond = integer('rate', values.rate, 100, 1, 100_000);
  const durationSeconds = positiveNumber('duration', values.duration, 10, 3600);
  const warmupSeconds = integer('warmup', values.warmup, 0, 0, 3600);
  const orders = ratePerSecond * (durationSeconds + warmupSeconds);
  if (orders > 10_000_000) {
    throw new ValidationError(
      `'--rate' × ('--duration' + '--warmup') must be <= 10000000 orders: current value is ${orders}`,
    );
  }
  return {
    url: httpUrl(values.url),
    ratePerSecond,
    durationSeconds,
    warmupSeconds,
    skus: integer('skus', values.skus, 10, 1, 100_000),
    stock: integer('stock', values.stock, 100_000, 0, 1_000_000_000),
    concurrency: integer('concurrency', values.concurrency, 10_000, 1, 100_000),
    connections: integer('connections', values.connections, 256, 1, 10_000),
    seed: integer('seed', values.seed, 1, 0, 4_294_967_295),
    maxItems: integer('max-items', values['max-items'], 3, 1, 20),
    watch: choice('--watch', values.watch, 'events', ['events', 'orders'] as const),
    waitSeconds: integer('wait', values.wait, 10, 0, 60),
    pollIntervalMs: integer('poll-interval-ms', values['poll-interval-ms'], 25, 1, 10_000),
    terminalTimeoutMs: integer('terminal-timeout-ms', values['terminal-timeout-ms'], 30_000, 100, 600_000),
    requestTimeoutMs: integer('request-timeout-ms', values['request-timeout-ms'], 10_000, 100, 600_000),
    skipSetup: values['skip-setup'] === true,
    json: values.json === true,
    ...(env.MERIDIAN_TOKEN === undefined || env.MERIDIAN_TOKEN === '' ? {} : { token: env.MERIDIAN_TOKEN }),
  };
}

const commandOptions = {
  url: { type: 'string' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  skus: { type: 'string' },
  stock: { type: 'string' },
  concurrency: { type: 'string' },
  connections: { type: 'string' },
  seed: { type: 'string' },
  'max-items': { type: 'string' },
  watch: { type: 'string' },
  wait: { type: 'string' },
  'poll-interval-ms': { type: 'string' },
  'terminal-timeout-ms': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  'skip-setup': { type: 'boolean' },
  json: { type: 'boolean' },
} satisfies ParseArgsOptionsConfig;
