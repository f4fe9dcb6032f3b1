// `meridian node`: the commerce reference system as one node of the cluster shape — the same
// app as `meridian demo`, on PostgreSQL and Kafka, charging through a payment gateway every node shares.
import { hostname } from 'node:os';
import { type CommerceNode, startCommerceNode } from '../../apps/commerce/server.ts';
import { isMeridianError } from '../errors.ts';
import { KafkaLog } from '../log/index.ts';
import { openPostgresStore, type PostgresStore } from '../store/index.ts';
import { type CommandOutput, consoleOutput } from './args.ts';
import {
  checkKafka,
  checkPayments,
  checkPostgres,
  describeStoreFailure,
  redactUrl,
  withDeadline,
} from './node-checks.ts';
import { NODE_USAGE, type NodeOptions, parseNodeOptions } from './node-options.ts';

interface Dependencies {
  store: PostgresStore;
  log: KafkaLog;
}

/** Checks PostgreSQL, Kafka and the payment gateway (each within the bound), then opens the store and the log. */
async function openDependencies(options: NodeOptions, output: CommandOutput): Promise<Dependencies> {
  output.out(`Checking PostgreSQL at ${redactUrl(options.pgUrl)} ...`);
  await checkPostgres(options.pgUrl, options.checkTimeoutMs);
  output.out(`Checking Kafka at ${options.kafkaBrokers.join(',')} ...`);
  await checkKafka({
    brokers: options.kafkaBrokers,
    clientId: options.nodeId,
    workTopic: options.workTopic,
    workPartitions: options.workPartitions,
    timeoutMs: options.checkTimeoutMs,
  });
  output.out(`Checking the payment gateway at ${options.paymentsUrl} ...`);
  await checkPayments(options.paymentsUrl, options.checkTimeoutMs, options.paymentsApiKey);
  let store: PostgresStore;
  try {
    store = await openPostgresStore({
      connectionString: options.pgUrl,
      schema: options.pgSchema,
      connectTimeoutMs: options.checkTimeoutMs,
    });
  } catch (error) {
    throw describeStoreFailure(error, options.pgSchema);
  }
  return { store, log: new KafkaLog({ brokers: options.kafkaBrokers, clientId: options.nodeId }) };
}

async function startNode(options: NodeOptions, dependencies: Dependencies, output: CommandOutput) {
  output.out(`Joining group '${options.group}' as node '${options.nodeId}' ...`);
  return startCommerceNode({
    store: dependencies.store,
    log: dependencies.log,
    paymentUrl: options.paymentsUrl,
    ...(options.paymentsApiKey === undefined ? {} : { paymentApiKey: options.paymentsApiKey }),
    auth: options.authSecret === undefined ? false : { jwt: { secret: options.authSecret } },
    host: options.host,
    port: options.port,
    app: {
      maxOrdersInProgress: options.maxOrdersInProgress,
      runtime: {
        cluster: {
          node: options.nodeId,
          workPartitions: options.workPartitions,
          workTopic: options.workTopic,
          group: options.group,
          requestTimeoutMs: options.requestTimeoutMs,
          ...(options.replicationFactor === undefined
            ? {}
            : { replicationFactor: options.replicationFactor }),
        },
        onProblem: (problem) =>
          output.err(
            `runtime: ${problem.message}${problem.sagaId === undefined ? '' : ` (order ${problem.sagaId})`}: ${problem.error}`,
          ),
      },
    },
  });
}

function banner(options: NodeOptions, node: CommerceNode): string[] {
  const local = node.url.replace('://127.0.0.1', '://localhost');
  const owned = node.app.runtime.cluster?.owned() ?? [];
  return [
    `Commerce node '${options.nodeId}' listening on ${node.url}  (pid ${process.pid})`,
    `  PostgreSQL       ${redactUrl(options.pgUrl)} schema ${options.pgSchema}`,
    `  Kafka            ${options.kafkaBrokers.join(',')}  work topic ${options.workTopic} (${options.workPartitions} partitions), group ${options.group}`,
    `  owns partitions  ${owned.length === 0 ? 'none yet (assignment in progress)' : owned.join(',')}  (changes are printed; also in /readyz)`,
    `  payment gateway  ${options.paymentsUrl}`,
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

/** Prints the work partitions this node owns whenever they change (a node joined, left or died). */
function watchOwnership(node: CommerceNode, output: CommandOutput): () => void {
  const owned = () => (node.app.runtime.cluster?.owned() ?? []).join(',');
  let last = owned();
  const timer = setInterval(() => {
    const now = owned();
    if (now === last) return;
    output.out(`owns partitions ${now === '' ? 'none' : now} (was ${last === '' ? 'none' : last})`);
    last = now;
  }, 1000);
  return () => clearInterval(timer);
}

async function closeDependencies(dependencies: Dependencies): Promise<void> {
  await dependencies.log.close();
  await dependencies.store.close();
}

/** Waits for SIGTERM/SIGINT, then drains within the bound; a second signal exits at once. */
function drainOnSignal(
  options: NodeOptions,
  node: CommerceNode,
  dependencies: Dependencies,
  output: CommandOutput,
): Promise<number> {
  return new Promise<number>((done) => {
    let draining = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (draining) {
        output.err(
          `${signal} again: exiting now; this node's partitions move once the group notices it left.`,
        );
        process.exit(130);
      }
      draining = true;
      output.out(`${signal}: draining (no new requests, the runtime stops and hands its partitions over)...`);
      const drain = (async () => {
        await node.close();
        await closeDependencies(dependencies);
      })();
      withDeadline(drain, options.shutdownTimeoutMs).then(
        () => {
          output.out(`Node '${options.nodeId}' stopped cleanly.`);
          done(0);
        },
        (error: unknown) => {
          output.err(
            `meridian node: the drain did not finish within ${options.shutdownTimeoutMs} ms (${(error as Error).message}); exiting anyway: this node's partitions move after the group's session timeout and their orders resume from the journal on the new owner`,
          );
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

function report(error: unknown, options: NodeOptions, output: CommandOutput): number {
  if ((error as { code?: unknown }).code === 'EADDRINUSE') {
    output.err(
      `meridian node: port ${options.port} on ${options.host} is in use: pass --port <n> (or PORT=<n>), or stop the other process`,
    );
    return 1;
  }
  if (!isMeridianError(error)) throw error;
  output.err(`meridian node: ${error.code}: ${error.message}`);
  return 1;
}

/**
 * Runs `meridian node`. Exit codes: 0 after a clean drain, 1 when a dependency is unreachable or
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
    const message = error.message.startsWith('meridian node')
      ? error.message
      : `meridian node: ${error.message}`;
    output.err(`${message}\n\nRun 'meridian node --help' for every option.`);
    return 2;
  }
  if (options === 'help') {
    output.out(NODE_USAGE);
    return 0;
  }
  let dependencies: Dependencies | undefined;
  let node: CommerceNode;
  try {
    dependencies = await openDependencies(options, output);
    node = await startNode(options, dependencies, output);
  } catch (error) {
    if (dependencies !== undefined) await closeDependencies(dependencies).catch(() => undefined);
    return report(error, options, output);
  }
  for (const line of banner(options, node)) output.out(line);
  const stopWatching = watchOwnership(node, output);
  const code = await drainOnSignal(options, node, dependencies, output);
  stopWatching();
  // A handle the drain left open (a socket closing slowly) must not keep the process past its bound.
  setTimeout(() => process.exit(code), 2000).unref();
  return code;
}
