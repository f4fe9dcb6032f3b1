// The options every cluster node takes (`meridian node <module>`, `commerce node`): where
// PostgreSQL and Kafka are, who this node is, and the bounds of its checks and its drain.
import type { ParseArgsOptionsConfig } from 'node:util';
import { ValidationError } from '../errors.ts';
import { parsePostgresTarget } from '../store/postgres/hosts.ts';
import { choice, integer, type ParsedValues, port as portOption } from './args.ts';

export interface ClusterNodeOptions {
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
  /** How long a command routed to another node waits for its reply (ms). @default 10000 */
  requestTimeoutMs: number;
  /**
   * How long the group waits for a silent node (killed, frozen, cut off) before moving its work
   * partitions: Kafka's session.timeout.ms (`--session-timeout-ms`). @default 8000
   */
  sessionTimeoutMs: number;
  /** How long each dependency check at start may take (ms). @default 5000 */
  checkTimeoutMs: number;
  /** How long the drain after SIGTERM/SIGINT may take before the node exits anyway (ms). @default 30000 */
  shutdownTimeoutMs: number;
  /**
   * The HS256 secret bearer tokens are signed with (MERIDIAN_AUTH_SECRET, at least 32 characters):
   * the same on every node. Undefined only with `--auth off`.
   */
  authSecret: string | undefined;
}

export const clusterCommandOptions = {
  pg: { type: 'string' },
  'pg-schema': { type: 'string' },
  kafka: { type: 'string' },
  'node-id': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'work-partitions': { type: 'string' },
  'work-topic': { type: 'string' },
  group: { type: 'string' },
  'replication-factor': { type: 'string' },
  'request-timeout-ms': { type: 'string' },
  'session-timeout-ms': { type: 'string' },
  'check-timeout-ms': { type: 'string' },
  'shutdown-timeout-ms': { type: 'string' },
  auth: { type: 'string' },
} satisfies ParseArgsOptionsConfig;

/** The usage lines of clusterCommandOptions, for a command's help. */
export const CLUSTER_OPTIONS_USAGE = `  --pg <url>                    PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/meridian
                                [MERIDIAN_PG_URL] (required); several hosts, a primary and its
                                standbys, as postgres://u@h1:5442,h2:5443/db: the node uses the
                                one accepting writes, and finds the new one after a failover
  --pg-schema <name>            schema shared by every node, [a-z_][a-z0-9_]{0,62}
                                [MERIDIAN_PG_SCHEMA] (default meridian)
  --kafka <host:port,...>       Kafka bootstrap brokers [MERIDIAN_KAFKA_BROKERS] (required)
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
  --session-timeout-ms <ms>     how long the group waits for a silent node before moving its
                                work partitions, 6000..300000 (default 8000)`;

/** The usage lines of the bounds every node takes last. */
export const CLUSTER_BOUNDS_USAGE = `  --check-timeout-ms <ms>       bound of each dependency check at start, 100..60000 (default 5000)
  --shutdown-timeout-ms <ms>    bound of the drain on SIGTERM/SIGINT, after which the node exits
                                anyway, 1000..600000 (default 30000)
  --auth on|off                 'off' serves every caller as an operator: local experiments only
                                (default on: bearer tokens signed with [MERIDIAN_AUTH_SECRET], the
                                same secret of 32+ characters on every node; docs/security.md)
  -h, --help                    show this help`;

const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/;
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const brokerPattern = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/;
const nameRule = `1 to 100 characters from [A-Za-z0-9._-], starting with a letter or digit`;

type Values = Record<string, string | boolean | undefined>;

/** A flag's value, else its environment variable's (an empty variable counts as unset). */
export function fromEnv(
  values: Values,
  option: string,
  env: Record<string, string | undefined>,
  variable: string,
): { raw: string; from: string } | undefined {
  const value = values[option];
  if (typeof value === 'string') return { raw: value, from: `--${option}` };
  const raw = env[variable];
  return raw === undefined || raw === '' ? undefined : { raw, from: variable };
}

/** `given` as a URL of one of `protocols`; `missing` is the error when it was not given. */
export function urlOption(
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

/** `--pg`: a postgres:// URL, with one host or several (the node finds the one accepting writes). */
function postgresOption(given: { raw: string; from: string } | undefined, missing: string): string {
  if (given === undefined || !/^postgres(ql)?:\/\/[^/?#]*,/.test(given.raw)) {
    return urlOption(given, ['postgres:', 'postgresql:'], missing);
  }
  const target = parsePostgresTarget(given.raw);
  urlOption({ raw: target.url, from: given.from }, ['postgres:', 'postgresql:'], missing);
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

/** The flag as an integer in [min, max], `fallback` when absent. */
export function optionalInteger(
  values: Values,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = values[name];
  return typeof raw === 'string' ? integer(`--${name}`, raw, min, max) : fallback;
}

/**
 * Validates the cluster options a command parsed (with clusterCommandOptions among its own).
 * `embedded` names the command that runs the same app without PostgreSQL and Kafka, for the
 * message when --pg is missing.
 */
export function parseClusterOptions(
  values: ParsedValues<typeof clusterCommandOptions>,
  env: Record<string, string | undefined>,
  hostname: string,
  embedded: string,
): ClusterNodeOptions {
  const pgUrl = postgresOption(
    fromEnv(values, 'pg', env, 'MERIDIAN_PG_URL'),
    `no PostgreSQL given: pass --pg postgres://user@host:5432/database or set MERIDIAN_PG_URL (to run without PostgreSQL and Kafka, use '${embedded}')`,
  );
  const schema = fromEnv(values, 'pg-schema', env, 'MERIDIAN_PG_SCHEMA');
  const kafkaBrokers = brokers(fromEnv(values, 'kafka', env, 'MERIDIAN_KAFKA_BROKERS'));
  const port = portOption(values.port, env, 7071);
  const nodeIdGiven = fromEnv(values, 'node-id', env, 'MERIDIAN_NODE_ID');
  if (nodeIdGiven === undefined && port === 0) {
    throw new ValidationError(
      `'--node-id' is required with --port 0: the default node id is <hostname>-<port>, and a node id must stay the same across restarts`,
    );
  }
  const host = values.host ?? '127.0.0.1';
  if (host.trim() === '') throw new ValidationError(`'--host' must be an address: current value is ''`);
  const authOn = choice('--auth', values.auth, 'on', ['on', 'off'] as const) === 'on';
  const parsed: ClusterNodeOptions = {
    authSecret: authOn ? authSecretOf(env) : undefined,
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
    requestTimeoutMs: optionalInteger(values, 'request-timeout-ms', 10_000, 100, 600_000),
    // Kafka's brokers refuse a session timeout outside group.min/max.session.timeout.ms (6 s, 5 min).
    sessionTimeoutMs: optionalInteger(values, 'session-timeout-ms', 8000, 6000, 300_000),
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
