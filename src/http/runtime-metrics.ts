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
  const gauge = (name: string, help: string, labelNames: string[], collect: (gauge: Gauge) => void) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect() {
        collect(this);
      },
    });
  // A counter whose value the runtime keeps: set at each scrape rather than incremented.
  const counter = (name: string, help: string, labelNames: string[], collect: (set: Setter) => void) =>
    new Counter({
      name: `${prefix}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        collect((value, labels = {}) => this.inc(labels, value));
      },
    });

  gauge(
    'runtime_sagas',
    'Sagas in this process, by state: active (running here), sleeping, queued (waiting for a slot).',
    ['state'],
    (metric) => {
      const stats = runtime.stats;
      metric.set({ state: 'active' }, stats.activeSagas);
      metric.set({ state: 'sleeping' }, stats.sleepingSagas);
      metric.set({ state: 'queued' }, stats.queuedSagas);
    },
  );
  const commits = (pick: (stats: RuntimeStats['commits']) => number) => (set: Setter) =>
    set(pick(runtime.stats.commits));
  counter(
    'runtime_commit_transactions_total',
    'Transactions the group commit ran (each commits every unit it took).',
    [],
    commits((stats) => stats.transactions),
  );
  counter(
    'runtime_commit_units_total',
    'Units committed by the group commit (entity commands, journal entries, record batches).',
    [],
    commits((stats) => stats.units),
  );
  counter(
    'runtime_commit_failed_units_total',
    'Units that failed and left nothing behind (their callers got the error).',
    [],
    commits((stats) => stats.failedUnits),
  );
  counter(
    'runtime_commit_failed_transactions_total',
    'Transactions that failed as a whole (the commit itself, a fence): all their units failed.',
    [],
    commits((stats) => stats.failedTransactions),
  );
  counter(
    'runtime_commit_retried_transactions_total',
    'Transactions rolled back because one unit threw, and run again with a savepoint per unit.',
    [],
    commits((stats) => stats.retriedTransactions),
  );
  counter(
    'runtime_subscription_handled_total',
    'Records each subscription handled.',
    ['subscription'],
    (set) => {
      for (const [subscription, stats] of Object.entries(runtime.stats.subscriptions)) {
        set(stats.handled, { subscription });
      }
    },
  );
  counter(
    'runtime_subscription_dead_lettered_total',
    'Records each subscription gave up on and dead-lettered.',
    ['subscription'],
    (set) => {
      for (const [subscription, stats] of Object.entries(runtime.stats.subscriptions)) {
        set(stats.deadLettered, { subscription });
      }
    },
  );
}

type Setter = (value: number, labels?: Record<string, string>) => void;
