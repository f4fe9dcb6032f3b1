// `commerce node`: the commerce reference system as one node of the cluster shape — the same
// app as `commerce demo`, on PostgreSQL and Kafka, charging through a payment gateway every node
// shares. The cluster plumbing (checks, store and log, ownership, drain) is meridian/cli's.

import type { RedisClient } from '../../../src/cache/index.ts';
import {
  type ClusterDependencies,
  type CommandOutput,
  clusterBanner,
  clusterRuntimeOptions,
  consoleOutput,
  redactUrl,
  runClusterNodeCommand,
  type StartedNode,
  withDeadline,
} from '../../../src/cli/index.ts';
import { ValidationError } from '../../../src/index.ts';
import { type CommerceNode, startCommerceNode } from '../server.ts';
import { NODE_USAGE, type NodeOptions, parseNodeOptions } from './node-options.ts';
import { checkPayments } from './payments-check.ts';

function redisName(given: NonNullable<NodeOptions['redis']>): string {
  return 'url' in given ? redactUrl(given.url) : given.clusterNodes.join(',');
}

/** Connects to the Redis of --redis (a server or a cluster) and checks it answers within the bound. */
async function openRedis(options: NodeOptions, output: CommandOutput): Promise<RedisClient | undefined> {
  const given = options.redis;
  if (given === undefined) return undefined;
  // ioredis loads only when --redis is given, as the Kafka client loads only for the Kafka log.
  const { Cluster, Redis } = await import('ioredis');
  const redis: RedisClient =
    'url' in given
      ? new Redis(given.url, { lazyConnect: true })
      : new Cluster(
          given.clusterNodes.map((node) => {
            const at = node.lastIndexOf(':');
            return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
          }),
          { lazyConnect: true },
        );
  // Outages are the cache's to handle (breaker, reads fall through to the store): no log noise.
  redis.on('error', () => {});
  output.out(`Checking Redis at ${redisName(given)} ...`);
  try {
    await withDeadline(redis.ping(), options.checkTimeoutMs);
  } catch (error) {
    redis.disconnect();
    throw new ValidationError(
      `Redis at ${redisName(given)} did not answer within ${options.checkTimeoutMs} ms (${(error as Error).message}): start it, fix --redis, or leave --redis out to cache in process only`,
    );
  }
  return redis;
}

async function startNode(options: NodeOptions, dependencies: ClusterDependencies, output: CommandOutput) {
  output.out(`Checking the payment gateway at ${options.paymentsUrl} ...`);
  await checkPayments(options.paymentsUrl, options.checkTimeoutMs, options.paymentsApiKey);
  const redis = await openRedis(options, output);
  output.out(`Joining group '${options.group}' as node '${options.nodeId}' ...`);
  try {
    const node = await startCommerceNode({
      store: dependencies.store,
      log: dependencies.log,
      paymentUrl: options.paymentsUrl,
      ...(options.paymentsApiKey === undefined ? {} : { paymentApiKey: options.paymentsApiKey }),
      auth: options.authSecret === undefined ? false : { jwt: { secret: options.authSecret } },
      host: options.host,
      port: options.port,
      ...(redis === undefined ? {} : { redis }),
      app: {
        maxOrdersInProgress: options.maxOrdersInProgress,
        runtime: clusterRuntimeOptions(options, output),
      },
    });
    return { ...node, close: () => node.close().finally(() => redis?.disconnect()) };
  } catch (error) {
    redis?.disconnect();
    throw error;
  }
}

function started(node: CommerceNode): StartedNode {
  return { url: node.url, owned: () => node.app.runtime.cluster?.owned() ?? [], close: () => node.close() };
}

function banner(options: NodeOptions, node: CommerceNode): string[] {
  const local = node.url.replace('://127.0.0.1', '://localhost');
  return [
    ...clusterBanner(`Commerce node '${options.nodeId}'`, options, started(node)),
    `  payment gateway  ${options.paymentsUrl}`,
    `  catalog cache    ${options.redis === undefined ? 'in process' : `in process + Redis ${redisName(options.redis)}`}`,
    `  OpenAPI          ${node.url}/openapi.json    probes /healthz /readyz, metrics /metrics`,
    ...(options.authSecret === undefined
      ? [
          '',
          '  WARNING: --auth off: every caller is an operator. Anyone who reaches this port can do anything.',
        ]
      : ['  auth             bearer tokens signed with MERIDIAN_AUTH_SECRET (docs/security.md)']),
    '',
    'Try (any node takes any request):',
    `  curl -s -X PUT ${local}/inventory/tour-1 -H 'content-type: application/json' -d '{"available":3,"price":25}'`,
    `  curl -s -X POST ${local}/orders -H 'content-type: application/json' -H 'Idempotency-Key: tour-order-1' \\`,
    `       -d '{"customerId":"ada","items":[{"sku":"tour-1","qty":1}]}'`,
    `  curl -s ${local}/orders/<orderId>`,
    '',
    `SIGTERM or Ctrl-C drains (leaves the group, hands the partitions over) within ${options.shutdownTimeoutMs} ms; a second one exits at once.`,
  ];
}

/** Runs `commerce node` (exit codes: meridian/cli's runClusterNodeCommand). */
export function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  return runClusterNodeCommand(
    {
      command: 'commerce node',
      usage: NODE_USAGE,
      parse: parseNodeOptions,
      start: startNode,
      describe: started,
      banner,
    },
    argv,
    output,
  );
}
