import { ValidationError } from '../errors.ts';
import type { Log, LogRecord } from '../log/types.ts';
import { integerOption, invalidOption } from '../resilience/options.ts';
import { requireName } from '../store/limits.ts';
import type { Json } from '../store/types.ts';
import type { Sink } from './sinks.ts';

export interface TableOptions<V extends Json> {
  /** The changelog topic: a record's key is the row's key, its value the row (null deletes it). */
  readonly topic: string;
  /** Turns a record with a value into the row; a throw fails the job unless `invalid` is given. */
  readonly decode: (record: LogRecord) => V;
  /**
   * How far behind the table's newest event time old versions are kept for lookups (ms): a stream
   * record joins the version valid at its own event time, and one older than this may find none.
   * 0 to 2592000000 (30 days). @default 86400000 (a day)
   */
  readonly historyRetentionMs?: number;
  /** Where records without a key or that fail to decode go, instead of failing the job. @default none */
  readonly invalid?: Sink<LogRecord>;
}

/**
 * A keyed table materialised from a changelog topic (Kafka Streams' KTable): the definition a
 * stream joins with (`keyedStream.join(table, ...)`). The job that runs the join reads the topic
 * and keeps the rows in its committed state, so they commit with its offsets and outputs.
 */
export class Table<V extends Json> {
  readonly topic: string;
  readonly decode: (record: LogRecord) => V;
  readonly historyRetentionMs: number;
  readonly invalid: Sink<LogRecord> | undefined;

  constructor(options: TableOptions<V>) {
    this.topic = requireName('topic', options.topic);
    if (typeof options.decode !== 'function')
      invalidOption('decode', 'a function (record) => row', options.decode);
    this.decode = options.decode;
    this.historyRetentionMs = integerOption(
      'historyRetentionMs',
      options.historyRetentionMs,
      86_400_000,
      0,
      2_592_000_000,
    );
    this.invalid = options.invalid;
  }
}

/** A table over a changelog topic, to join keyed streams with. */
export function tableFromTopic<V extends Json>(options: TableOptions<V>): Table<V> {
  return new Table(options);
}

/** A row's versions, oldest first: [event time, row or null for a deletion]. */
type Version = [number, Json];

/** A table's committed state as a snapshot stores it. */
interface TableSnapshot {
  readonly positions: number[];
  readonly newestMs: number | null;
  readonly tooOld: number;
  readonly rows: Array<[string, Version[]]>;
}

const keyDecoder = new TextDecoder();

/**
 * The rows of a table as of each event time (a versioned table). A lookup at time t returns the
 * newest version whose event time is <= t, in the order the job read the changelog; a version
 * that arrives late (an older event time than the newest) still takes its place in history,
 * unless it is older than the history kept: then it is left out and counted (`tooOldChanges`).
 * Versions older than the table's newest event time less `historyRetentionMs` are dropped, all
 * but the newest of them, which is still valid at that horizon: lookups at or after the horizon
 * are exact, and the state is bounded by the rows and their changes within the retention (a row
 * is pruned when it is next read or written).
 */
export class TableState<V extends Json> {
  readonly table: Table<V>;
  readonly #rows = new Map<string, Version[]>();
  #positions: number[] = [];
  #newestMs = Number.NEGATIVE_INFINITY;
  #versions = 0;
  #tooOld = 0;

  constructor(table: Table<V>) {
    this.table = table;
  }

  /** Versions held now, over every row (the table's state size). */
  get versions(): number {
    return this.#versions;
  }

  /** Changes left out because their event time was older than the history kept when they were read. */
  get tooOldChanges(): number {
    return this.#tooOld;
  }

  /** Partitions of the changelog (0 until the first round read it). */
  get partitions(): number {
    return this.#positions.length;
  }

  /** The row valid for `key` at event time `timestampMs`, or undefined (none, or deleted). */
  lookup(key: string, timestampMs: number): V | undefined {
    const versions = this.#rows.get(key);
    if (versions === undefined) return undefined;
    // Pruned on the reads and writes of a key only, never on a timer or a commit, so what a lookup
    // finds depends on the order of the input alone.
    this.#prune(key, versions);
    // Versions are few per key (changes within the retention): scan from the newest.
    for (let index = versions.length - 1; index >= 0; index--) {
      const version = versions[index]!;
      if (version[0] <= timestampMs) return version[1] === null ? undefined : (version[1] as V);
    }
    return undefined;
  }

