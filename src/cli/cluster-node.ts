// What every cluster node command does around its app: check PostgreSQL and Kafka, open the
// store and the log, report partition ownership as it changes, and drain within a bound on
// SIGTERM/SIGINT. `meridian node <module>` and the commerce app's `commerce node` share it.
import type { KafkaLog } from '../log/kafka/kafka-log.ts';
import type { ClusterOptions } from '../runtime/cluster-shape.ts';
import type { RuntimeOptions } from '../runtime/runtime-types.ts';
import type { PostgresStore } from '../store/postgres/store.ts';
import type { CommandOutput } from './args.ts';
import {
  checkKafka,
  checkPostgres,
  describeStoreFailure,
  redactUrl,
  withDeadline,
} from './cluster-checks.ts';
import type { ClusterNodeOptions } from './cluster-options.ts';

/** The store and the log a node runs on; the node closes them after its app. */
export interface ClusterDependencies {
  readonly store: PostgresStore;
  readonly log: KafkaLog;
}

/** A started node's app, as the shared code needs it. */
export interface StartedNode {
  readonly url: string;
  /** The work partitions this node owns now. */
  owned(): readonly number[];
  /** Drains the app; not the store or the log. */
  close(): Promise<void>;
}

/** Checks PostgreSQL and Kafka (each within the bound), then opens the store and the log. */
export async function openClusterDependencies(
  options: ClusterNodeOptions,
  output: CommandOutput,
): Promise<ClusterDependencies> {
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
  const { openPostgresStore } = await import('../store/postgres/store.ts');
  const { KafkaLog } = await import('../log/kafka/kafka-log.ts');
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

export async function closeClusterDependencies(dependencies: ClusterDependencies): Promise<void> {
  await dependencies.log.close();
  await dependencies.store.close();
}

/** The runtime's cluster options for this node, and its problems reported on `output`. */
export function clusterRuntimeOptions(
  options: ClusterNodeOptions,
  output: CommandOutput,
): Pick<RuntimeOptions, 'cluster' | 'onProblem'> {
  const cluster: ClusterOptions = {
    node: options.nodeId,
    workPartitions: options.workPartitions,
    workTopic: options.workTopic,
    group: options.group,
    requestTimeoutMs: options.requestTimeoutMs,
    ...(options.replicationFactor === undefined ? {} : { replicationFactor: options.replicationFactor }),
  };
  return {
    cluster,
    onProblem: (problem) =>
      output.err(
        `runtime: ${problem.message}${problem.sagaId === undefined ? '' : ` (saga ${problem.sagaId})`}: ${problem.error}`,
      ),
  };
}

/** The banner lines every node prints first: where it listens and what it runs on. */
export function clusterBanner(title: string, options: ClusterNodeOptions, node: StartedNode): string[] {
  const owned = node.owned();
  return [
    `${title} listening on ${node.url}  (pid ${process.pid})`,
    `  PostgreSQL       ${redactUrl(options.pgUrl)} schema ${options.pgSchema}`,
    `  Kafka            ${options.kafkaBrokers.join(',')}  work topic ${options.workTopic} (${options.workPartitions} partitions), group ${options.group}`,
    `  owns partitions  ${owned.length === 0 ? 'none yet (assignment in progress)' : owned.join(',')}  (changes are printed; also in /readyz)`,
  ];
}

/** Prints the work partitions this node owns whenever they change (a node joined, left or died). */
function watchOwnership(node: StartedNode, output: CommandOutput): () => void {
  const owned = () => node.owned().join(',');
  let last = owned();
  const timer = setInterval(() => {
    const now = owned();
    if (now === last) return;
    output.out(`owns partitions ${now === '' ? 'none' : now} (was ${last === '' ? 'none' : last})`);
    last = now;
  }, 1000);
  return () => clearInterval(timer);
}

/**
 * Runs a started node until SIGTERM/SIGINT, then drains it and closes the store and the log
 * within --shutdown-timeout-ms; a second signal exits at once. Resolves with the exit code.
 */
export function serveClusterNode(
  command: string,
  options: ClusterNodeOptions,
  node: StartedNode,
  dependencies: ClusterDependencies,
  output: CommandOutput,
): Promise<number> {
  const stopWatching = watchOwnership(node, output);
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
        await closeClusterDependencies(dependencies);
      })();
      withDeadline(drain, options.shutdownTimeoutMs).then(
        () => {
          output.out(`Node '${options.nodeId}' stopped cleanly.`);
          stopWatching();
          // A handle the drain left open (a socket closing slowly) must not keep the process past its bound.
          setTimeout(() => process.exit(0), 2000).unref();
          done(0);
        },
        (error: unknown) => {
          output.err(
            `${command}: the drain did not finish within ${options.shutdownTimeoutMs} ms (${(error as Error).message}); exiting anyway: this node's partitions move after the group's session timeout and their sagas resume from the journal on the new owner`,
          );
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
