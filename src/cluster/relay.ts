import type { Log, LogRecord, ProducerRecord } from '../log/types.ts';
import type { OutboxMessage, Store } from '../store/types.ts';
import type { TimerHandle, Timers } from '../time.ts';
import type { Ownership } from './ownership.ts';

/** The header a relay puts on every record it publishes: `<work partition>:<outbox id>`. */
export const outboxHeader = 'meridian-outbox';

/**
 * The inbox id of a consumed record: the relay's `<partition>:<outbox id>` when Meridian published
 * it (the same for every re-send of it), else its place in the log.
 */
export function messageIdOf(record: LogRecord): string {
  const published = record.headers[outboxHeader];
  return published !== undefined
    ? `o:${published}`
    : `l:${record.topic}/${record.partition}/${record.offset}`;
}

export interface OutboxRelayOptions {
  store: Store;
  log: Log;
  ownership: Ownership;
  timers: Timers;
  /** How often the relay looks for rows nobody told it about (a partition it just took over). @default 500 */
  idlePollMs?: number;
  /** Rows one round publishes at most. @default 1000 */
  batchSize?: number;
  onError: (error: unknown) => void;
}

/**
 * Publishes the outbox rows of the work partitions this node owns to Kafka, in id order, then
 * deletes them. The log's producer is idempotent with acks=all, so a send retried inside the
 * client never duplicates; a relay that dies between the send and the delete sends those rows
 * again after a restart or takeover. Every record carries `meridian-outbox: <partition>:<id>`, and
 * Meridian's consumers keep that id in their inbox, so the re-sent copy changes nothing inside
 * Meridian (a plain Kafka consumer does see it twice).
 */
export class OutboxRelay {
  readonly #options: OutboxRelayOptions;
  readonly #idlePollMs: number;
  readonly #batchSize: number;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = true;
  #timer: TimerHandle | undefined;
  #published = 0;
  /** Ids the last round published, deleted by the next round's transaction (or going idle). */
  #unmarked: number[] = [];

  constructor(options: OutboxRelayOptions) {
    this.#options = options;
    this.#idlePollMs = options.idlePollMs ?? 500;
    this.#batchSize = options.batchSize ?? 1000;
  }

  /** Records published since start. */
  get published(): number {
    return this.#published;
  }

  start(): void {
    this.#stopped = false;
    this.wake();
  }

  /** New rows were committed (or a partition was taken over): publish soon. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      if (this.#stopped) return;
      if (this.#again) this.wake();
      else this.#timer = this.#options.timers.setTimeout(() => this.wake(), this.#idlePollMs);
    });
  }

  /** Publishes every row of the owned partitions that is pending now (before handing them over). */
  async flush(): Promise<void> {
    await this.#running;
    await this.#loop();
  }

  /** Stops after the round in progress (whose rows are published and deleted, or left for later). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.#running;
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        const partitions = this.#options.ownership.owned();
        if (partitions.length === 0) break;
        const rows = await this.#round(partitions);
        if (rows.length === 0) continue;
        await this.#publish(rows);
        if (rows.length === this.#batchSize) this.#again = true;
      } while (this.#again && !this.#stopped);
      // Going idle: what the last round published is deleted now, not at the next round.
      await this.#markPublished();
    } catch (error) {
      this.#options.onError(error);
    }
  }

  /**
   * One transaction: deletes the rows the previous round published, and reads the next ones,
   * with durable reads: it commits only once the synchronous standby has every row read, so a
   * primary's surviving backends (its postmaster killed) cannot hand the relay rows the promoted
   * standby never had. Published, such a row's outbox id would be taken again there, and
   * consumers would skip the real one as a re-send.
   */
  async #round(partitions: readonly number[]): Promise<readonly OutboxMessage[]> {
    const published = this.#unmarked;
    const rows = await this.#options.store.transaction(
      async (tx) => {
        if (published.length > 0) await tx.outbox.markPublished(published);
        return tx.outbox.pending(this.#batchSize, { partitions });
      },
      { durableReads: true },
    );
    this.#unmarked = [];
    return rows;
  }

  async #markPublished(): Promise<void> {
    const ids = this.#unmarked;
    if (ids.length === 0) return;
    await this.#options.store.transaction((tx) => tx.outbox.markPublished(ids));
    this.#unmarked = [];
  }

  async #publish(rows: readonly OutboxMessage[]): Promise<void> {
    // One append per topic, with its rows in id order; the topics go at once (Kafka orders
    // records within a partition, never across topics, so nothing is lost by not waiting).
    const byTopic = new Map<string, ProducerRecord[]>();
    for (const row of rows) {
      const records = byTopic.get(row.topic);
      if (records === undefined) byTopic.set(row.topic, [toRecord(row)]);
      else records.push(toRecord(row));
    }
    await Promise.all([...byTopic].map(([topic, records]) => this.#options.log.append(topic, records)));
    this.#unmarked = rows.map((row) => row.id);
    this.#published += rows.length;
  }
}

function toRecord(row: OutboxMessage): ProducerRecord {
  return {
    key: row.key,
    value: row.value,
    headers: { ...row.headers, [outboxHeader]: `${row.partition}:${row.id}` },
    timestamp: row.timestamp,
  };
}
