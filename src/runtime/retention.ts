import { ValidationError } from '../errors.ts';
import { integerOption, invalidOption } from '../resilience/options.ts';
import type { StorageReport, Store, StoreTransaction } from '../store/types.ts';
import { requireRuntimeName } from './options.ts';
import type { SingletonContext, SingletonDefinition } from './singletons.ts';

/** A retention period: milliseconds (0: as soon as a pass sees it), or `'forever'`. */
export type RetentionPeriod = number | 'forever';

/** What finished work the runtime deletes, and when (docs/runtime.md, "Retention"). */
export interface RetentionOptions {
  /**
   * How long a finished saga (completed, compensated, failed, cancelled) keeps its journal and record
   * after it ended. `0` deletes the journal on the next pass and keeps only the outcome (the
   * record, for `outcomeMs`); `'forever'` keeps both. @default 86400000 (1 day)
   */
  sagaMs?: RetentionPeriod;
  /** Per saga type, instead of `sagaMs` (e.g. `{ OrderSaga: 0, Audit: 'forever' }`). */
  sagaMsByType?: Readonly<Record<string, RetentionPeriod>>;
  /**
   * Entity types whose entities are deleted once not written for this long (ms), like an order
   * long past delivery. Types not named here are kept until a command deletes them. Retention
   * scans each named type in id order, `entityScanRowsPerPass` a pass, so an idle entity goes
   * within one scan of the type after its period.
   */
  entityMsByType?: Readonly<Record<string, number>>;
  /** Entities of each type in `entityMsByType` looked at per pass. 1000 to 10000000. @default 20000 */
  entityScanRowsPerPass?: number;
  /**
   * How long at least a finished saga's record (its outcome) is kept, whatever its period: a
   * retried start with its id within this time is answered with that outcome instead of
   * starting the saga again: keep it above how long clients retry. 1000 to 3153600000000.
   * @default 86400000 (1 day)
   */
  outcomeMs?: number;
  /**
   * Retention of the dead-letter topic when the runtime creates it (the log deletes its
   * records after this). @default 1209600000 (14 days)
   */
  deadLetterMs?: RetentionPeriod;
  /** Pause between passes. 1000 to 3600000. @default 10000 */
  intervalMs?: number;
  /** Rows (sagas, keys) one transaction deletes at most. 1 to 1000. @default 100 */
  batchSize?: number;
  /** Batches one pass runs at most, before it waits for the next: bounds a pass after downtime. 1 to 100000. @default 1000 */
  maxBatchesPerPass?: number;
  /** Free pages given back to the file system per pass (SQLite's incremental vacuum). 0 to 100000. @default 2048 (8 MB) */
  reclaimPagesPerPass?: number;
  /** How often storage per table is measured for `/metrics` (0: never). 0 to 86400000. @default 60000 */
  storageSampleIntervalMs?: number;
  /** False: nothing is ever deleted. @default true */
  enabled?: boolean;
}

export interface NormalizedRetention {
  readonly sagaMs: RetentionPeriod;
  readonly sagaMsByType: ReadonlyMap<string, RetentionPeriod>;
  readonly entityMsByType: ReadonlyMap<string, number>;
  readonly entityScanRowsPerPass: number;
  readonly outcomeMs: number;
  readonly deadLetterMs: RetentionPeriod;
  readonly intervalMs: number;
  readonly batchSize: number;
  readonly maxBatchesPerPass: number;
  readonly reclaimPagesPerPass: number;
  readonly storageSampleIntervalMs: number;
  readonly enabled: boolean;
}

const dayMs = 86_400_000;
/** 100 years: longer is `'forever'`. */
const maxPeriodMs = 3_153_600_000_000;

function period(option: string, value: unknown, fallback: RetentionPeriod): RetentionPeriod {
  if (value === 'forever') return value;
  return integerOption(option, value, fallback === 'forever' ? 0 : fallback, 0, maxPeriodMs);
}

