import type { ParseArgsOptionsConfig } from 'node:util';
import { ValidationError } from '../errors.ts';
import { choice, integer, parseCommandLine, port as portOption } from './args.ts';

export interface NodeOptions {
  /** PostgreSQL connection string (`--pg`, MERIDIAN_PG_URL). Required. */
  pgUrl: string;
  /** The schema every node of the cluster shares (`--pg-schema`, MERIDIAN_PG_SCHEMA). @default 'meridian' */
  pgSchema: string;
  /** Kafka bootstrap brokers (`--kafka`, MERIDIAN_KAFKA_BROKERS). Required. */
  kafkaBrokers: string[];
  /** Unique per node, stable across its restarts (`--node-id`, MERIDIAN_NODE_ID). @default '<hostname>-<port>' */
  nodeId: string;
  /** @default '127.0.0.1' */
  host: string;
  /** @default the PORT environment variable, else 7071 */
  port: number;
  /** Work partitions; every node must agree. @default 16 */
  workPartitions: number;
  /** The topic whose partitions are the work partitions. @default 'meridian.work' */
  workTopic: string;
  /** The consumer group of the nodes. @default 'meridian.nodes' */
  group: string;
  /** Replication factor of the work topic when this node creates it. @default the broker's default */
  replicationFactor: number | undefined;
  /** Base URL of the payment gateway every node charges through (`--payments`, MERIDIAN_PAYMENTS_URL). Required. */
  paymentsUrl: string;
  /** How long a command routed to another node waits for its reply (ms). @default 10000 */
  requestTimeoutMs: number;
  /** Orders running at most on this node before POST /orders answers 503. @default 1000 */
  maxOrdersInProgress: number;
  /** How long each dependency check at start may take (ms). @default 5000 */
  checkTimeoutMs: number;
  /** How long the drain after SIGTERM/SIGINT may take before the node exits anyway (ms). @default 30000 */
  shutdownTimeoutMs: number;
  /**
   * The HS256 secret bearer tokens are signed with (MERIDIAN_AUTH_SECRET, at least 32 characters):
   * the same on every node. Undefined only with `--auth off`.
   */
  authSecret: string | undefined;
  /** The payment gateway's API key (MERIDIAN_PAYMENTS_API_KEY), as `meridian payments` printed it. */
  paymentsApiKey: string | undefined;
}

export const NODE_USAGE = `Usage: meridian node [options]

Runs the commerce reference system (the same app as 'meridian demo') as one node of a cluster:
state in PostgreSQL, records in Kafka, work partitions owned through a Kafka consumer group.
Start as many nodes as you like with the same --pg, --pg-schema, --kafka and --payments and a
distinct --node-id each; any node takes any request. SIGTERM or Ctrl-C drains (the node leaves
the group and hands its partitions over) and exits; a second signal exits at once.
Step by step: docs/cluster.md. Without PostgreSQL and Kafka, 'npm start' (meridian demo) runs
the same app on the embedded shape, in one SQLite file.

Options (environment variable in brackets):
  --pg <url>                    PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/meridian
                                [MERIDIAN_PG_URL] (required)
  --pg-schema <name>            schema shared by every node, [a-z_][a-z0-9_]{0,62}
                                [MERIDIAN_PG_SCHEMA] (default meridian)
  --kafka <host:port,...>       Kafka bootstrap brokers [MERIDIAN_KAFKA_BROKERS] (required)
  --payments <url>              the payment gateway every node shares, e.g. one started with
                                'meridian payments --port 7090' [MERIDIAN_PAYMENTS_URL] (required)
  --node-id <id>                unique per node and stable across restarts, [A-Za-z0-9._-]
                                [MERIDIAN_NODE_ID] (default <hostname>-<port>)
  --port <n>                    HTTP port, 1..65535, or 0 (any free one; needs --node-id)
                                [PORT] (default 7071)
  --host <address>              address to listen on (default 127.0.0.1)
  --work-partitions <n>         work partitions, the same on every node, 1..1024 (default 16)
  --work-topic <name>           topic carrying the work partitions, [A-Za-z0-9._-]
                                (default meridian.work)
  --group <name>                consumer group of the nodes, [A-Za-z0-9._-] (default meridian.nodes)
  --replication-factor <n>      replication of the work topic when created, 1..16
                                (default: the brokers' default; 3 on the 3-broker layout)
  --request-timeout-ms <ms>     reply wait of a command routed to another node,
                                100..600000 (default 10000)
  --max-orders-in-progress <n>  orders running at most on this node; new ones get 503 with
                                Retry-After beyond it, 1..1000000 (default 1000)
  --check-timeout-ms <ms>       bound of each dependency check at start, 100..60000 (default 5000)
  --shutdown-timeout-ms <ms>    bound of the drain on SIGTERM/SIGINT, after which the node exits
                                anyway, 1000..600000 (default 30000)
  --auth on|off                 'off' serves every caller as an operator: local experiments only
                                (default on: bearer tokens signed with [MERIDIAN_AUTH_SECRET], the
                                same secret of 32+ characters on every node; docs/security.md)
                                [MERIDIAN_PAYMENTS_API_KEY] the payment gateway's API key
  -h, --help                    show this help`;

