import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { MeasurementListener, RuntimeStats, TopicView } from '../runtime/index.ts';

/** What `exposeRuntime` reads: a runtime, or anything with the same stats. */
export interface ExposableRuntime {
  readonly stats: RuntimeStats;
  /** Saga, step, compensation and commit measurements (histograms); a runtime has it. */
  onMeasurement?(listener: MeasurementListener): { dispose(): void };
  /** Topics with each subscription group's lag (the lag gauge, read at each scrape); a runtime has it. */
  topics?(): Promise<TopicView[]>;
}

/**
 * Registers the runtime's own figures in `registry`, read from `runtime.stats` at each scrape:
 * sagas by state, the group commit's transactions and units (units ÷ transactions is the batch
 * size, the figure that says how well commits amortise under load), and each subscription's
 * handled and dead-lettered records. The counters are the runtime's since it was made.
 */
export function registerRuntimeMetrics(registry: Registry, prefix: string, runtime: ExposableRuntime): void {
  // A counter whose value the runtime keeps: set at each scrape rather than incremented.
  const counter = (name: string, help: string, labelNames: string[], collect: Collect) =>
    scraped('counter', registry, `${prefix}${name}`, help, labelNames, collect);

  new Gauge({
    name: `${prefix}runtime_sagas`,
    help: 'Sagas in this process, by state: active (running here), sleeping, queued (waiting for a slot).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const stats = runtime.stats;
      this.set({ state: 'active' }, stats.activeSagas);
      this.set({ state: 'sleeping' }, stats.sleepingSagas);
      this.set({ state: 'queued' }, stats.queuedSagas);
    },
  });
  const commitCounters: ReadonlyArray<[keyof RuntimeStats['commits'], string, string]> = [
    ['transactions', 'transactions', 'Transactions the group commit ran (each commits every unit it took).'],
    [
      'units',
      'units',
      'Units committed by the group commit (entity commands, journal entries, record batches).',
    ],
    [
      'failedUnits',
      'failed_units',
      'Units that failed and left nothing behind (their callers got the error).',
    ],
    [
      'failedTransactions',
      'failed_transactions',
      'Transactions that failed as a whole (the commit itself, a fence): all their units failed.',
    ],
    [
      'retriedTransactions',
      'retried_transactions',
      'Transactions rolled back because one unit threw, and run again with a savepoint per unit.',
    ],
  ];
  for (const [field, name, help] of commitCounters) {
    counter(`runtime_commit_${name}_total`, help, [], (set) => set(runtime.stats.commits[field]));
  }
  const subscriptionCounters: ReadonlyArray<['handled' | 'deadLettered', string, string]> = [
    ['handled', 'handled', 'Records each subscription handled.'],
    ['deadLettered', 'dead_lettered', 'Records each subscription gave up on and dead-lettered.'],
  ];
  registerStorageMetrics(registry, prefix, runtime, counter);
  registerMeasurements(registry, prefix, runtime);
  for (const [field, name, help] of subscriptionCounters) {
    counter(`runtime_subscription_${name}_total`, help, ['subscription'], (set) => {
      for (const [subscription, stats] of Object.entries(runtime.stats.subscriptions)) {
        set(stats[field], { subscription });
      }
    });
  }
}

/** What retention removed, and the latest storage sample (per table, per kind, growth). */
function registerStorageMetrics(
  registry: Registry,
  prefix: string,
  runtime: ExposableRuntime,
  counter: (name: string, help: string, labelNames: string[], collect: Collect) => void,
): void {
  counter(
    'retention_removed_total',
    'What retention deleted, by kind: sagas (record and journal), journals (the outcome kept), idempotency_keys, entities (idle past their period).',
    ['kind'],
    (set) => {
      const { sagas, journals, idempotencyKeys, entities } = runtime.stats.retention;
      set(sagas, { kind: 'sagas' });
      set(entities, { kind: 'entities' });
      set(journals, { kind: 'journals' });
      set(idempotencyKeys, { kind: 'idempotency_keys' });
    },
  );
  counter(
    'retention_folded_journals_total',
    "Ended sagas whose journal retention folded into one compressed value on their record (nothing deleted; the saga's journal reads the same).",
    [],
    (set) => set(runtime.stats.retention.foldedJournals),
  );
  counter(
    'retention_reclaimed_bytes_total',
    'Bytes retention gave back to the file system (SQLite incremental vacuum).',
    [],
    (set) => set(runtime.stats.retention.reclaimedBytes),
  );
  counter('retention_passes_total', 'Retention passes run (on the leader).', [], (set) =>
    set(runtime.stats.retention.passes),
  );
  // Storage gauges: absent until the leader's first sample.
  const gauge = (name: string, help: string, labelNames: string[], collect: Collect) =>
    scraped('gauge', registry, `${prefix}${name}`, help, labelNames, (set) => {
      if (runtime.stats.retention.storage !== undefined) collect(set);
    });
  gauge(
    'storage_table_bytes',
    'Bytes per table with its indexes, at the latest sample (on the leader).',
    ['table'],
    (set) => {
      for (const { table, bytes } of runtime.stats.retention.storage!.tables) set(bytes, { table });
    },
  );
  gauge(
    'storage_kind_bytes',
    'Bytes per kind of data (journals, sagas, entities, log, idempotency_keys, timers, other).',
    ['kind'],
    (set) => {
      for (const [kind, bytes] of Object.entries(runtime.stats.retention.storage!.kinds))
        set(bytes, { kind });
    },
  );
  gauge('storage_total_bytes', 'Bytes the database files hold in all, free space included.', [], (set) =>
    set(runtime.stats.retention.storage!.totalBytes),
  );
  gauge('storage_free_bytes', 'Free space inside the database files, reused before they grow.', [], (set) =>
    set(runtime.stats.retention.storage!.freeBytes),
  );
  gauge(
    'storage_growth_bytes_per_second',
    'How fast the total grew between the last two samples.',
    [],
    (set) => set(runtime.stats.retention.storage!.growthBytesPerSecond),
  );
}