function entityPeriods(given: unknown): Map<string, number> {
  const periods = new Map<string, number>();
  if (given === undefined) return periods;
  if (typeof given !== 'object' || given === null)
    invalidOption('retention.entityMsByType', 'an object', given);
  for (const [type, value] of Object.entries(given)) {
    requireRuntimeName(`An entity type in 'retention.entityMsByType'`, type);
    periods.set(type, integerOption(`retention.entityMsByType.${type}`, value, 0, 1000, maxPeriodMs));
  }
  return periods;
}

export function normalizeRetention(options: RetentionOptions | undefined): NormalizedRetention {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new ValidationError(`'retention' must be an object such as { sagaMs: 86400000 }`);
  }
  const byType = new Map<string, RetentionPeriod>();
  const given = options?.sagaMsByType ?? {};
  if (typeof given !== 'object' || given === null)
    invalidOption('retention.sagaMsByType', 'an object', given);
  for (const [type, value] of Object.entries(given)) {
    requireRuntimeName(`A saga type in 'retention.sagaMsByType'`, type);
    byType.set(type, period(`retention.sagaMsByType.${type}`, value, 0));
  }
  const enabled = options?.enabled ?? true;
  if (typeof enabled !== 'boolean') invalidOption('retention.enabled', 'a boolean', enabled);
  return {
    sagaMs: period('retention.sagaMs', options?.sagaMs, dayMs),
    sagaMsByType: byType,
    entityMsByType: entityPeriods(options?.entityMsByType),
    entityScanRowsPerPass: integerOption(
      'retention.entityScanRowsPerPass',
      options?.entityScanRowsPerPass,
      20_000,
      1000,
      10_000_000,
    ),
    outcomeMs: integerOption('retention.outcomeMs', options?.outcomeMs, dayMs, 1000, maxPeriodMs),
    deadLetterMs: period('retention.deadLetterMs', options?.deadLetterMs, 14 * dayMs),
    intervalMs: integerOption('retention.intervalMs', options?.intervalMs, 10_000, 1000, 3_600_000),
    batchSize: integerOption('retention.batchSize', options?.batchSize, 100, 1, 1000),
    maxBatchesPerPass: integerOption(
      'retention.maxBatchesPerPass',
      options?.maxBatchesPerPass,
      1000,
      1,
      100_000,
    ),
    reclaimPagesPerPass: integerOption(
      'retention.reclaimPagesPerPass',
      options?.reclaimPagesPerPass,
      2048,
      0,
      100_000,
    ),
    storageSampleIntervalMs: integerOption(
      'retention.storageSampleIntervalMs',
      options?.storageSampleIntervalMs,
      60_000,
      0,
      dayMs,
    ),
    enabled,
  };
}

/** What retention has removed since the runtime started, and the latest storage sample. */
export interface RetentionStats {
  /** Finished sagas deleted with their journals (records). */
  readonly sagas: number;
  /** Finished sagas whose journal was deleted while their outcome is kept. */
  readonly journals: number;
  /** Finished sagas whose journal was folded into one compressed value on their record. */
  readonly foldedJournals: number;
  /** Expired Idempotency-Key records deleted. */
  readonly idempotencyKeys: number;
  /** Entities deleted after being idle for their type's period. */
  readonly entities: number;
  /** Bytes given back to the file system (SQLite's incremental vacuum). */
  readonly reclaimedBytes: number;
  /** Passes run. */
  readonly passes: number;
  /** The latest storage sample, when one was taken, with when and its growth since the one before. */
  readonly storage?: StorageSample;
}

export interface StorageSample extends StorageReport {
  readonly atMs: number;
  /** Bytes per kind of data: journals, sagas, entities, log, idempotency_keys, timers, other. */
  readonly kinds: Readonly<Record<StorageKind, number>>;
  /** Bytes per second the total grew by since the sample before (negative: shrank); 0 for the first. */
  readonly growthBytesPerSecond: number;
}

export type StorageKind = 'journals' | 'sagas' | 'entities' | 'log' | 'idempotency_keys' | 'timers' | 'other';

