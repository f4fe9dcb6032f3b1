import { Counter, Gauge, type Registry } from 'prom-client';
import type { RuntimeStats } from '../runtime/index.ts';

/** What `exposeRuntime` reads: a runtime, or anything with the same stats. */
export interface ExposableRuntime {
  readonly stats: RuntimeStats;
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
