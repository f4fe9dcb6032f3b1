// What a cluster node (`meridian node`, `commerce node`) checks before it starts: each
// dependency answers, within a bound, and is the one the node expects. Every failure names the
// dependency, what was wrong and what to do. pg loads when a check runs, not with meridian/cli.
import { isMeridianError, MeridianError, NotFoundError } from '../errors.ts';
import { KafkaLog } from '../log/kafka/index.ts';
import { type PostgresTarget, parsePostgresTarget, postgresUrlFor } from '../store/postgres/hosts.ts';

/** A dependency of a cluster node that is unreachable or misconfigured. */
export class DependencyError extends MeridianError {
  constructor(
    dependency: string,
    message: string,
    options: { cause?: unknown; misconfigured?: boolean } = {},
  ) {
    super(options.misconfigured === true ? 'INVALID_ARGUMENT' : 'UNAVAILABLE', message, {
      cause: options.cause,
      details: { dependency },
    });
  }
}

class DeadlineError extends Error {}

/** `work`, or a DeadlineError after `ms`: a dependency that never answers must not hang the start. */
export async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The connection string without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    // A PostgreSQL URL with several hosts is not a WHATWG URL.
    if (/^postgres(ql)?:\/\/[^/?#]*,/.test(url)) return url.replace(/(\/\/[^:@/]*):[^@/]*@/, '$1:***@');
    return '(unparsable URL)';
  }
}

function describePostgresFailure(error: unknown, url: string, timeoutMs: number): string {
  const parsed = new URL(url);
  const where = `${parsed.hostname}:${parsed.port || '5432'}`;
  const database = decodeURIComponent(parsed.pathname.slice(1)) || decodeURIComponent(parsed.username);
  const fix = 'fix --pg (MERIDIAN_PG_URL)';
  const code = (error as { code?: unknown }).code;
  const message = (error as Error).message ?? String(error);
  if (code === 'ECONNREFUSED') {
    return `PostgreSQL at ${where} refused the connection: start PostgreSQL there, or ${fix}`;
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `PostgreSQL host '${parsed.hostname}' does not resolve: ${fix}`;
  }
  if (error instanceof DeadlineError || /timeout/i.test(message)) {
    return `PostgreSQL at ${where} did not answer within ${timeoutMs} ms: check that it runs and is reachable, or ${fix} (--check-timeout-ms raises the bound)`;
  }
  if (code === '3D000') {
    return `PostgreSQL at ${where} has no database '${database}': create it (psql -h ${parsed.hostname} -c 'CREATE DATABASE "${database}"') or name an existing one in --pg`;
  }
  if (code === '28P01' || code === '28000') {
    return `PostgreSQL at ${where} refused user '${decodeURIComponent(parsed.username)}' (${message}): fix the user or password in --pg`;
  }
  if (code === '57P03') return `PostgreSQL at ${where} is starting up or shutting down: try again shortly`;
  if (/terminated|ECONNRESET|EPIPE/.test(`${message} ${String(code)}`)) {
    return `PostgreSQL at ${where} closed the connection before answering (${message}): check that a PostgreSQL server listens there, or ${fix}`;
  }
  return `PostgreSQL at ${where} failed the check (${code === undefined ? '' : `${String(code)}: `}${message}): ${fix}`;
}

/**
 * Connects once with a bounded wait and runs one query: PostgreSQL is up and the database exists.
 * With several hosts, one of them must accept writes (the others may be standbys, or down).
 */
export async function checkPostgres(url: string, timeoutMs: number): Promise<void> {
  const target = parsePostgresTarget(url);
  if (target.hosts.length <= 1) {
    await checkOnePostgres(url, timeoutMs);
    return;
  }
  await checkPostgresHosts(target, timeoutMs);
}

