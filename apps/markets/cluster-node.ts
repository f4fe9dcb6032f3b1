// The markets app on the cluster shape, as one of several node processes: the same dataflow and
// HTTP API as the embedded app (markets.ts), over Kafka topics and a PostgreSQL store the nodes
// share. The nodes split the trades topic's partitions through a Kafka consumer group; each
// partition's window state, offsets and outputs (read-model rows, outbox rows the node's relay
// sends to Kafka) commit in PostgreSQL, fenced by the partition's epoch. Every node answers the
// whole HTTP API from the shared read model, through the cache (Redis with --redis), and streams
// every partition's closed windows from their topic (docs/markets.md, "On the cluster").
//
//   node apps/markets/cluster-node.ts --brokers H:P --pg URL --schema S --node NAME
//        [--topic-prefix P] [--port N] [--redis URL] [--rate N --seed N --symbols N]
//        [--group G] [--session-timeout-ms N] [--no-relay] [--auth on|off]
// The HTTP API takes bearer tokens signed with MERIDIAN_AUTH_SECRET (32+ characters, the same on
// every node; docs/security.md); `--auth off` makes every caller an operator (local experiments).
// prints `listening <url>`, then `committed <partition> <next offset>` after each commit.

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { redisInvalidationBus, redisTier } from '../../src/cache/index.ts';
import type { AuthOptions } from '../../src/http/index.ts';
import type { Consumer, Log } from '../../src/log/index.ts';
import { KafkaLog, parseBrokerList } from '../../src/log/kafka/index.ts';
import { openPostgresStore } from '../../src/store/postgres/index.ts';
import { type PartitionedStreamJob, startPartitionedStreamJob } from '../../src/stream/index.ts';
import { type MarketsTopics, marketsDataflow, prefixedTopics, type WindowView } from './analytics.ts';
import { createMarketsTopics, latestWindowCache, type SharedCache, startGenerator } from './app.ts';
import { createMarketsApi, type MarketsApi } from './http-api.ts';

export const marketsFirstFencingPartition = 2000;

export interface MarketsNodeOptions {
  readonly brokers: string;
  readonly pgUrl: string;
  readonly schema: string;
  readonly node: string;
  /**
   * Who may call the HTTP API (docs/security.md): the same on every node; `false` turns
   * authentication off (every caller an operator), for local experiments only. Required.
   */
  readonly auth: AuthOptions | false;
  /** Before every topic's name (see prefixedTopics). @default '' */
  readonly topicPrefix?: string;
  /** 0 for any free port. @default 0 */
  readonly port?: number;
  /** Redis the nodes share for the latest-window cache. @default none: each node caches in process */
  readonly redisUrl?: string;
  /** Generated trades per second from this node. @default 0 (trades come over HTTP only) */
  readonly ratePerSecond?: number;
  readonly seed?: number;
  readonly symbols?: number;
  readonly group?: string;
  readonly sessionTimeoutMs?: number;
  readonly relay?: boolean;
  readonly onCommit?: (partition: number, position: number) => void;
  readonly onError?: (message: string) => void;
}

export interface RunningMarketsNode {
  readonly url: string;
  readonly job: PartitionedStreamJob;
  stop(): Promise<void>;
}

const disorderMs = 2000;

export async function startMarketsNode(options: MarketsNodeOptions): Promise<RunningMarketsNode> {
  const names = prefixedTopics(options.topicPrefix ?? '');
  const log = new KafkaLog({
    brokers: parseBrokerList(options.brokers),
    clientId: `markets-${options.node}`,
    ...(options.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: options.sessionTimeoutMs }),
  });
  const store = await openPostgresStore({ connectionString: options.pgUrl, schema: options.schema });
  await createMarketsTopics(log, names, 86_400_000);
  const shared =
    options.redisUrl === undefined ? undefined : await sharedCache(options.redisUrl, options.schema);
  const latest = latestWindowCache(store, shared);
  let job: PartitionedStreamJob | undefined;
  let feed: ClosedWindowsFeed | undefined;
  const api = await createMarketsApi({
    auth: options.auth,
    store,
    log,
    latest,
    topics: names,
    jobStatus: () => nodeStatus(options.node, log, names, job, feed),
  });
  // Each partition's job reads that partition alone: no other partition to wait for when idle.
  const source = marketsDataflow({
    topics: names,
    latestCache: latest,
    outOfOrdernessMs: disorderMs,
    idleTimeoutMs: null,
  });
  job = await startPartitionedStreamJob({
    name: 'markets',
    node: options.node,
    source,
    store,
    log,
    group: options.group ?? 'markets',
    // Fencing partitions 2000 to 2000 + trades partitions − 1: past the runtime's (0 to 1023).
    firstFencingPartition: marketsFirstFencingPartition,
    relay: options.relay ?? true,
    maxRecordsPerRead: 500,
    maxRecordsPerTransaction: 2000,
    onPartitionCommit: (partition, _event, metrics) => options.onCommit?.(partition, metrics.positions[0]!),
    onError: ({ partition, error }) =>
      options.onError?.(`partition ${partition}: ${(error as Error).message}`.slice(0, 500)),
  });
  feed = followClosedWindows(log, names, options.node, api);
  const generator =
    (options.ratePerSecond ?? 0) > 0
      ? await startGenerator(log, names, {
          ratePerSecond: options.ratePerSecond!,
          seed: options.seed ?? 42,
          symbols: options.symbols ?? 50,
          disorderMs,
        })
      : undefined;
  const url = await api.listen(options.port ?? 0);
  return {
    url,
    job,
    async stop() {
      generator?.stop();
      await api.close();
      await feed?.stop();
      await job.stop();
      latest.close();
      await shared?.close();
      await log.close();
      await store.close();
    },
  };
}