  /** Applies one changelog record; returns the record when it is invalid and `invalid` takes it. */
  apply(record: LogRecord): LogRecord | undefined {
    let row: Json;
    try {
      if (record.key === null) throw new ValidationError('a table record needs a key');
      row = record.value === null ? null : this.table.decode(record);
    } catch (error) {
      if (this.table.invalid !== undefined) return record;
      throw new ValidationError(
        `Table '${this.table.topic}' cannot read ${record.topic}[${record.partition}]@${record.offset}: ${(error as Error).message}`.slice(
          0,
          1000,
        ),
        {
          cause: error,
          details: { topic: record.topic, partition: record.partition, offset: record.offset },
        },
      );
    }
    this.#put(keyDecoder.decode(record.key), record.timestamp, row);
    return undefined;
  }

  #put(key: string, timestampMs: number, row: Json): void {
    if (timestampMs < this.#newestMs - this.table.historyRetentionMs) {
      // Older than the history kept: the versions it would fall between may be gone (a deleted
      // row's tombstone among them), so it is counted and left out, as Kafka Streams' versioned
      // stores do.
      this.#tooOld++;
      return;
    }
    let versions = this.#rows.get(key);
    if (versions === undefined) {
      versions = [];
      this.#rows.set(key, versions);
    }
    // Insert after every version at or before this time: equal times resolve to the later record.
    let index = versions.length;
    while (index > 0 && versions[index - 1]![0] > timestampMs) index--;
    versions.splice(index, 0, [timestampMs, row]);
    this.#versions++;
    if (timestampMs > this.#newestMs) this.#newestMs = timestampMs;
    this.#prune(key, versions);
  }

  /** Drops the versions no lookup at or after the horizon can return. */
  #prune(key: string, versions: Version[]): void {
    const horizonMs = this.#newestMs - this.table.historyRetentionMs;
    let valid = 0;
    while (valid + 1 < versions.length && versions[valid + 1]![0] <= horizonMs) valid++;
    if (valid > 0) {
      versions.splice(0, valid);
      this.#versions -= valid;
    }
    if (versions.length === 1 && versions[0]![1] === null && versions[0]![0] <= horizonMs) {
      this.#rows.delete(key);
      this.#versions--;
    }
  }

  /**
   * Reads one round of the changelog: up to `maxRecords` from each partition, applied in order.
   * With `catchUp`, first takes each partition's end offset: `caughtUp` then says whether the
   * round read every change appended before it began (a partition is caught up when its position
   * reached that end or its read found nothing more), so input read before this round may meet them.
   */
  async readRound(
    log: Log,
    maxRecords: number,
    onInvalid: (record: LogRecord) => void,
    catchUp = false,
  ): Promise<{ read: number; caughtUp: boolean }> {
    if (this.#positions.length === 0) await this.#start(log);
    const topic = this.table.topic;
    const ends = catchUp
      ? await Promise.all(
          this.#positions.map(async (_, partition) => (await log.offsets(topic, partition)).end),
        )
      : undefined;
    let read = 0;
    let caughtUp = true;
    for (let partition = 0; partition < this.#positions.length; partition++) {
      const records = await log.read(topic, partition, this.#positions[partition]!, { maxRecords });
      for (const record of records) {
        const invalid = this.apply(record);
        if (invalid !== undefined) onInvalid(invalid);
      }
      if (records.length > 0) this.#positions[partition] = records[records.length - 1]!.offset + 1;
      read += records.length;
      if (ends !== undefined && records.length > 0 && this.#positions[partition]! < ends[partition]!)
        caughtUp = false;
    }
    return { read, caughtUp };
  }

  async #start(log: Log): Promise<void> {
    const partitions = (await log.describeTopic(this.table.topic)).partitions;
    for (let partition = 0; partition < partitions; partition++) {
      this.#positions.push((await log.offsets(this.table.topic, partition)).start);
    }
  }

  snapshot(): Json {
    const snapshot: TableSnapshot = {
      positions: [...this.#positions],
      newestMs: Number.isFinite(this.#newestMs) ? this.#newestMs : null,
      tooOld: this.#tooOld,
      rows: [...this.#rows],
    };
    return snapshot as unknown as Json;
  }

  restore(state: Json): void {
    const snapshot = state as unknown as TableSnapshot;
    this.#positions = [...snapshot.positions];
    this.#newestMs = snapshot.newestMs ?? Number.NEGATIVE_INFINITY;
    this.#tooOld = snapshot.tooOld;
    this.#rows.clear();
    this.#versions = 0;
    for (const [key, versions] of snapshot.rows) {
      this.#rows.set(key, versions);
      this.#versions += versions.length;
    }
  }
}
