/**
 * `meridian/cli`: the pieces the `meridian` command is made of, for an app's own commands (its
 * load generator, its cluster node, its admin tools): subcommands loaded on demand, option parsing
 * whose errors name the option, the rule and the value, and the cluster node's options, dependency
 * checks and drain (pg and the Kafka client load when a check or a node runs, not on import).
 */
export {
  type CommandOutput,
  choice,
  consoleOutput,
  integer,
  number,
  type ParsedCommand,
  type ParsedValues,
  parseCommand,
  parseCommandLine,
  port,
} from './args.ts';
export {
  checkKafka,
  checkPostgres,
  DependencyError,
  describeStoreFailure,
  type KafkaCheck,
  redactUrl,
  withDeadline,
} from './cluster-checks.ts';
export {
  type ClusterDependencies,
  type ClusterNodeCommand,
  closeClusterDependencies,
  clusterBanner,
  clusterRuntimeOptions,
  openClusterDependencies,
  runClusterNodeCommand,
  type StartedNode,
  serveClusterNode,
} from './cluster-node.ts';
export {
  CLUSTER_BOUNDS_USAGE,
  CLUSTER_OPTIONS_USAGE,
  type ClusterNodeOptions,
  clusterCommandOptions,
  defaultNodeId,
  fromEnv,
  optionalInteger,
  parseClusterOptions,
  urlOption,
} from './cluster-options.ts';
export { type Command, runCommands } from './commands.ts';
