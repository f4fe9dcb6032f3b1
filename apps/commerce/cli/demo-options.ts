import type { ParseArgsOptionsConfig } from 'node:util';
import { choice, integer, number, parseCommandLine, port as portOption } from '../../../src/cli/index.ts';
import { ValidationError } from '../../../src/index.ts';

export interface DemoOptions {
  /** Where the database and the payment ledger live. @default './.meridian' */
  dataDir: string;
  /** @default '127.0.0.1' */
  host: string;
  /** @default the PORT environment variable, else 7070; 0 picks any free port */
  port: number;
  /** Built-in traffic. @default true */
  traffic: boolean;
  /** Orders per second of the built-in traffic. @default 2 */
  trafficRate: number;
  /** Share of payment calls answered 503. @default 0 */
  paymentFailureRate: number;
  /** Delay of each payment call (ms). @default 0 */
  paymentLatencyMs: number;
  /** Share of payment calls never answered (and not processed). @default 0 */
  paymentTimeoutRate: number;
  /** Share of payment calls processed whose response is then lost. @default 0 */
  paymentLostResponseRate: number;
  /** Seed of the payment gateway's fault rolls. @default 1 */
  seed: number;
  /** What a commit survives: 'process' (a crash of the process) or 'fsync' (power loss too). @default 'process' */
  durability: 'process' | 'fsync';
  /** Orders running at most before POST /orders answers 503 (see CommerceAppOptions). @default 1000 */
  maxOrdersInProgress: number;
  /** How long the group commit waits for more units before a transaction (RuntimeOptions.commitLingerMs). @default 0 */
  commitLingerMs: number;
  /** Whether callers must authenticate (development tokens are printed at start). @default true */
  auth: boolean;
  /** Take the data directory over from a live process holding it (it exits). @default false */
  takeOver: boolean;
}

export const DEMO_USAGE = `Usage: commerce demo [options]

Runs the commerce reference system on the embedded shape (one SQLite file): the HTTP API, the
order saga, a simulated payment gateway, and a little built-in traffic so there is something to
see. Ctrl-C drains and exits; starting again on the same data directory resumes every order that
was in flight.

The same app runs as a cluster of nodes over PostgreSQL and Kafka with 'commerce node'
(npm run commerce -- node --help), beside one shared 'commerce payments' gateway: docs/cluster.md.
'npm run cluster:start' brings all of it up in one command (three Kafka brokers, PostgreSQL with
a synchronous standby, Redis, the gateway, three nodes, HAProxy on :18080): docs/deployment.md.

Options:
  --data-dir <path>                  database and payment ledger directory (default ./.meridian)
  --port <n>                         HTTP port, 0..65535; 0 picks a free one (default $PORT or 7070)
  --host <address>                   address to listen on (default 127.0.0.1)
  --traffic on|off                   built-in traffic (default on)
  --traffic-rate <orders/s>          built-in traffic's orders per second, 0.1..100 (default 2)
  --payment-failure-rate <0..1>      share of payment calls answered 503 (default 0)
  --payment-latency-ms <ms>          delay of every payment call, 0..60000 (default 0)
  --payment-timeout-rate <0..1>      share of payment calls never answered (default 0)
  --payment-lost-response-rate <0..1>
                                     share of payment calls processed whose answer is lost (default 0)
  --seed <n>                         seed of the payment gateway's faults, 0..4294967295 (default 1)
  --durability process|fsync         what a commit survives: a crash, or power loss too (default process)
  --max-orders-in-progress <n>       orders running at most; new ones get 503 with Retry-After
                                     beyond it, 1..1000000 (default 1000)
  --commit-linger-ms <ms>            how long each transaction waits for more work before it
                                     starts: fewer, larger commits, 0..100 (default 0)
  --auth on|off                      'off' makes every caller an operator, for local experiments
                                     only: anyone who reaches the port can do anything
                                     (default on: development tokens are printed at start)
  --take-over                        take the data directory over from the process using it
                                     (it exits); without it, a directory in use is refused
  -h, --help                         show this help`;

/** Parses and validates `commerce demo`'s arguments; `help` when the usage was asked for. */
export function parseDemoOptions(
  argv: string[],
  env: Record<string, string | undefined> = {},
): DemoOptions | 'help' {
  const values = parseCommandLine('commerce demo', argv, commandOptions);
  if (values === 'help') return 'help';
  const dataDir = values['data-dir'] ?? './.meridian';
  if (dataDir.trim() === '')
    throw new ValidationError(`'--data-dir' must be a directory path: current value is ''`);
  const port = portOption(values.port, env, 7070);
  const host = values.host ?? '127.0.0.1';
  if (host.trim() === '') throw new ValidationError(`'--host' must be an address: current value is ''`);
  return {
    dataDir,
    host,
    port,
    traffic: choice('--traffic', values.traffic, 'on', ['on', 'off'] as const) === 'on',
    trafficRate: number('--traffic-rate', values['traffic-rate'], 2, 0.1, 100),
    paymentFailureRate: number('--payment-failure-rate', values['payment-failure-rate'], 0, 0, 1),
    paymentLatencyMs:
      values['payment-latency-ms'] === undefined
        ? 0
        : integer('--payment-latency-ms', values['payment-latency-ms'], 0, 60_000),
    paymentTimeoutRate: number('--payment-timeout-rate', values['payment-timeout-rate'], 0, 0, 1),
    paymentLostResponseRate: number(
      '--payment-lost-response-rate',
      values['payment-lost-response-rate'],
      0,
      0,
      1,
    ),
    seed: values.seed === undefined ? 1 : integer('--seed', values.seed, 0, 4_294_967_295),
    durability: choice('--durability', values.durability, 'process', ['process', 'fsync'] as const),
    maxOrdersInProgress:
      values['max-orders-in-progress'] === undefined
        ? 1000
        : integer('--max-orders-in-progress', values['max-orders-in-progress'], 1, 1_000_000),
    commitLingerMs:
      values['commit-linger-ms'] === undefined
        ? 0
        : integer('--commit-linger-ms', values['commit-linger-ms'], 0, 100),
    auth: choice('--auth', values.auth, 'on', ['on', 'off'] as const) === 'on',
    takeOver: values['take-over'] === true,
  };
}

const commandOptions = {
  'data-dir': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  traffic: { type: 'string' },
  'traffic-rate': { type: 'string' },
  'payment-failure-rate': { type: 'string' },
  'payment-latency-ms': { type: 'string' },
  'payment-timeout-rate': { type: 'string' },
  'payment-lost-response-rate': { type: 'string' },
  seed: { type: 'string' },
  durability: { type: 'string' },
  'max-orders-in-progress': { type: 'string' },
  'commit-linger-ms': { type: 'string' },
  auth: { type: 'string' },
  'take-over': { type: 'boolean' },
} satisfies ParseArgsOptionsConfig;
