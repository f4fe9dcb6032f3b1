// `commerce node`: the commerce reference system as one node of the cluster shape — the same
// app as `commerce demo`, on PostgreSQL and Kafka, charging through a payment gateway every node
// shares. The cluster plumbing (checks, store and log, ownership, drain) is meridian/cli's.
import {
  type ClusterDependencies,
  type CommandOutput,
  clusterBanner,
  clusterRuntimeOptions,
  consoleOutput,
  runClusterNodeCommand,
  type StartedNode,
} from '../../../src/cli/index.ts';
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

function started(node: CommerceNode): StartedNode {
  return { url: node.url, owned: () => node.app.runtime.cluster?.owned() ?? [], close: () => node.close() };
}

function banner(options: NodeOptions, node: CommerceNode): string[] {
  const local = node.url.replace('://127.0.0.1', '://localhost');
  return [
    ...clusterBanner(`Commerce node '${options.nodeId}'`, options, started(node)),
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