const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/;
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const brokerPattern = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/;

/** The option's value, else its environment variable's (an empty variable counts as unset). */
function fromEnv(
  values: Record<string, string | undefined>,
  option: string,
  env: Record<string, string | undefined>,
  variable: string,
): { raw: string; from: string } | undefined {
  const value = values[option];
  if (value !== undefined) return { raw: value, from: `--${option}` };
  const raw = env[variable];
  return raw === undefined || raw === '' ? undefined : { raw, from: variable };
}

function url(
  given: { raw: string; from: string } | undefined,
  protocols: readonly string[],
  missing: string,
): string {
  if (given === undefined) throw new ValidationError(missing);
  let parsed: URL;
  try {
    parsed = new URL(given.raw);
  } catch {
    throw new ValidationError(`'${given.from}' must be a URL: current value is '${given.raw}'`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ValidationError(
      `'${given.from}' must be a ${protocols.map((p) => `${p}//`).join(' or ')} URL: current value is '${given.raw}'`,
    );
  }
  return given.raw;
}

function brokers(given: { raw: string; from: string } | undefined): string[] {
  if (given === undefined) {
    throw new ValidationError(
      `no Kafka given: pass --kafka 127.0.0.1:9092 (a comma-separated host:port list) or set MERIDIAN_KAFKA_BROKERS; 'npm run kafka:start' starts a local broker (docs/kafka.md)`,
    );
  }
  const list = given.raw
    .split(',')
    .map((broker) => broker.trim())
    .filter((broker) => broker.length > 0);
  const bad = list.find((broker) => {
    const port = brokerPattern.exec(broker)?.[1];
    return port === undefined || Number(port) < 1 || Number(port) > 65_535;
  });
  if (list.length === 0 || list.length > 100 || bad !== undefined) {
    throw new ValidationError(
      `'${given.from}' must be 1 to 100 comma-separated host:port brokers: current value is '${given.raw}'`,
    );
  }
  return list;
}

function matching(name: string, raw: string, pattern: RegExp, rule: string): string {
  if (!pattern.test(raw)) throw new ValidationError(`'${name}' must be ${rule}: current value is '${raw}'`);
  return raw;
}

/** `<hostname>-<port>` in the characters a node id allows: the same on every restart of this node. */
export function defaultNodeId(hostname: string, port: number): string {
  const host = hostname.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'node';
  return `${host.slice(0, 90)}-${port}`;
}

function optionalInteger(
  values: Record<string, string | undefined>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = values[name];
  return raw === undefined ? fallback : integer(`--${name}`, raw, min, max);
}

/** Parses and validates `meridian node`'s arguments and environment; `help` when the usage was asked for. */
export function parseNodeOptions(
  argv: string[],
  env: Record<string, string | undefined> = {},
  hostname = 'localhost',
): NodeOptions | 'help' {
  const values = parseCommandLine('node', argv, commandOptions);
  if (values === 'help') return 'help';
  const pgUrl = url(
    fromEnv(values, 'pg', env, 'MERIDIAN_PG_URL'),
    ['postgres:', 'postgresql:'],
    `no PostgreSQL given: pass --pg postgres://user@host:5432/database or set MERIDIAN_PG_URL (to run without PostgreSQL and Kafka, use 'meridian demo')`,
  );
  const schema = fromEnv(values, 'pg-schema', env, 'MERIDIAN_PG_SCHEMA');
  const kafkaBrokers = brokers(fromEnv(values, 'kafka', env, 'MERIDIAN_KAFKA_BROKERS'));
  const paymentsUrl = url(
    fromEnv(values, 'payments', env, 'MERIDIAN_PAYMENTS_URL'),
    ['http:', 'https:'],
    `no payment gateway given: every node charges through the same one; start it with 'meridian payments --port 7090 --data-dir ./.meridian-payments' (or use the one 'meridian demo' prints) and pass --payments http://127.0.0.1:7090 or set MERIDIAN_PAYMENTS_URL. A gateway per node would let a node that takes over an order charge it a second time`,
  );
  const port = portOption(values.port, env, 7071);
  const nodeIdGiven = fromEnv(values, 'node-id', env, 'MERIDIAN_NODE_ID');
  if (nodeIdGiven === undefined && port === 0) {
    throw new ValidationError(
      `'--node-id' is required with --port 0: the default node id is <hostname>-<port>, and a node id must stay the same across restarts`,
    );
  }
  const host = values.host ?? '127.0.0.1';
  if (host.trim() === '') throw new ValidationError(`'--host' must be an address: current value is ''`);
  const nameRule = `1 to 100 characters from [A-Za-z0-9._-], starting with a letter or digit`;
  const authOn = choice('--auth', values.auth, 'on', ['on', 'off'] as const) === 'on';
  const parsed: NodeOptions = {
    authSecret: authOn ? authSecretOf(env) : undefined,
    paymentsApiKey: env.MERIDIAN_PAYMENTS_API_KEY === '' ? undefined : env.MERIDIAN_PAYMENTS_API_KEY,
    pgUrl,
    pgSchema:
      schema === undefined
        ? 'meridian'
        : matching(
            schema.from,
            schema.raw,
            schemaPattern,
            `a PostgreSQL schema name matching ${schemaPattern}`,
          ),
    kafkaBrokers,
    nodeId:
      nodeIdGiven === undefined
        ? defaultNodeId(hostname, port)
        : matching(nodeIdGiven.from, nodeIdGiven.raw, namePattern, nameRule),
    host,
    port,
    workPartitions: optionalInteger(values, 'work-partitions', 16, 1, 1024),
    workTopic: matching('--work-topic', values['work-topic'] ?? 'meridian.work', namePattern, nameRule),
    group: matching('--group', values.group ?? 'meridian.nodes', namePattern, nameRule),
    replicationFactor:
      values['replication-factor'] === undefined
        ? undefined
        : integer('--replication-factor', values['replication-factor'], 1, 16),
    paymentsUrl,
    requestTimeoutMs: optionalInteger(values, 'request-timeout-ms', 10_000, 100, 600_000),
    maxOrdersInProgress: optionalInteger(values, 'max-orders-in-progress', 1000, 1, 1_000_000),
    checkTimeoutMs: optionalInteger(values, 'check-timeout-ms', 5000, 100, 60_000),
    shutdownTimeoutMs: optionalInteger(values, 'shutdown-timeout-ms', 30_000, 1000, 600_000),
  };
  if (authOn && parsed.authSecret === undefined) {
    throw new ValidationError(
      `MERIDIAN_AUTH_SECRET must be set to the cluster's token signing secret (32+ characters, the same on every node): current length is ${env.MERIDIAN_AUTH_SECRET?.length ?? 0}. Pass --auth off only for local experiments`,
    );
  }
  return parsed;
}

function authSecretOf(env: Record<string, string | undefined>): string | undefined {
  const secret = env.MERIDIAN_AUTH_SECRET;
  return secret === undefined || secret.length < 32 ? undefined : secret;
}

const commandOptions = {
  pg: { type: 'string' },
  'pg-schema': { type: 'string' },
  kafka: { type: 'string' },
  payments: { type: 'string' },
  'node-id': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'work-partitions': { type: 'string' },
  'work-topic': { type: 'string' },
  group: { type: 'string' },
  'replication-factor': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  'max-orders-in-progress': { type: 'string' },
  'check-timeout-ms': { type: 'string' },
  'shutdown-timeout-ms': { type: 'string' },
  auth: { type: 'string' },
} satisfies ParseArgsOptionsConfig;
