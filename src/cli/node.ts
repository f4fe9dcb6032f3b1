// `meridian node <module>`: runs any app module as one node of the cluster shape — state in
// PostgreSQL, records in Kafka, work partitions owned through a Kafka consumer group.
import { hostname } from 'node:os';
import type { RunningApp } from '../app/host.ts';
import { isMeridianError, ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, parseCommand } from './args.ts';
import {
  type ClusterDependencies,
  closeClusterDependencies,
  clusterBanner,
  clusterRuntimeOptions,
  openClusterDependencies,
  serveClusterNode,
} from './cluster-node.ts';
import {
  CLUSTER_BOUNDS_USAGE,
  CLUSTER_OPTIONS_USAGE,
  type ClusterNodeOptions,
  clusterCommandOptions,
  parseClusterOptions,
} from './cluster-options.ts';

export const NODE_USAGE = `Usage: meridian node <module> [options]

Runs an app module (the same one 'meridian dev' runs) as one node of a cluster: state in
PostgreSQL, records in Kafka, work partitions owned through a Kafka consumer group. Start as
many nodes as you like with the same module, --pg, --pg-schema and --kafka and a distinct
--node-id each; any node takes any request. SIGTERM or Ctrl-C drains (the node leaves the group
and hands its partitions over) and exits; a second signal exits at once. docs/cluster.md shows
three nodes on one machine.

Options (environment variable in brackets):
${CLUSTER_OPTIONS_USAGE}
${CLUSTER_BOUNDS_USAGE}`;

export interface NodeOptions extends ClusterNodeOptions {
  module: string;
}

/** Parses and validates `meridian node`'s arguments and environment; 'help' when the usage was asked for. */
export function parseNodeOptions(
  argv: string[],
  env: Record<string, string | undefined>,
  host: string,
): NodeOptions | 'help' {
  const parsed = parseCommand('meridian node', argv, clusterCommandOptions, ['module']);
  if (parsed === 'help') return 'help';
  const module = parsed.positionals[0];
  if (module === undefined)
    throw new ValidationError('meridian node needs an app module: meridian node src/app.ts --pg … --kafka …');
  return { module, ...parseClusterOptions(parsed.values, env, host, 'meridian dev') };
}

async function startNode(options: NodeOptions, dependencies: ClusterDependencies, output: CommandOutput) {
  const { loadAppModule } = await import('./app-module.ts');
  const { startApp } = await import('../app/host.ts');
  const app = await loadAppModule(options.module, process.cwd());
  output.out(`Joining group '${options.group}' as node '${options.nodeId}' ...`);
  return startApp(app, {
    store: dependencies.store,
    log: dependencies.log,
    host: options.host,
    port: options.port,
    runtime: clusterRuntimeOptions(options, output),
  });
}

/**
 * Runs `meridian node`. Exit codes: 0 after a clean drain, 1 when the module or a dependency is
 * wrong or unreachable, the node could not start, or the drain outran --shutdown-timeout-ms; 2
 * for invalid options; 130 on a second signal.
 */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: NodeOptions | 'help';
  try {
    options = parseNodeOptions(argv, process.env, hostname());
  } catch (error) {
    if (!isMeridianError(error)) throw error;
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
  let dependencies: ClusterDependencies | undefined;
  let running: RunningApp;
  try {
    dependencies = await openClusterDependencies(options, output);
    running = await startNode(options, dependencies, output);
  } catch (error) {
    if (dependencies !== undefined) await closeClusterDependencies(dependencies).catch(() => undefined);
    if ((error as { code?: unknown }).code === 'EADDRINUSE') {
      output.err(
        `meridian node: port ${options.port} on ${options.host} is in use: pass --port <n> (or PORT=<n>)`,
      );
      return 1;
    }
    if (!isMeridianError(error)) throw error;
    output.err(`meridian node: ${error.code}: ${error.message}`);
    return 1;
  }
  const node = {
    url: running.url,
    owned: () => running.runtime.cluster?.owned() ?? [],
    close: () => running.close(),
  };
  for (const line of clusterBanner(`App '${running.app.name}', node '${options.nodeId}',`, options, node)) {
    output.out(line);
  }
  output.out(`  OpenAPI          ${running.url}/openapi.json    probes /healthz /readyz, metrics /metrics`);
  return serveClusterNode('meridian node', options, node, dependencies, output);
}