type Collect = (set: Setter) => void;

/** A metric read from the runtime at each scrape: reset, then set from what `collect` gives. */
function scraped(
  type: 'counter' | 'gauge',
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  collect: Collect,
): void {
  const configuration = { name, help, labelNames, registers: [registry] };
  if (type === 'counter') {
    new Counter({
      ...configuration,
      collect() {
        this.reset();
        collect((value, labels = {}) => this.inc(labels, value));
      },
    });
  } else {
    new Gauge({
      ...configuration,
      collect() {
        this.reset();
        collect((value, labels = {}) => this.set(labels, value));
      },
    });
  }
}

type Setter = (value: number, labels?: Record<string, string>) => void;

/** Seconds: a saga lasts from milliseconds (all local) to days (it sleeps). */
const SAGA_SECONDS_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86_400,
];
const COMMIT_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const BATCH_UNITS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000];

/**
 * Histograms and counters fed by the runtime's measurements as they happen (saga latency, step
 * attempts and failures, compensations, the group commit's batch size and commit time), and the
 * consumer lag per group and partition, read at each scrape.
 */
function registerMeasurements(registry: Registry, prefix: string, runtime: ExposableRuntime): void {
  const registers = [registry];
  const sagaSeconds = new Histogram({
    name: `${prefix}saga_duration_seconds`,
    help: 'Time from a saga’s creation to its end, by saga type and outcome (completed, compensated, failed, cancelled).',
    labelNames: ['type', 'outcome'],
    buckets: SAGA_SECONDS_BUCKETS,
    registers,
  });
  const attempts = new Counter({
    name: `${prefix}saga_step_attempts_total`,
    help: 'Step attempts by saga type, step and outcome: succeeded, retried (failed, runs again), failed (for good).',
    labelNames: ['type', 'step', 'outcome'],
    registers,
  });
  const compensations = new Counter({
    name: `${prefix}saga_compensations_total`,
    help: 'Compensations run, by saga type and outcome (succeeded, failed).',
    labelNames: ['type', 'outcome'],
    registers,
  });
  const batchUnits = new Histogram({
    name: `${prefix}commit_batch_units`,
    help: 'Units per group-commit transaction (the batch size).',
    buckets: BATCH_UNITS_BUCKETS,
    registers,
  });
  const commitSeconds = new Histogram({
    name: `${prefix}commit_duration_seconds`,
    help: 'Time one group-commit transaction took, by result (ok, failed).',
    labelNames: ['result'],
    buckets: COMMIT_SECONDS_BUCKETS,
    registers,
  });
  runtime.onMeasurement?.((measurement) => {
    switch (measurement.kind) {
      case 'saga-ended':
        sagaSeconds.observe(
          { type: measurement.sagaType, outcome: measurement.outcome },
          measurement.durationMs / 1000,
        );
        break;
      case 'step-attempt':
        attempts.inc({ type: measurement.sagaType, step: measurement.step, outcome: measurement.outcome });
        break;
      case 'compensation':
        compensations.inc({ type: measurement.sagaType, outcome: measurement.outcome });
        break;
      case 'commit':
        batchUnits.observe(measurement.units);
        commitSeconds.observe({ result: measurement.ok ? 'ok' : 'failed' }, measurement.durationMs / 1000);
        break;
    }
  });
  const topics = runtime.topics?.bind(runtime);
  if (topics === undefined) return;
  new Gauge({
    name: `${prefix}consumer_lag_records`,
    help: 'Records a subscription’s consumer group is behind the end of a partition, by topic, group and partition.',
    labelNames: ['topic', 'group', 'partition'],
    registers,
    async collect() {
      this.reset();
      for (const topic of await topics().catch(() => [])) {
        for (const partition of topic.partitions) {
          for (const group of partition.groups) {
            this.set(
              { topic: topic.topic, group: group.group, partition: String(partition.partition) },
              group.lag,
            );
          }
        }
      }
    },
  });
}
