// What every cluster node command does around its app: check PostgreSQL and Kafka, open the
// store and the log, report partition ownership as it changes, and drain within a bound on
// SIGTERM/SIGINT. `meridian node <module>` and the commerce app's `commerce node` share it.

import { hostname } from 'node:os';
import { isMeridianError } from '../errors.ts';
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
  return {
    store,
    log: new KafkaLog({
      brokers: options.kafkaBrokers,
      clientId: options.nodeId,
      sessionTimeoutMs: options.sessionTimeoutMs,
    }),
  };
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

/** A cluster node command: how it parses its options, starts its app and describes it. */
export interface ClusterNodeCommand<O extends ClusterNodeOptions, N> {
  /** What the user typed: `meridian node`, `commerce node`. */
  readonly command: string;
  readonly usage: string;
  parse(argv: string[], env: NodeJS.ProcessEnv, host: string): O | 'help';
  /** Starts the app on the opened store and log (running any checks of its own first). */
  start(options: O, dependencies: ClusterDependencies, output: CommandOutput): Promise<N>;
  describe(node: N): StartedNode;
  banner(options: O, node: N): string[];
}

function reportStartFailure(
  command: string,
  error: unknown,
  options: ClusterNodeOptions,
  output: CommandOutput,
): number {
  if ((error as { code?: unknown }).code === 'EADDRINUSE') {
    output.err(
      `${command}: port ${options.port} on ${options.host} is in use: pass --port <n> (or PORT=<n>), or stop the other process`,
    );
    return 1;
  }
  if (!isMeridianError(error)) throw error;
  output.err(`${command}: ${error.code}: ${error.message}`);
  return 1;
}

/**
 * Runs a cluster node command. Exit codes: 0 after a clean drain, 1 when a dependency or the app
 * is wrong or unreachable, the node could not start, or the drain outran --shutdown-timeout-ms;
 * 2 for invalid options; 130 on a second signal.
 */
export async function runClusterNodeCommand<O extends ClusterNodeOptions, N>(
  spec: ClusterNodeCommand<O, N>,
  argv: string[],
  output: CommandOutput,
): Promise<number> {
  let options: O | 'help';
  try {
    options = spec.parse(argv, process.env, hostname());
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    // parseCommand's own errors already say which command they are about.
    const message = error.message.startsWith(spec.command)
      ? error.message
      : `${spec.command}: ${error.message}`;
    output.err(`${message}\n\nRun '${spec.command} --help' for every option.`);
    return 2;
  }
  if (options === 'help') {
    output.out(spec.usage);
    return 0;
  }
  let dependencies: ClusterDependencies | undefined;
  let node: N;
  try {
    dependencies = await openClusterDependencies(options, output);
    node = await spec.start(options, dependencies, output);
  } catch (error) {
    if (dependencies !== undefined) await closeClusterDependencies(dependencies).catch(() => undefined);
    return reportStartFailure(spec.command, error, options, output);
  }
  for (const line of spec.banner(options, node)) output.out(line);
  return serveClusterNode(spec.command, options, spec.describe(node), dependencies, output);
}