const kindOfTable: Readonly<Record<string, StorageKind>> = {
  store_saga_journal: 'journals',
  store_sagas: 'sagas',
  store_entities: 'entities',
  store_idempotency_keys: 'idempotency_keys',
  store_timers: 'timers',
};

/** Which kind of data a table holds (the log's tables, on SQLite, are the log). */
export function storageKindOf(table: string): StorageKind {
  const name = table.slice(table.lastIndexOf('.') + 1).replaceAll('"', '');
  return kindOfTable[name] ?? (name.startsWith('log_') ? 'log' : 'other');
}

function byKind(report: StorageReport): Record<StorageKind, number> {
  const kinds: Record<StorageKind, number> = {
    journals: 0,
    sagas: 0,
    entities: 0,
    log: 0,
    idempotency_keys: 0,
    timers: 0,
    other: 0,
  };
  for (const { table, bytes } of report.tables) kinds[storageKindOf(table)] += bytes;
  return kinds;
}

interface Counters {
  sagas: number;
  journals: number;
  foldedJournals: number;
  idempotencyKeys: number;
  entities: number;
  reclaimedBytes: number;
  passes: number;
  storage?: StorageSample;
}

/** What the retention singleton needs from the runtime. */
export interface RetentionHost {
  readonly store: Store;
  now(): number;
  /** The saga types registered on this runtime. */
  sagaTypes(): Iterable<string>;
}

/**
 * The runtime's retention: one singleton (on the leader of the cluster, or the embedded
 * runtime) that, every `intervalMs`, deletes finished sagas and journals past their period and
 * expired Idempotency-Key records, in batches of `batchSize` rows, each one unit of the group
 * commit (so it shares the transactions the runtime commits anyway and never holds the writer
 * for long), then gives freed pages back and samples storage.
 */
