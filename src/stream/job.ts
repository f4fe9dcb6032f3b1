import { assert } from '../assert.ts';
import { ClosedError, ValidationError } from '../errors.ts';
import type { Log, LogRecord, ProducerRecord } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';
import { requireName } from '../store/limits.ts';
import type { Json, Store, StoreTransaction } from '../store/types.ts';
import { type Clock, systemClock, systemTimers, type Timers } from '../time.ts';
import type { CompileContext, Push, TopicSource } from './dataflow.ts';
import { JobStateRows } from './job-state.ts';
import { publishAll } from './publish.ts';
import type { Sink, SinkScope } from './sinks.ts';
import { type Table, TableState } from './table.ts';
import { WatermarkTracker } from './watermarks.ts';
import type { WindowOperator } from './window-operator.ts';

export interface StreamJobOptions {
  /** Names the job's committed state: a restarted job with the same name resumes it. */
  readonly name: string;
  // biome-ignore lint/suspicious/noExplicitAny: a job runs a source of any value type
  readonly source: TopicSource<any>;
  readonly store: Store;
  readonly log: Log;
  /** @default systemClock */
  readonly clock?: Clock;
  /** What the live loop waits on between polls. @default systemTimers */
  readonly timers?: Timers;
  /** Records read from one partition per round. 1 to 10000. @default 2000 */
  readonly maxRecordsPerRead?: number;
  /**
   * Records processed between two commits at most (group commit: the state, the offsets and
   * every output of that many records in one transaction). 1 to 1000000. @default 50000
   */
  readonly maxRecordsPerTransaction?: number;
  /**
   * How long a fired window's result may wait for its commit (ms): once the oldest uncommitted
   * result is this old, the job commits after the current round instead of filling the
   * transaction. Bounds result latency under load. 1 to 60000. @default 50
   */
  readonly maxResultDelayMs?: number;
  /** How long the live loop waits when every partition is read to its end (ms). 1 to 10000. @default 20 */
  readonly pollIntervalMs?: number;
  /** Called after each commit, with what it committed (for metrics and latency measurement). */
  readonly onCommit?: (event: CommitEvent) => void;
  /**
   * The input partitions this job reads. @default every partition of the source's topic. A
   * partitioned job (openPartitionedStreamJob) runs one job per partition it is assigned.
   */
  readonly partitions?: readonly number[];
  /**
   * Runs inside each commit's transaction, last: throws to refuse the commit (a partitioned job
   * checks there that this node still holds its partitions' epochs).
   */
  readonly fence?: (tx: StoreTransaction) => Promise<void>;
  /** The work partition stamped on the outbox rows of published records (the relay that owns it sends them). @default 0 */
  readonly outboxPartition?: number;
}

export interface CommitEvent {
  readonly records: number;
  /** Clock.monotonicNow() readings of when each window result in this commit fired. */
  readonly firedAtMs: readonly number[];
  readonly committedAtMs: number;
}

export interface StreamMetrics {
  readonly recordsIn: number;
  readonly lateRecords: number;
  readonly invalidRecords: number;
  readonly openWindows: number;
  /** Characters of the last committed state snapshot. */
  readonly stateBytes: number;
  readonly transactions: number;
  readonly watermarkMs: number;
  readonly idlePartitions: readonly number[];
  /** Next offset to read, per input partition the job reads (see `partitions`). */
  readonly positions: readonly number[];
  /** Row versions held by the tables the job joins with (their state size). */
  readonly tableVersions: number;
  /** Table changes left out because they were older than the table's history retention when read. */
  readonly tooOldTableChanges: number;
}

interface Snapshot {
  readonly positions: number[];
  readonly sequence: number;
  readonly watermarks: Json;
  readonly operators: Json[];
  /** The joined tables' states, in the order the dataflow first used them (absent before joins existed). */
  readonly tables?: Json[];
  readonly recordsIn: number;
  readonly invalidRecords: number;
}

/**
 * Runs a dataflow over a topic with exactly-once results. The job reads its partitions in
 * rounds (up to `maxRecordsPerRead` from each, in partition order), pushes every record through
 * the dataflow, and commits in one store transaction: the window state, the next offset of each
 * partition, and what the sinks wrote or published. On SQLite the log shares the store's
 * database, so appends to output topics are part of that same transaction. After a crash the job
 * reloads the last commit and reads on from its offsets: the rounds it repeats are the same
 * rounds (commits fall between rounds), so the output is the same, byte for byte.
 *
 * Backpressure is built in: nothing is read while a commit is running, and at most
 * `maxRecordsPerTransaction` records' results wait in memory, so a slow store or sink slows
 * consumption instead of growing a buffer.
 */
