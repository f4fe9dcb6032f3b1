import {
  CLUSTER_BOUNDS_USAGE,
  CLUSTER_OPTIONS_USAGE,
  type ClusterNodeOptions,
  clusterCommandOptions,
  fromEnv,
  optionalInteger,
  parseClusterOptions,
  parseCommandLine,
  urlOption,
} from '../../../src/cli/index.ts';
import { ValidationError } from '../../../src/index.ts';

export interface NodeOptions extends ClusterNodeOptions {
  /** Base URL of the payment gateway every node charges through (`--payments`, MERIDIAN_PAYMENTS_URL). Required. */
  paymentsUrl: string;
  /** Orders running at most on this node before POST /orders answers 503. @default 1000 */
  maxOrdersInProgress: number;
  /** The payment gateway's API key (MERIDIAN_PAYMENTS_API_KEY), as `commerce payments` printed it. */
  paymentsApiKey: string | undefined;
  /**
   * Redis shared by the nodes' catalog and profile caches (`--redis`, MERIDIAN_REDIS_URL): a
   * single server, or a Redis Cluster's nodes. @default none: each node caches in process only
   */
  redis: { url: string } | { clusterNodes: string[] } | undefined;
}

export const NODE_USAGE = `Usage: commerce node [options]

Runs the commerce reference system (the same app as 'commerce demo') as one node of a cluster:
state in PostgreSQL, records in Kafka, work partitions owned through a Kafka consumer group.
Start as many nodes as you like with the same --pg, --pg-schema, --kafka and --payments and a
distinct --node-id each; any node takes any request. SIGTERM or Ctrl-C drains (the node leaves
the group and hands its partitions over) and exits; a second signal exits at once.
Step by step: docs/cluster.md. Without PostgreSQL and Kafka, 'npm start' (commerce demo) runs
the same app on the embedded shape, in one SQLite file.

Options (environment variable in brackets):
${CLUSTER_OPTIONS_USAGE}
  --payments <url>              the payment gateway every node shares, e.g. one started with
                                'commerce payments --port 7090' [MERIDIAN_PAYMENTS_URL] (required)
  --max-orders-in-progress <n>  orders running at most on this node; new ones get 503 with
                                Retry-After beyond it, 1..1000000 (default 1000)
                                [MERIDIAN_PAYMENTS_API_KEY] the payment gateway's API key
  --redis <url|host:port,...>   Redis for every node's catalog and profile caches (invalidations
                                reach them all): redis://host:6379, or a Redis Cluster's
                                comma-separated host:port nodes [MERIDIAN_REDIS_URL]
                                (default: each node caches in process only)
${CLUSTER_BOUNDS_USAGE}`;

const commandOptions = {
  ...clusterCommandOptions,
  payments: { type: 'string' },
  'max-orders-in-progress': { type: 'string' },
  redis: { type: 'string' },
} as const;

const hostPort = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/;

/** `--redis`: a redis:// URL, or a Redis Cluster's comma-separated host:port nodes. */
function redisOption(given: { raw: string; from: string } | undefined): NodeOptions['redis'] {
  if (given === undefined) return undefined;
  if (/^rediss?:\/\//.test(given.raw)) return { url: urlOption(given, ['redis:', 'rediss:'], '') };
  const nodes = given.raw
    .split(',')
    .map((node) => node.trim())
    .filter((node) => node.length > 0);
  const valid = (node: string) => {
    const port = Number(hostPort.exec(node)?.[1]);
    return port >= 1 && port <= 65_535;
  };
  if (nodes.length === 0 || nodes.length > 100 || !nodes.every(valid)) {
    throw new ValidationError(
      `'${given.from}' must be a redis:// URL or a Redis Cluster's comma-separated host:port nodes: current value is '${given.raw}'`,
    );
  }
  return { clusterNodes: nodes };
}

/** Parses and validates `commerce node`'s arguments and environment; `help` when the usage was asked for. */
export function parseNodeOptions(
  argv: string[],
  env: Record<string, string | undefined> = {},
  hostname = 'localhost',
): NodeOptions | 'help' {
  const values = parseCommandLine('commerce node', argv, commandOptions);
  if (values === 'help') return 'help';
  const cluster = parseClusterOptions(values, env, hostname, 'commerce demo');
  const paymentsUrl = urlOption(
    fromEnv(values, 'payments', env, 'MERIDIAN_PAYMENTS_URL'),
    ['http:', 'https:'],
    `no payment gateway given: every node charges through the same one; start it with 'commerce payments --port 7090 --data-dir ./.meridian-payments' (or use the one 'commerce demo' prints) and pass --payments http://127.0.0.1:7090 or set MERIDIAN_PAYMENTS_URL. A gateway per node would let a node that takes over an order charge it a second time`,
  );
  return {
    ...cluster,
    paymentsUrl,
    maxOrdersInProgress: optionalInteger(values, 'max-orders-in-progress', 1000, 1, 1_000_000),
    paymentsApiKey: env.MERIDIAN_PAYMENTS_API_KEY === '' ? undefined : env.MERIDIAN_PAYMENTS_API_KEY,
    redis: redisOption(fromEnv(values, 'redis', env, 'MERIDIAN_REDIS_URL')),
  };
}
