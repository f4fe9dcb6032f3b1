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
  for (const [field, name, help] of subscriptionCounters) {
    counter(`runtime_subscription_${name}_total`, help, ['subscription'], (set) => {
      for (const [subscription, stats] of Object.entries(runtime.stats.subscriptions)) {
        set(stats[field], { subscription });
      }
    });
  }
}

type Setter = (value: number, labels?: Record<string, string>) => void;