/** Redis for the latest-window cache, keyed per schema: deployments sharing a Redis keep apart, as their read models do. */
async function sharedCache(url: string, schema: string): Promise<SharedCache & { close(): Promise<void> }> {
  // Loaded only when asked for, as the commerce node does.
  const redis = new (await import('ioredis')).Redis(url);
  const invalidation = redisInvalidationBus({ redis, channel: `meridian:markets:${schema}` });
  return {
    l2: redisTier({ redis, keyPrefix: `meridian:markets:${schema}:` }),
    invalidation,
    async close() {
      await invalidation.close();
      redis.disconnect();
    },
  };
}

/**
 * GET /markets/job on a node: its partitions' metrics and lag, and how many partitions of the
 * closed windows its live feed follows (all of them once its consumer joined).
 */
async function nodeStatus(
  node: string,
  log: Log,
  names: MarketsTopics,
  job: PartitionedStreamJob | undefined,
  feed: ClosedWindowsFeed | undefined,
): Promise<unknown> {
  if (job === undefined || feed === undefined) return { node, starting: true };
  const partitions: Record<string, unknown> = {};
  for (const [partition, metrics] of job.metrics()) {
    const { end } = await log.offsets(names.trades, partition);
    partitions[partition] = { ...metrics, lag: Math.max(0, end - metrics.positions[0]!) };
  }
  return { node, partitions, feedPartitions: feed.partitions() };
}

interface ClosedWindowsFeed {
  partitions(): number;
  stop(): Promise<void>;
}

/**
 * The live feed of a node: every partition's closed windows, read from their topic by a consumer
 * of the node's own (a group of one, from the end), so a client of any node sees every window,
 * whichever node's job closed it. The embedded app feeds its clients from its one job instead.
 */
function followClosedWindows(
  log: Log,
  names: MarketsTopics,
  node: string,
  api: MarketsApi,
): ClosedWindowsFeed {
  const consumer: Consumer = log.consumer({
    group: `markets-feed-${node}-${randomUUID()}`,
    topics: [names.windows],
    autoOffsetReset: 'latest',
  });
  const abort = new AbortController();
  const decoder = new TextDecoder();
  const following = (async () => {
    while (!abort.signal.aborted) {
      const records = await consumer
        .poll({ timeoutMs: 1000, signal: abort.signal })
        .catch((error: unknown) => {
          if (!abort.signal.aborted) console.error(`markets feed: ${(error as Error).message}`);
          return [];
        });
      api.broadcast(records.map((record) => JSON.parse(decoder.decode(record.value!)) as WindowView));
    }
  })();
  return {
    partitions: () => consumer.assignment().length,
    async stop() {
      abort.abort();
      await following;
      await consumer.close();
    },
  };
}

/** The node's auth from `--auth` and MERIDIAN_AUTH_SECRET, or what is wrong with them. */
function nodeAuth(mode: string | undefined, secret: string | undefined): AuthOptions | false | string {
  if (mode === 'off') return false;
  if (mode !== undefined && mode !== 'on')
    return `--auth must be 'on' or 'off': current value is '${mode.slice(0, 16)}'`;
  if (secret === undefined || secret.length < 32) {
    return `MERIDIAN_AUTH_SECRET must be set to the cluster's token signing secret (32+ characters, the same on every node): current length is ${secret?.length ?? 0}. Pass --auth off only for local experiments`;
  }
  return { jwt: { secret } };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      brokers: { type: 'string' },
      pg: { type: 'string' },
      schema: { type: 'string' },
      node: { type: 'string' },
      'topic-prefix': { type: 'string' },
      port: { type: 'string' },
      redis: { type: 'string' },
      rate: { type: 'string' },
      seed: { type: 'string' },
      symbols: { type: 'string' },
      group: { type: 'string' },
      'session-timeout-ms': { type: 'string' },
      'no-relay': { type: 'boolean' },
      auth: { type: 'string' },
    },
  });
  for (const name of ['brokers', 'pg', 'schema', 'node'] as const) {
    if (values[name] === undefined) {
      process.stderr.write(`markets cluster node: --${name} is required\n`);
      process.exit(2);
    }
  }
  const { integer } = await import('./demo.ts');
  const auth = nodeAuth(values.auth, process.env.MERIDIAN_AUTH_SECRET);
  if (typeof auth === 'string') {
    process.stderr.write(`markets cluster node: ${auth}\n`);
    process.exit(2);
  }
  if (auth === false)
    process.stderr.write('markets cluster node: WARNING: authentication is off (--auth off)\n');
  const running = await startMarketsNode({
    auth,
    brokers: values.brokers!,
    pgUrl: values.pg!,
    schema: values.schema!,
    node: values.node!,
    topicPrefix: values['topic-prefix'] ?? '',
    port: integer('port', values.port, 0, 0, 65_535),
    ratePerSecond: integer('rate', values.rate, 0, 0, 200_000),
    seed: integer('seed', values.seed, 42, 0, 2 ** 31),
    symbols: integer('symbols', values.symbols, 50, 1, 5000),
    ...(values.redis === undefined ? {} : { redisUrl: values.redis }),
    ...(values.group === undefined ? {} : { group: values.group }),
    ...(values['session-timeout-ms'] === undefined
      ? {}
      : { sessionTimeoutMs: integer('session-timeout-ms', values['session-timeout-ms'], 0, 1000, 300_000) }),
    relay: values['no-relay'] !== true,
    onCommit: (partition, position) => process.stdout.write(`committed ${partition} ${position}\n`),
    onError: (message) => process.stderr.write(`markets cluster node: ${message}\n`),
  });
  process.stdout.write(`listening ${running.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await running.stop();
  process.stdout.write('stopped\n');
}