async function checkPostgresHosts(target: PostgresTarget, timeoutMs: number): Promise<void> {
  const outcomes: string[] = [];
  for (const host of target.hosts) {
    try {
      const standby = await checkOnePostgres(postgresUrlFor(target, host), timeoutMs);
      if (!standby || !target.writable) return;
      outcomes.push(`${host.host}:${host.port} is a standby`);
    } catch (error) {
      if (error instanceof DependencyError && error.code === 'INVALID_ARGUMENT') throw error;
      outcomes.push((error as Error).message);
    }
  }
  throw new DependencyError(
    'postgres',
    `no PostgreSQL host of --pg accepts writes (${outcomes.join('; ')}): start the primary or promote a standby, or fix --pg (MERIDIAN_PG_URL)`,
  );
}

/** The check on one host; true when that server is a standby (in recovery). */
async function checkOnePostgres(url: string, timeoutMs: number): Promise<boolean> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'meridian-node-check',
  });
  client.on('error', () => {});
  try {
    return await withDeadline(
      (async () => {
        await client.connect();
        const result = await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
        return result.rows[0]?.standby === true;
      })(),
      timeoutMs,
    );
  } catch (error) {
    throw new DependencyError('postgres', describePostgresFailure(error, url, timeoutMs), {
      cause: error,
      misconfigured: ['3D000', '28P01', '28000', 'ENOTFOUND'].includes(
        String((error as { code?: unknown }).code),
      ),
    });
  } finally {
    void withDeadline(client.end(), timeoutMs).catch(() => undefined);
  }
}

/** Why opening the store (creating and migrating the schema) failed, and what to do. */
export function describeStoreFailure(error: unknown, schema: string): DependencyError {
  const code = (error as { code?: unknown }).code;
  if (isMeridianError(error) && error.code === 'SCHEMA_MISMATCH') {
    return new DependencyError(
      'postgres',
      `PostgreSQL schema '${schema}' was written by a newer Meridian (${error.message}): upgrade this node, or pass another --pg-schema`,
      { cause: error, misconfigured: true },
    );
  }
  if (code === '42501') {
    return new DependencyError(
      'postgres',
      `PostgreSQL refused to create or change schema '${schema}' (permission denied): grant the user CREATE on the database, or pass a schema it owns with --pg-schema`,
      { cause: error, misconfigured: true },
    );
  }
  return new DependencyError(
    'postgres',
    `PostgreSQL schema '${schema}' could not be opened: ${(error as Error).message}`,
    { cause: error },
  );
}

export interface KafkaCheck {
  brokers: string[];
  clientId: string;
  workTopic: string;
  workPartitions: number;
  timeoutMs: number;
}

/**
 * The brokers answer a metadata request within the bound, and the work topic, if it exists, has
 * the partition count this node was given (every node must agree on it).
 */
export async function checkKafka(check: KafkaCheck): Promise<void> {
  const bound = Math.max(100, check.timeoutMs);
  const probe = new KafkaLog({
    brokers: check.brokers,
    clientId: check.clientId,
    connectTimeoutMs: bound,
    requestTimeoutMs: bound,
    retries: 0,
  });
  try {
    try {
      await withDeadline(probe.connect(), bound);
    } catch (error) {
      throw new DependencyError(
        'kafka',
        `Kafka brokers ${check.brokers.join(',')} are unreachable (${error instanceof DeadlineError ? `no answer within ${bound} ms` : (error as Error).message}): start Kafka ('npm run kafka:start' runs one broker on 127.0.0.1:9092) or fix --kafka (MERIDIAN_KAFKA_BROKERS)`,
        { cause: error },
      );
    }
    let partitions: number | undefined;
    try {
      partitions = (await withDeadline(probe.describeTopic(check.workTopic), bound)).partitions;
    } catch (error) {
      if (!(error instanceof NotFoundError)) {
        throw new DependencyError(
          'kafka',
          `Kafka could not describe the work topic '${check.workTopic}': ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    if (partitions !== undefined && partitions !== check.workPartitions) {
      throw new DependencyError(
        'kafka',
        `The work topic '${check.workTopic}' has ${partitions} partitions but this node was given --work-partitions ${check.workPartitions}: every node of a cluster must use the topic's count (pass --work-partitions ${partitions}), or use another --work-topic and --group for a new cluster`,
        { misconfigured: true },
      );
    }
  } finally {
    await withDeadline(probe.close(), bound).catch(() => undefined);
  }
}