export class Retention {
  readonly #options: NormalizedRetention;
  readonly #host: RetentionHost;
  readonly #counters: Counters = {
    sagas: 0,
    journals: 0,
    foldedJournals: 0,
    idempotencyKeys: 0,
    entities: 0,
    reclaimedBytes: 0,
    passes: 0,
  };
  /** Where each entity type's scan goes on from ('' from the start); lost with leadership, harmlessly. */
  readonly #entityScans = new Map<string, string>();
  #lastSampleMs = Number.NEGATIVE_INFINITY;

  constructor(options: NormalizedRetention, host: RetentionHost) {
    this.#options = options;
    this.#host = host;
  }

  get stats(): RetentionStats {
    return { ...this.#counters };
  }

  /** The retention period of saga type `type`. */
  periodOf(type: string): RetentionPeriod {
    return this.#options.sagaMsByType.get(type) ?? this.#options.sagaMs;
  }

  singleton(): SingletonDefinition {
    return {
      name: 'meridian.retention',
      run: async (ctx) => {
        while (!ctx.signal.aborted) {
          await ctx.wait(this.#options.intervalMs);
          if (ctx.signal.aborted) return;
          await this.pass(ctx);
        }
      },
    };
  }

  /** One pass: everything past its period, in bounded batches. */
  async pass(ctx: Pick<SingletonContext, 'signal' | 'transaction'>): Promise<void> {
    const budget = { batches: this.#options.maxBatchesPerPass };
    const nowMs = this.#host.now();
    const types = new Set([...this.#host.sagaTypes(), ...this.#options.sagaMsByType.keys()]);
    for (const type of types) {
      const sagaMs = this.periodOf(type);
      if (sagaMs === 'forever') continue;
      const recordMs = Math.max(sagaMs, this.#options.outcomeMs);
      const request = { type, limit: this.#options.batchSize };
      // A period longer than the clock has run (a test clock near 0) has nothing to delete yet.
      if (nowMs - recordMs > 0) {
        this.#counters.sagas += await this.#batches(ctx, budget, (tx) =>
          tx.sagas.deleteEnded({ ...request, endedBefore: nowMs - recordMs }),
        );
      }
      if (sagaMs < recordMs && nowMs - sagaMs > 0) {
        this.#counters.journals += await this.#batches(ctx, budget, (tx) =>
          tx.sagas.deleteEndedJournals({ ...request, endedBefore: nowMs - sagaMs }),
        );
      }
    }
    // What is still kept of each ended saga's journal takes one compressed value instead of a row an entry.
    this.#counters.foldedJournals += await this.#batches(ctx, budget, (tx) => this.#fold(tx, types, nowMs));
    this.#counters.idempotencyKeys += await this.#batches(ctx, budget, (tx) =>
      tx.idempotency.expire(nowMs, this.#options.batchSize),
    );
    for (const [type, idleMs] of this.#options.entityMsByType) {
      if (nowMs - idleMs > 0) this.#counters.entities += await this.#scanEntities(ctx, type, nowMs - idleMs);
    }
    if (this.#options.reclaimPagesPerPass > 0 && !ctx.signal.aborted) {
      this.#counters.reclaimedBytes += await this.#host.store.reclaim(this.#options.reclaimPagesPerPass);
    }
    this.#counters.passes++;
    await this.sample(nowMs);
  }

  /** Folds the journals of up to `batchSize` sagas that ended before `nowMs`, of any of `types`, in one transaction. */
  async #fold(tx: StoreTransaction, types: Iterable<string>, nowMs: number): Promise<number> {
    let folded = 0;
    for (const type of types) {
      const limit = this.#options.batchSize - folded;
      if (limit === 0) break;
      folded += await tx.sagas.foldEndedJournals({ type, endedBefore: nowMs, limit });
    }
    return folded;
  }

  /**
   * Goes on with the scan of `type`'s entities, deleting those idle since before `idleBefore`,
   * up to `entityScanRowsPerPass` looked at (a thousand per transaction); a scan that reaches
   * the last id starts again from the first on the next pass.
   */
  async #scanEntities(
    ctx: Pick<SingletonContext, 'signal' | 'transaction'>,
    type: string,
    idleBefore: number,
  ): Promise<number> {
    const scanRows = 1000;
    let deleted = 0;
    for (
      let looked = 0;
      looked < this.#options.entityScanRowsPerPass && !ctx.signal.aborted;
      looked += scanRows
    ) {
      const afterId = this.#entityScans.get(type) ?? '';
      const step = await ctx.transaction((tx) =>
        tx.entities.deleteIdle({ type, afterId, idleBefore, limit: scanRows }),
      );
      deleted += step.deleted;
      this.#entityScans.set(type, step.lastId ?? '');
      if (step.lastId === null) break;
    }
    return deleted;
  }

  /** Takes a storage sample when the last one is older than `storageSampleIntervalMs`. */
  async sample(nowMs: number, force = false): Promise<void> {
    const every = this.#options.storageSampleIntervalMs;
    if (!force && (every === 0 || nowMs - this.#lastSampleMs < every)) return;
    const report = await this.#host.store.storage();
    const previous = this.#counters.storage;
    const seconds = previous === undefined ? 0 : (nowMs - previous.atMs) / 1000;
    this.#counters.storage = {
      ...report,
      atMs: nowMs,
      kinds: byKind(report),
      growthBytesPerSecond:
        previous === undefined || seconds <= 0 ? 0 : (report.totalBytes - previous.totalBytes) / seconds,
    };
    this.#lastSampleMs = nowMs;
  }

  /** Runs `batch` (one transaction each) until it deletes less than a full batch; returns the total. */
  async #batches(
    ctx: Pick<SingletonContext, 'signal' | 'transaction'>,
    budget: { batches: number },
    batch: (tx: StoreTransaction) => Promise<number>,
  ): Promise<number> {
    let total = 0;
    while (budget.batches > 0 && !ctx.signal.aborted) {
      budget.batches--;
      const deleted = await ctx.transaction(batch);
      total += deleted;
      if (deleted < this.#options.batchSize) break;
    }
    return total;
  }
}