export class StreamJob {
  readonly name: string;
  // biome-ignore lint/suspicious/noExplicitAny: see StreamJobOptions.source
  readonly #source: TopicSource<any>;
  readonly #store: Store;
  readonly #log: Log;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #maxRecordsPerRead: number;
  readonly #maxRecordsPerTransaction: number;
  readonly #pollIntervalMs: number;
  readonly #maxResultDelayMs: number;
  readonly #onCommit: ((event: CommitEvent) => void) | undefined;
  readonly #state: JobStateRows;
  readonly #buffers = new Map<Sink<unknown>, unknown[]>();
  readonly #eventOperators: WindowOperator<unknown, Json, unknown>[] = [];
  readonly #processingOperators: WindowOperator<unknown, Json, unknown>[] = [];
  readonly #operators: WindowOperator<unknown, Json, unknown>[] = [];
  readonly #tables = new Map<Table<Json>, TableState<Json>>();
  #push: Push<unknown> = () => undefined;
  #tracker: WatermarkTracker | undefined;
  #positions: number[] = [];
  /** The input partition read at each index of #positions (the watermark tracker's indexes too). */
  #inputPartitions: number[] = [];
  readonly #onlyPartitions: readonly number[] | undefined;
  readonly #fence: ((tx: StoreTransaction) => Promise<void>) | undefined;
  readonly #outboxPartition: number;
  #sequence = 0;
  #processingNowMs = 0;
  #recordsIn = 0;
  #invalidRecords = 0;
  #uncommittedRecords = 0;
  #transactions = 0;
  #firedAtMs: number[] = [];
  /** The watermark the event-time windows were last moved to. */
  #watermarkMs = Number.NEGATIVE_INFINITY;
  #opened = false;
  #failed: Error | undefined;
  #stopped = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(options: StreamJobOptions) {
    this.name = requireName('name', options.name);
    this.#source = options.source;
    this.#store = options.store;
    this.#log = options.log;
    if (options.store.dialect === 'sqlite' && options.log.backend !== 'sqlite') {
      throw new ValidationError(
        `Stream job '${this.name}': on the SQLite store the log must be the SQLite log on the same database (one transaction): current log is '${options.log.backend}'`,
      );
    }
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#maxRecordsPerRead = integerOption('maxRecordsPerRead', options.maxRecordsPerRead, 2000, 1, 10_000);
    this.#maxRecordsPerTransaction = integerOption(
      'maxRecordsPerTransaction',
      options.maxRecordsPerTransaction,
      50_000,
      1,
      1_000_000,
    );
    this.#pollIntervalMs = integerOption('pollIntervalMs', options.pollIntervalMs, 20, 1, 10_000);
    this.#maxResultDelayMs = integerOption('maxResultDelayMs', options.maxResultDelayMs, 50, 1, 60_000);
    this.#onCommit = options.onCommit;
    this.#onlyPartitions = options.partitions === undefined ? undefined : [...options.partitions];
    this.#fence = options.fence;
    this.#outboxPartition = options.outboxPartition ?? 0;
    this.#state = new JobStateRows(this.name);
  }

  /** Compiles the dataflow and restores the last committed state (or starts from the earliest offsets). */
  async open(): Promise<void> {
    assert(!this.#opened, 'a stream job opens once');
    const { topic, outOfOrdernessMs, idleTimeoutMs } = this.#source.options;
    const topicPartitions = (await this.#log.describeTopic(topic)).partitions;
    this.#inputPartitions = this.#inputPartitionsOf(topicPartitions);
    const partitions = this.#inputPartitions.length;
    this.#tracker = new WatermarkTracker(partitions, { outOfOrdernessMs, idleTimeoutMs, clock: this.#clock });
    this.#push = this.#source.compile(this.#compileContext());
    const snapshot = (await this.#state.load(this.#store)) as Snapshot | null;
    if (snapshot === null) {
      this.#positions = [];
      for (const partition of this.#inputPartitions) {
        this.#positions.push((await this.#log.offsets(topic, partition)).start);
      }
    } else {
      this.#restore(snapshot, partitions);
    }
    this.#processingNowMs = this.#clock.now();
    this.#opened = true;
  }

  #inputPartitionsOf(topicPartitions: number): number[] {
    if (this.#onlyPartitions === undefined)
      return Array.from({ length: topicPartitions }, (_, index) => index);
    for (const partition of this.#onlyPartitions) {
      if (!Number.isInteger(partition) || partition < 0 || partition >= topicPartitions) {
        throw new ValidationError(
          `Stream job '${this.name}': 'partitions' must hold partitions of '${this.#source.options.topic}' (0 to ${topicPartitions - 1}): current value has ${String(partition).slice(0, 20)}`,
        );
      }
    }
    return [...this.#onlyPartitions];
  }

  #restore(snapshot: Snapshot, partitions: number): void {
    if (snapshot.operators.length !== this.#operators.length) {
      throw new ValidationError(
        `Stream job '${this.name}' has ${this.#operators.length} window operators but its committed state has ${snapshot.operators.length}: a changed dataflow needs a new job name`,
      );
    }
    const tables = snapshot.tables ?? [];
    if (tables.length !== this.#tables.size) {
      throw new ValidationError(
        `Stream job '${this.name}' joins ${this.#tables.size} tables but its committed state has ${tables.length}: a changed dataflow needs a new job name`,
      );
    }
    [...this.#tables.values()].forEach((table, index) => {
      table.restore(tables[index]!);
    });
    this.#positions = snapshot.positions.slice(0, partitions);
    while (this.#positions.length < partitions) this.#positions.push(0);
    this.#sequence = snapshot.sequence;
    this.#recordsIn = snapshot.recordsIn;
    this.#invalidRecords = snapshot.invalidRecords;
    this.#tracker!.restore(snapshot.watermarks);
    snapshot.operators.forEach((state, index) => {
      this.#operators[index]!.restore(state);
    });
    this.#watermarkMs = this.#tracker!.watermarkMs;
  }

  #compileContext(): CompileContext {
    return {
      sequence: () => this.#sequence,
      processingNowMs: () => this.#processingNowMs,
      buffer: <T>(sink: Sink<T>) => {
        let buffer = this.#buffers.get(sink as Sink<unknown>);
        if (buffer === undefined) {
          buffer = [];
          this.#buffers.set(sink as Sink<unknown>, buffer);
        }
        return buffer as T[];
      },
      fired: () => {
        this.#firedAtMs.push(this.#clock.monotonicNow());
      },
      operator: (operator, time) => {
        this.#operators.push(operator);
        (time === 'event' ? this.#eventOperators : this.#processingOperators).push(operator);
      },
      table: <V extends Json>(table: Table<V>) => {
        let state = this.#tables.get(table as Table<Json>);
        if (state === undefined) {
          state = new TableState(table as Table<Json>);
          this.#tables.set(table as Table<Json>, state);
        }
        return state as unknown as TableState<V>;
      },
    };
  }

  get metrics(): StreamMetrics {
    let openWindows = 0;
    let lateRecords = 0;
    for (const operator of this.#operators) {
      openWindows += operator.openWindows;
      lateRecords += operator.lateRecords;
    }
    return {
      recordsIn: this.#recordsIn,
      lateRecords,
      invalidRecords: this.#invalidRecords,
      openWindows,
      stateBytes: this.#state.lastBytes,
      transactions: this.#transactions,
      watermarkMs: this.#tracker?.watermarkMs ?? Number.NEGATIVE_INFINITY,
      idlePartitions: this.#tracker?.idlePartitions() ?? [],
      positions: [...this.#positions],
      tableVersions: [...this.#tables.values()].reduce((total, table) => total + table.versions, 0),
      tooOldTableChanges: [...this.#tables.values()].reduce((total, table) => total + table.tooOldChanges, 0),
    };
  }

  /** Records not yet read, per partition (the consumer lag). */
  async lag(): Promise<number[]> {
    const topic = this.#source.options.topic;
    return Promise.all(
      this.#positions.map(async (position, index) => {
        const { end } = await this.#log.offsets(topic, this.#inputPartitions[index]!);
        return Math.max(0, end - position);
      }),
    );
  }

  /**
   * One round: up to `maxRecordsPerRead` records from each partition, through the dataflow.
   * Returns how many records it read. Commits first when the round could overflow the transaction.
   */
  async step(): Promise<number> {
    this.#assertUsable();
    if (this.#uncommittedRecords + this.#roundCapacity() > this.#maxRecordsPerTransaction) {
      if (this.#uncommittedRecords > 0) await this.commit();
    }
    const topic = this.#source.options.topic;
    const tracker = this.#tracker!;
    this.#processingNowMs = this.#clock.now();
    const input: Array<[number, LogRecord[]]> = [];
    for (let index = 0; index < this.#positions.length; index++) {
      const records = await this.#log.read(topic, this.#inputPartitions[index]!, this.#positions[index]!, {
        maxRecords: this.#maxRecordsPerRead,
      });
      if (records.length > 0) input.push([index, records]);
    }
    // Tables after the input is read, before it is processed: an element meets every table change
    // appended before it was read. Until the tables have caught up, the input waits for a later round.
    const tables = await this.#readTables(input.length > 0);
    let read = tables.read;
    if (tables.caughtUp) {
      for (const [index, records] of input) {
        tracker.markActive(index);
        this.#processRecords(index, records);
        this.#positions[index] = records[records.length - 1]!.offset + 1;
        read += records.length;
      }
    }
    if (read === 0) this.#advanceAll(tracker.refresh());
    this.#advanceProcessingTime();
    this.#uncommittedRecords += read;
    // Commits fall between rounds only, so an early commit changes no output (see the class doc).
    const oldestFiredMs = this.#firedAtMs[0];
    if (oldestFiredMs !== undefined && this.#clock.monotonicNow() - oldestFiredMs >= this.#maxResultDelayMs) {
      await this.commit();
    }
    return read;
  }

  /** Records one round reads at most: every input and table partition's full read. */
  #roundCapacity(): number {
    let partitions = this.#positions.length;
    for (const table of this.#tables.values()) partitions += table.partitions;
    return partitions * this.#maxRecordsPerRead;
  }

  /** One round of every table; `catchUp`: whether they read all that was appended before the round. */
  async #readTables(catchUp: boolean): Promise<{ read: number; caughtUp: boolean }> {
    let read = 0;
    let caughtUp = true;
    for (const state of this.#tables.values()) {
      const invalid = state.table.invalid;
      const round = await state.readRound(
        this.#log,
        this.#maxRecordsPerRead,
        (record) => {
          this.#invalidRecords++;
          this.#compileContext().buffer(invalid!).push(record);
        },
        catchUp,
      );
      read += round.read;
      caughtUp &&= round.caughtUp;
    }
    return { read, caughtUp };
  }

  /** `index`: the partition's index among those the job reads (the watermark tracker's). */
  #processRecords(index: number, records: readonly LogRecord[]): void {
    const { decode, timestampOf, invalid } = this.#source.options;
    const tracker = this.#tracker!;
    const push = this.#push;
    for (const record of records) {
      let value: unknown;
      try {
        value = decode(record);
      } catch (error) {
        if (invalid === undefined) {
          throw new ValidationError(
            `Stream job '${this.name}' cannot decode ${record.topic}[${record.partition}]@${record.offset}: ${(error as Error).message}`.slice(
              0,
              1000,
            ),
            {
              cause: error,
              details: { topic: record.topic, partition: record.partition, offset: record.offset },
            },
          );
        }
        this.#invalidRecords++;
        this.#compileContext().buffer(invalid).push(record);
        continue;
      }
      const timestampMs = timestampOf === undefined ? record.timestamp : timestampOf(value, record);
      push(value, timestampMs);
      this.#sequence++;
      this.#recordsIn++;
      // The watermark moves after the record (Flink's punctuated order): a record is judged
      // against the records before it, never against itself.
      const watermarkMs = tracker.observe(index, timestampMs);
      if (watermarkMs !== this.#watermarkMs) this.#advanceAll(watermarkMs);
    }
  }

  /** Moves every event-time window to the input's watermark: lateness is judged against it. */
  #advanceAll(watermarkMs: number): void {
    this.#watermarkMs = watermarkMs;
    for (const operator of this.#eventOperators) operator.advance(watermarkMs);
  }

  #advanceProcessingTime(): void {
    for (const operator of this.#processingOperators) operator.advance(this.#processingNowMs - 1);
  }

  #snapshot(): Snapshot {
    return {
      positions: [...this.#positions],
      sequence: this.#sequence,
      watermarks: this.#tracker!.snapshot(),
      operators: this.#operators.map((operator) => operator.snapshot()),
      tables: [...this.#tables.values()].map((table) => table.snapshot()),
      recordsIn: this.#recordsIn,
      invalidRecords: this.#invalidRecords,
    };
  }

  /** Whether anything read or emitted since the last commit waits to be committed. */
  get dirty(): boolean {
    if (this.#uncommittedRecords > 0) return true;
    for (const buffer of this.#buffers.values()) if (buffer.length > 0) return true;
    return false;
  }

  /**
   * Commits the window state, the input offsets and the sinks' writes in one transaction, then
   * hands the committed values to the sinks' `committed`. A failed commit leaves the job
   * unusable (its memory is ahead of the store): open a new one, which resumes from the store.
   */
  async commit(): Promise<void> {
    this.#assertUsable();
    const snapshot = this.#snapshot();
    const taken: Array<[Sink<unknown>, unknown[]]> = [];
    for (const [sink, buffer] of this.#buffers) taken.push([sink, buffer.splice(0)]);
    const records = this.#uncommittedRecords;
    try {
      await this.#store.transaction(async (tx) => {
        const outgoing = new Map<string, ProducerRecord[]>();
        const scope: SinkScope = {
          tx,
          publish: (topic, published) => {
            const list = outgoing.get(topic);
            if (list === undefined) outgoing.set(topic, [...published]);
            else for (const record of published) list.push(record);
          },
        };
        for (const [sink, values] of taken) {
          if (values.length > 0 && sink.write !== undefined) await sink.write(values, scope);
        }
        await this.#state.save(tx, snapshot as unknown as Json);
        await publishAll(this.#log, this.#store, tx, outgoing, this.#outboxPartition);
        await this.#fence?.(tx);
      });
    } catch (error) {
      this.#state.abandoned();
      this.#failed = error as Error;
      throw error;
    }
    this.#state.committed();
    this.#transactions++;
    this.#uncommittedRecords = 0;
    const firedAtMs = this.#firedAtMs;
    this.#firedAtMs = [];
    for (const [sink, values] of taken) {
      if (values.length > 0 && sink.committed !== undefined) await sink.committed(values);
    }
    this.#onCommit?.({ records, firedAtMs, committedAtMs: this.#clock.monotonicNow() });
  }

  /**
   * Reads until every partition is at its end, committing on the way. With `finish`, the input
   * is over (a bounded replay): the watermark moves to the end of time, every window fires, and
   * the job commits.
   */
  async runToEnd(options: { finish?: boolean } = {}): Promise<void> {
    for (;;) {
      const read = await this.step();
      if (read === 0) break;
    }
    if (options.finish === true) {
      this.#advanceAll(this.#tracker!.finish());
      this.#processingNowMs = Number.POSITIVE_INFINITY;
      this.#advanceProcessingTime();
    }
    if (this.dirty) await this.commit();
  }

  /** Runs the live loop in the background until `stop()`; rejects `done` if the job fails. */
  start(): Promise<void> {
    assert(this.#running === undefined, 'a stream job starts once');
    this.#running = this.#loop();
    return this.#running;
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const read = await this.step();
      // Caught up (a partition had less than a full read): commit now, for latency.
      if (read < this.#roundCapacity() && this.dirty) await this.commit();
      if (read === 0 && !this.#stopped) await this.#sleep();
    }
    if (this.dirty) await this.commit();
  }

  #sleep(): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#timers.setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, this.#pollIntervalMs);
      this.#wake = () => {
        timer.cancel();
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** Stops the live loop after its current round and commits what it processed. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    if (this.#running !== undefined) await this.#running.catch(() => undefined);
  }

  #assertUsable(): void {
    if (!this.#opened) throw new ValidationError(`Stream job '${this.name}' is not open: call open() first`);
    if (this.#failed !== undefined) {
      throw new ClosedError(
        `Stream job '${this.name}' failed to commit and must be reopened: ${this.#failed.message}`,
        {
          cause: this.#failed,
        },
      );
    }
  }
}

/** Opens a stream job: compiles its dataflow and restores its committed state. */
export async function openStreamJob(options: StreamJobOptions): Promise<StreamJob> {
  const job = new StreamJob(options);
  await job.open();
  return job;
}
