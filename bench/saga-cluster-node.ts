/**
 * One node of `npm run bench:saga -- --shape cluster`: the bench's 4-step saga (bench/saga-app.ts)
 * on the cluster shape (PostgreSQL store, Kafka log), with its own load generator, driven by the
 * parent (bench/saga-cluster.ts) over the IPC channel it was spawned with.
 *
 * Usage: node bench/saga-cluster-node.ts '<json: pg, schema, brokers, workTopic, group, node, partitions>'
 *
 * Messages in: `{ type: 'closed', concurrency, warmupMs, seconds }` (keep `concurrency` sagas in
 * flight), `{ type: 'open', rate, warmupSeconds, seconds }` (offer `rate` sagas/s on a fixed
 * schedule), `{ type: 'stop' }`. Messages out: `ready`, `owned` (on every change), and the
 * result of each load. Saga ids start with the node's name, and each saga's partition is its
 * id's, so most starts are routed to another node when there are several.
 */
import { build, encodeIntoCompressedBase64 } from 'hdr-histogram-js';
import { workPartitionOf } from '../src/cluster/partitions.ts';
import { KafkaLog } from '../src/log/kafka/index.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../src/runtime/index.ts';
import { openPostgresStore } from '../src/store/postgres/index.ts';
import { Inventory, Order, OrderSaga, skus } from './saga-app.ts';

export interface NodeConfig {
  pg: string;
  schema: string;
  brokers: string[];
  workTopic: string;
  group: string;
  node: string;
  partitions: number;
  /** Start only sagas whose ids this node owns (see ClusterBenchOptions.localStarts). */
  localStarts: boolean;
}

export type NodeMessage =
  | { type: 'closed'; concurrency: number; warmupMs: number; seconds: number }
  | { type: 'open'; rate: number; warmupSeconds: number; seconds: number }
  | { type: 'stop' };

export type NodeReport =
  | { type: 'ready' }
  | { type: 'owned'; owned: number[] }
  | {
      type: 'closed';
      counted: number;
      elapsedMs: number;
      failures: number;
      units: number;
      transactions: number;
      retried: number;
    }
  | { type: 'open'; histogram: string; measured: number; failures: number; errors: string[] };

const config = JSON.parse(process.argv[2] ?? '{}') as NodeConfig;
const send = (report: NodeReport) => process.send?.(report);
let sequence = 0;
/** The first few distinct failure messages, to say why sagas failed. */
const errors = new Set<string>();
function failed(error: unknown): void {
  if (errors.size < 5) errors.add(String(error instanceof Error ? error.message : error).slice(0, 200));
}

function nextInput(): [string, { sku: string; qty: number; amount: number }] {
  sequence++;
  let id = `${config.node}-${sequence}`;
  const mine = config.localStarts ? (runtime?.cluster?.owned() ?? []) : [];
  // A partition-aware client: the next id (suffixed) that falls in a partition this node owns.
  for (let suffix = 0; mine.length > 0 && !mine.includes(workPartitionOf(id, config.partitions)); suffix++) {
    id = `${config.node}-${sequence}-${suffix}`;
  }
  return [id, { sku: `sku-${sequence % skus}`, qty: 1, amount: 100 + (sequence % 50) }];
}

async function open(): Promise<Runtime> {
  const separator = config.pg.includes('?') ? '&' : '?';
  // The node's name reaches PostgreSQL as application_name: the parent finds its backends by it.
  const store = await openPostgresStore({
    connectionString: `${config.pg}${separator}application_name=${encodeURIComponent(config.node)}`,
    schema: config.schema,
    maxConnections: 10,
  });
  const log = new KafkaLog({ brokers: config.brokers, clientId: config.node });
  const options = {
    store,
    log,
    topics: { 'orders.completed': { partitions: 8 } },
    cluster: {
      node: config.node,
      workPartitions: config.partitions,
      workTopic: config.workTopic,
      group: config.group,
      requestTimeoutMs: 30_000,
    },
  } satisfies RuntimeOptions;
  const runtime = createRuntime(options).register(Inventory, Order, OrderSaga);
  await runtime.start();
  return runtime;
}

async function closedLoop(runtime: Runtime, message: Extract<NodeMessage, { type: 'closed' }>) {
  const started = performance.now();
  const countFrom = started + message.warmupMs;
  const endAt = countFrom + message.seconds * 1000;
  let counted = 0;
  let failures = 0;
  const worker = async () => {
    while (performance.now() < endAt) {
      const [id, input] = nextInput();
      try {
        await (await runtime.startSaga(OrderSaga, id, input)).result();
        if (performance.now() >= countFrom) counted++;
      } catch (error) {
        failures++;
        failed(error);
      }
    }
  };
  const before = runtime.stats.commits;
  await Promise.all(Array.from({ length: message.concurrency }, worker));
  const after = runtime.stats.commits;
  send({
    type: 'closed',
    counted,
    elapsedMs: performance.now() - countFrom,
    failures,
    units: after.units - before.units,
    transactions: after.transactions - before.transactions,
    retried: after.retriedTransactions - before.retriedTransactions,
  });
}

async function openLoop(runtime: Runtime, message: Extract<NodeMessage, { type: 'open' }>) {
  const histogram = build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  const warmupCount = Math.round(message.rate * message.warmupSeconds);
  const total = warmupCount + Math.round(message.rate * message.seconds);
  const intervalMs = 1000 / message.rate;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  let issued = 0;
  let failures = 0;
  // Overloaded, sagas could wait minutes: those not ended 60 s after the last start count as
  // failed (with the message below), so a run ends in bounded time.
  const giveUp = new AbortController();
  const giveUpReason = new Error('not ended within 60 s of the last start');
  await new Promise<void>((resolve) => {
    const tick = () => {
      // Latency counts from each saga's scheduled time: a stalled loop shows up as latency.
      const now = performance.now();
      while (issued < total && start + issued * intervalMs <= now) {
        const index = issued++;
        const scheduledAt = start + index * intervalMs;
        const [id, input] = nextInput();
        pending.push(
          runtime
            .startSaga(OrderSaga, id, input)
            .then((handle) => handle.result({ signal: giveUp.signal }))
            .then(
              () => {
                if (index >= warmupCount)
                  histogram.recordValue(Math.max(1, Math.round((performance.now() - scheduledAt) * 1000)));
              },
              (error: unknown) => {
                if (index < warmupCount) return;
                failures++;
                failed(error);
              },
            ),
        );
      }
      if (issued >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const timer = setTimeout(() => giveUp.abort(giveUpReason), 60_000);
  await Promise.all(pending);
  clearTimeout(timer);
  send({
    type: 'open',
    histogram: encodeIntoCompressedBase64(histogram),
    measured: total - warmupCount,
    failures,
    errors: [...errors],
  });
}

const runtime = await open();
send({ type: 'ready' });
let owned = '';
const watch = setInterval(() => {
  const now = runtime.cluster?.owned() ?? [];
  if (now.join(',') !== owned) {
    owned = now.join(',');
    send({ type: 'owned', owned: now });
  }
}, 50);
process.on('message', (message: NodeMessage) => {
  if (message.type === 'closed') void closedLoop(runtime, message);
  else if (message.type === 'open') void openLoop(runtime, message);
  else {
    clearInterval(watch);
    void runtime.stop().then(() => process.exit(0));
  }
});
