// `commerce node`: the commerce reference system as one node of the cluster shape — the same
// app as `commerce demo`, on PostgreSQL and Kafka, charging through a payment gateway every node
// shares. The cluster plumbing (checks, store and log, ownership, drain) is meridian/cli's.
import { hostname } from 'node:os';
import {
  type ClusterDependencies,
  type CommandOutput,
  closeClusterDependencies,
  clusterBanner,
  clusterRuntimeOptions,
  consoleOutput,
  openClusterDependencies,
  serveClusterNode,
} from '../../../src/cli/index.ts';
import { isMeridianError } from '../../../src/index.ts';
import { type CommerceNode, startCommerceNode } from '../server.ts';
import { NODE_USAGE, type NodeOptions, parseNodeOptions } from './node-options.ts';
import { checkPayments } from './payments-check.ts';

async function startNode(options: NodeOptions, dependencies: ClusterDependencies, output: CommandOutput) {
  output.out(`Checking the payment gateway at ${options.paymentsUrl} ...`);
  await checkPayments(options.paymentsUrl, options.checkTimeoutMs);
  output.out(`Joining group '${options.group}' as node '${options.nodeId}' ...`);
  return startCommerceNode({
    store: dependencies.store,
    log: dependencies.log,
    paymentUrl: options.paymentsUrl,
    host: options.host,
    port: options.port,
    app: {
      maxOrdersInProgress: options.maxOrdersInProgress,
      runtime: clusterRuntimeOptions(options, output),
    },
  });
}

function banner(options: NodeOptions, node: CommerceNode): string[] {
  const local = node.url.replace('://127.0.0.1', '://localhost');
  return [
    ...clusterBanner(`Commerce node '${options.nodeId}'`, options, {
      url: node.url,
      owned: () => node.app.runtime.cluster?.owned() ?? [],
      close: () => node.close(),
    }),
    `  payment gateway  ${options.paymentsUrl}`,
    `  OpenAPI          ${node.url}/openapi.json    probes /healthz /readyz, metrics /metrics`,
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

function report(error: unknown, options: NodeOptions, output: CommandOutput): number {
  if ((error as { code?: unknown }).code === 'EADDRINUSE') {
    output.err(
      `commerce node: port ${options.port} on ${options.host} is in use: pass --port <n> (or PORT=<n>), or stop the other process`,
    );
    return 1;
  }
  if (!isMeridianError(error)) throw error;
  output.err(`commerce node: ${error.code}: ${error.message}`);
  return 1;
}

/**
 * Runs `commerce node`. Exit codes: 0 after a clean drain, 1 when a dependency is unreachable or
 * misconfigured, the node could not start, or the drain outran --shutdown-timeout-ms; 2 for
 * invalid options; 130 on a second signal.
 */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: NodeOptions | 'help';
  try {
    options = parseNodeOptions(argv, process.env, hostname());
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    // parseCommandLine's own errors already say which command they are about.
    const message = error.message.startsWith('commerce node')
      ? error.message
      : `commerce node: ${error.message}`;
    output.err(`${message}\n\nRun 'commerce node --help' for every option.`);
    return 2;
  }
  if (options === 'help') {
    output.out(NODE_USAGE);
    return 0;
  }
  let dependencies: ClusterDependencies | undefined;
  let node: CommerceNode;
  try {
    dependencies = await openClusterDependencies(options, output);
    node = await startNode(options, dependencies, output);
  } catch (error) {
    if (dependencies !== undefined) await closeClusterDependencies(dependencies).catch(() => undefined);
    return report(error, options, output);
  }
  for (const line of banner(options, node)) output.out(line);
  const started = {
    url: node.url,
    owned: () => node.app.runtime.cluster?.owned() ?? [],
    close: () => node.close(),
  };
  return serveClusterNode('commerce node', options, started, dependencies, output);
}
