// `meridian node <module>`: runs any app module as one node of the cluster shape — state in
// PostgreSQL, records in Kafka, work partitions owned through a Kafka consumer group.
import type { RunningApp } from '../app/host.ts';
import { ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, parseCommand } from './args.ts';
import {
  type ClusterDependencies,
  clusterBanner,
  clusterRuntimeOptions,
  runClusterNodeCommand,
  type StartedNode,
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
    auth: options.authSecret === undefined ? false : { jwt: { secret: options.authSecret } },
    runtime: clusterRuntimeOptions(options, output),
  });
}

function started(running: RunningApp): StartedNode {
  return {
    url: running.url,
    owned: () => running.runtime.cluster?.owned() ?? [],
    close: () => running.close(),
  };
}

/** Runs `meridian node` (exit codes: runClusterNodeCommand). */
export function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  return runClusterNodeCommand(
    {
      command: 'meridian node',
      usage: NODE_USAGE,
      parse: parseNodeOptions,
      start: startNode,
      describe: started,
      banner: (options, running) => [
        ...clusterBanner(`App '${running.app.name}', node '${options.nodeId}',`, options, started(running)),
        `  OpenAPI          ${running.url}/openapi.json    probes /healthz /readyz, metrics /metrics`,
        `SIGTERM or Ctrl-C drains (leaves the group, hands the partitions over) within ${options.shutdownTimeoutMs} ms; a second one exits at once.`,
      ],
    },
    argv,
    output,
  );
}
