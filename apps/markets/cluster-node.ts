// The markets windows job on the cluster shape, as one of several node processes: trades from a
// Kafka topic keyed by symbol, the 5 s windows per symbol into the PostgreSQL read model, late
// trades to a topic (outbox rows the node's relay sends to Kafka). The nodes share the topic's
// partitions through a Kafka consumer group; each partition's window state, offsets and outputs
// commit in PostgreSQL, fenced by the partition's epoch (docs/markets.md, "On the cluster").
//
//   node apps/markets/cluster-node.ts --brokers H:P --pg URL --schema S --node NAME
//        --trades TOPIC --late TOPIC [--group G] [--session-timeout-ms N] [--no-relay]
// prints `committed <partition> <next offset>` after each commit of a partition.

import { parseArgs } from 'node:util';
import { KafkaLog, parseBrokerList } from '../../src/log/kafka/index.ts';
import { openPostgresStore } from '../../src/store/postgres/index.ts';
import {
  type PartitionedStreamJob,
  readModelSink,
  startPartitionedStreamJob,
  topicSink,
} from '../../src/stream/index.ts';
import { readModels, windowRowId } from './analytics.ts';
import { encodeTrade } from './trade.ts';
import { windowsDataflow } from './windows-job.ts';

export const marketsFirstFencingPartition = 2000;

export interface MarketsNodeOptions {
  readonly brokers: string;
  readonly pgUrl: string;
  readonly schema: string;
  readonly node: string;
  readonly tradesTopic: string;
  readonly lateTopic: string;
  readonly group?: string;
  readonly sessionTimeoutMs?: number;
  readonly relay?: boolean;
  readonly onCommit?: (partition: number, position: number) => void;
  readonly onError?: (message: string) => void;
}

export interface RunningMarketsNode {
  readonly job: PartitionedStreamJob;
  stop(): Promise<void>;
}

export async function startMarketsNode(options: MarketsNodeOptions): Promise<RunningMarketsNode> {
  const log = new KafkaLog({
    brokers: parseBrokerList(options.brokers),
    clientId: `markets-${options.node}`,
    ...(options.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: options.sessionTimeoutMs }),
  });
  const store = await openPostgresStore({ connectionString: options.pgUrl, schema: options.schema });
  const source = windowsDataflow({
    topic: options.tradesTopic,
    outOfOrdernessMs: 2000,
    allowedLatenessMs: 0,
    // Each partition's results then depend on its records alone, wherever and whenever it runs.
    idleTimeoutMs: null,
    windows: [
      readModelSink({
        type: readModels.windows,
        id: (r) => windowRowId(r.key, r.window.startMs),
        state: (r) => ({ symbol: r.key, startMs: r.window.startMs, ...r.value }),
      }),
    ],
    late: topicSink(options.lateTopic, encodeTrade),
  });
  const job = await startPartitionedStreamJob({
    name: 'markets-windows',
    node: options.node,
    source,
    store,
    log,
    group: options.group ?? 'markets-windows',
    // Fencing partitions 2000 to 2000 + trades partitions − 1: past the runtime's (0 to 1023).
    firstFencingPartition: marketsFirstFencingPartition,
    relay: options.relay ?? true,
    maxRecordsPerRead: 500,
    maxRecordsPerTransaction: 2000,
    onPartitionCommit: (partition, _event, metrics) => options.onCommit?.(partition, metrics.positions[0]!),
    onError: ({ partition, error }) =>
      options.onError?.(`partition ${partition}: ${(error as Error).message}`.slice(0, 500)),
  });
  return {
    job,
    async stop() {
      await job.stop();
      await log.close();
      await store.close();
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      brokers: { type: 'string' },
      pg: { type: 'string' },
      schema: { type: 'string' },
      node: { type: 'string' },
      trades: { type: 'string' },
      late: { type: 'string' },
      group: { type: 'string' },
      'session-timeout-ms': { type: 'string' },
      'no-relay': { type: 'boolean' },
    },
  });
  for (const name of ['brokers', 'pg', 'schema', 'node', 'trades', 'late'] as const) {
    if (values[name] === undefined) {
      process.stderr.write(`markets cluster node: --${name} is required\n`);
      process.exit(2);
    }
  }
  const running = await startMarketsNode({
    brokers: values.brokers!,
    pgUrl: values.pg!,
    schema: values.schema!,
    node: values.node!,
    tradesTopic: values.trades!,
    lateTopic: values.late!,
    ...(values.group === undefined ? {} : { group: values.group }),
    ...(values['session-timeout-ms'] === undefined
      ? {}
      : { sessionTimeoutMs: Number(values['session-timeout-ms']) }),
    relay: values['no-relay'] !== true,
    onCommit: (partition, position) => process.stdout.write(`committed ${partition} ${position}\n`),
    onError: (message) => process.stderr.write(`markets cluster node: ${message}\n`),
  });
  process.stdout.write('started\n');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await running.stop();
  process.stdout.write('stopped\n');
}
