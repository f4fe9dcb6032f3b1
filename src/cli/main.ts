#!/usr/bin/env node
// The `meridian` command: runs any app module and scaffolds new apps. Each subcommand lives in
// its own file and is loaded on demand. The reference apps' own tooling (the commerce demo, its
// cluster node and load generator, the banking gateway) lives with them in apps/.
import { runCommands } from './commands.ts';

await runCommands('meridian', {
  dev: {
    summary: 'Run an app module on the embedded shape, with its HTTP routes',
    load: () => import('./dev.ts'),
  },
  node: {
    summary: 'Run an app module as one node of a cluster (PostgreSQL + Kafka)',
    load: () => import('./node.ts'),
  },
  inspect: {
    summary: 'Ask a running node about its sagas, a saga, topics, lag and dead letters (--json)',
    load: () => import('./inspect.ts'),
  },
  cancel: {
    summary: 'Ask a running node to cancel a saga (it compensates and ends cancelled)',
    load: () => import('./cancel.ts'),
  },
  verify: {
    summary: 'Run an app under seeded faults and check its invariants (docs/verify.md)',
    load: () => import('./verify.ts'),
  },
  new: {
    summary: 'Scaffold a new app (an entity, a saga, a subscription, a route, tests)',
    load: () => import('./new.ts'),
  },
});
