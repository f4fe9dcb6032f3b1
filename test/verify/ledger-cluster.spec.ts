// The ledger's verify spec on the cluster shape: the same app module (its deposits through a
// saga), workload and invariants as ledger.spec.ts, run as three `meridian node` processes over the run's own PostgreSQL schema and
// Kafka work topic. Each operation goes to a node that serves (deposits owned by another node are
// routed to it), while the run kills nodes, freezes one past its session timeout (its partitions
// move; what it had in flight must meet the epoch fence when it thaws) and, given a broker control
// command, loses a Kafka broker:
//
//   meridian verify test/verify/ledger-cluster.spec.ts --seed 1 --duration 60s \
//     --pg postgres://postgres@127.0.0.1:5432/test --kafka 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 \
//     --broker-control 'bash scripts/kafka/kafka.sh'
import { join, resolve } from 'node:path';
import { defineVerifySpec } from '../../src/chaos/index.ts';
import ledger from './ledger.spec.ts';

const root = resolve(import.meta.dirname, '../..');
/** The nodes' session timeout: Kafka's least by default, so a frozen node's partitions move soon. */
const sessionTimeoutMs = 6000;

export default defineVerifySpec({
  ...ledger,
  name: 'verify-ledger-cluster',
  description: 'The ledger as three cluster nodes over PostgreSQL and Kafka',
  cluster: { nodes: 3, sessionTimeoutMs },
  start: ({ port, node, cluster }) => {
    if (cluster === undefined) throw new Error('verify-ledger-cluster runs as a cluster');
    return {
      command: process.execPath,
      args: [
        join(root, 'src/cli/main.ts'),
        'node',
        join(root, 'test/verify/ledger-app.ts'),
        ...['--auth', 'off', '--port', String(port), '--node-id', `ledger-${node}`],
        ...['--pg', cluster.pgUrl, '--pg-schema', cluster.pgSchema, '--kafka', cluster.kafkaBrokers],
        ...['--group', cluster.group, '--work-topic', cluster.workTopic, '--work-partitions', '8'],
        ...['--session-timeout-ms', String(sessionTimeoutMs)],
      ],
      cwd: root,
      // Deposits through a saga named by the deposit: a node dies mid-request and the retry
      // takes its Idempotency-Key over once the lease ran out, which runs the route again
      // (docs/http.md, "Leases"); with the key alone the deposit would apply twice, as this
      // spec's first runs found.
      env: { PORT: '', MERIDIAN_LEDGER_DEPOSITS: 'saga' },
    };
  },
  ready: /App 'verify-ledger', node '[^']+', listening on (http:\/\/\S+)/,
});
