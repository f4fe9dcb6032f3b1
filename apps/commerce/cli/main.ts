#!/usr/bin/env node
// The commerce reference app's commands (`npm start` is `demo`; `npm run commerce -- <command>`).
import { runCommands } from '../../../src/cli/index.ts';

await runCommands('commerce', {
  demo: { summary: 'Run the demo on the embedded shape (npm start)', load: () => import('./demo.ts') },
  node: {
    summary: 'Run the commerce app as one node of a cluster (PostgreSQL + Kafka)',
    load: () => import('./node.ts'),
  },
  payments: {
    summary: 'Run the simulated payment gateway the nodes of a cluster share',
    load: () => import('./payments.ts'),
  },
  load: {
    summary: 'Offer orders to a running commerce gateway at a fixed rate',
    load: () => import('./load.ts'),
  },
});
