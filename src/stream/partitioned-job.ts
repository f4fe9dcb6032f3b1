import { NotOwnedError, Ownership } from '../cluster/ownership.ts';
import { maxWorkPartitions } from '../cluster/partitions.ts';
import { OutboxRelay } from '../cluster/relay.ts';
import { ValidationError } from '../errors.ts';
import type { Consumer } from '../log/types.ts';
import { integerOption, invalidOption } from '../resilience/options.ts';
import { requireName, storeLimits } from '../store/limits.ts';
import type { StoreTransaction } from '../store/types.ts';
import { systemClock, systemTimers, type TimerHandle } from '../time.ts';
import { type CommitEvent, StreamJob, type StreamJobOptions, type StreamMetrics } from './job.ts';

export interface PartitionedStreamJobOptions
  extends Omit<StreamJobOptions, 'partitions' | 'fence' | 'outboxPartition'> {
  /** This process's name among the job's nodes (recorded beside the epochs it claims). */
  readonly node: string;
  /**
   * Input partition p is fenced by the store's partition epoch `firstFencingPartition + p` (and
   * its outbox rows carry that partition). Required: every job, and the runtime's work
   * partitions (0 to 1023), sharing a schema needs a range of its own. 1024 to 9999 − the
   * topic's partition count.
   */
  readonly firstFencingPartition: number;
  /** The Kafka consumer group the job's nodes share. @default `meridian-stream-<name>` */
  readonly group?: string;
  /** How often the node compares its running partitions with the group's assignment (ms). 10 to 60000. @default 200 */
  readonly reconcileIntervalMs?: number;
  /** Publish the jobs' outbox rows to Kafka from this node (the relay of the partitions it holds). @default true */
  readonly relay?: boolean;
  /** Called after each commit of a partition's job, with the partition, what it committed and the job's metrics then. */
  readonly onPartitionCommit?: (partition: number, event: CommitEvent, metrics: StreamMetrics) => void;
  /**
   * Told of a partition's job that failed (it is reopened while the group still assigns it here),
   * or with partition -1 of a failure of the node's own (its relay, following the assignment).
   */
  readonly onError?: (problem: { partition: number; error: unknown }) => void;
}

/**
 * The store numbers fencing partitions 0 to 9999 (storeLimits.maxPartitions); the runtime's work
 * partitions take at most 0 to 1023 (maxWorkPartitions), so a stream job's start past them.
 */
const firstFencingPartitionMin = maxWorkPartitions;

interface Task {
  readonly job: StreamJob;
  readonly running: Promise<void>;
}

/**
 * One stream job run by several processes (Kafka Streams' tasks): the nodes join one consumer
 * group on the input topic, and the group splits its partitions among them. For each partition
 * assigned here, the node claims the partition's fencing epoch in the store (the runtime's
 * Ownership) and runs a StreamJob over that partition alone, whose window state, offsets and
 * outputs commit in one PostgreSQL transaction that checks the epoch (FOR SHARE) before it
 * commits. A partition that moves away is stopped (its last round committed, if the epoch still
 * allows); its state lives in the store, so the next owner resumes it exactly. A node that lost a
 * partition without hearing of it (paused, partitioned) is refused by the epoch.
 *
 * Watermarks are per partition (each task sees one), so a key must stay within one partition:
 * key the input by the dataflow's `keyBy` key, as producers keying by symbol do.
 */
export class PartitionedStreamJob {
  readonly name: string;
  readonly #options: PartitionedStreamJobOptions;
  readonly #ownership: Ownership;
  readonly #relay: OutboxRelay | undefined;
  readonly #tasks = new Map<number, Task>();
  readonly #reconcileIntervalMs: number;
  /** Partitions whose job failed: not reopened before this monotonic time. */
  readonly #backoffUntilMs = new Map<number, number>();
  #consumer: Consumer | undefined;
  #timer: TimerHandle | undefined;
  #reconciling: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: PartitionedStreamJobOptions) {
    this.name = requireName('name', options.name);
    requireName('node', options.node);
    if (options.store.dialect !== 'postgres') {
      throw new ValidationError(
        `Partitioned stream job '${this.name}' needs the PostgreSQL store (its epochs fence the nodes): current value is store '${options.store.dialect}'`,
      );
    }
    if (options.firstFencingPartition === undefined) {
      invalidOption(
        'firstFencingPartition',
        `an integer from ${firstFencingPartitionMin}: the first of the store's fencing partitions this job's partitions use`,
        undefined,
      );
    }
    this.#options = options;
    this.#reconcileIntervalMs = integerOption(
      'reconcileIntervalMs',
      options.reconcileIntervalMs,
      200,
      10,
      60_000,
    );
    const clock = options.clock ?? systemClock;
    this.#ownership = new Ownership({ store: options.store, node: options.node, partitions: 1, clock });
    this.#relay =
      options.relay === false
        ? undefined
        : new OutboxRelay({
            store: options.store,
            log: options.log,
            ownership: this.#ownership,
            timers: options.timers ?? systemTimers,
            onError: (error) => options.onError?.({ partition: -1, error }),
          });
  }

  /** The input partitions this node runs now, ascending. */
  get partitions(): number[] {
    return [...this.#tasks.keys()].sort((a, b) => a - b);
  }

  /** The metrics of each partition's job on this node. */
  metrics(): Map<number, StreamMetrics> {
    return new Map([...this.#tasks].map(([partition, task]) => [partition, task.job.metrics]));
  }

  /** Joins the group; partitions start as the group assigns them. */
  async start(): Promise<void> {
    const topic = this.#options.source.options.topic;
    const partitions = (await this.#options.log.describeTopic(topic)).partitions;
    integerOption(
      'firstFencingPartition',
      this.#options.firstFencingPartition,
      firstFencingPartitionMin,
      firstFencingPartitionMin,
      storeLimits.maxPartitions - partitions,
    );
    this.#consumer = this.#options.log.consumer({
      group: this.#options.group ?? `meridian-stream-${this.name}`,
      topics: [topic],
    });
    this.#relay?.start();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = (this.#options.timers ?? systemTimers).setTimeout(() => {
      this.#reconciling = this.#reconcile()
        .catch((error: unknown) => this.#options.onError?.({ partition: -1, error }))
        .finally(() => this.#schedule());
    }, this.#reconcileIntervalMs);
  }

  /** Stops what is no longer assigned here and starts what newly is. */
  async #reconcile(): Promise<void> {
    const consumer = this.#consumer;
    if (consumer === undefined || this.#stopped) return;
    const assigned = new Set(consumer.assignment().map((tp) => tp.partition));
    for (const partition of [...this.#tasks.keys()]) {
      if (!assigned.has(partition)) await this.#stopTask(partition);
    }
    const nowMs = (this.#options.clock ?? systemClock).monotonicNow();
    for (const partition of [...assigned].sort((a, b) => a - b)) {
      if (this.#stopped || this.#tasks.has(partition)) continue;
      if ((this.#backoffUntilMs.get(partition) ?? 0) > nowMs) continue;
      try {
        await this.#startTask(partition);
      } catch (error) {
        this.#failed(partition, error);
      }
    }
  }

  async #startTask(partition: number): Promise<void> {
    const row = this.#options.firstFencingPartition + partition;
    await this.#ownership.claim([row]);
    const {
      node: _node,
      group: _group,
      reconcileIntervalMs: _interval,
      relay: _relay,
      onError: _onError,
      onPartitionCommit,
      firstFencingPartition: _first,
      ...rest
    } = this.#options;
    const job: StreamJob = new StreamJob({
      ...rest,
      name: `${this.name}@${partition}`,
      partitions: [partition],
      outboxPartition: row,
      fence: (tx) => this.#fence(tx, partition, row),
      onCommit: (event) => {
        this.#relay?.wake();
        this.#options.onCommit?.(event);
        onPartitionCommit?.(partition, event, job.metrics);
      },
    });
    try {
      await job.open();
    } catch (error) {
      this.#ownership.release([row]);
      throw error;
    }
    const running = job.start().catch((error: unknown) => {
      if (this.#tasks.get(partition)?.job === job) {
        this.#tasks.delete(partition);
        this.#ownership.release([row]);
        this.#failed(partition, error);
      }
    });
    this.#tasks.set(partition, { job, running });
  }

  async #fence(tx: StoreTransaction, partition: number, row: number): Promise<void> {
    const stale = await this.#ownership.stale(tx, new Set([row]));
    if (stale.length === 0) return;
    throw new NotOwnedError(
      `Node '${this.#options.node}' no longer holds partition ${partition} of stream job '${this.name}': another node claimed it (epoch ${stale[0]!.held} held, ${stale[0]!.current} stored); nothing of this commit was written`,
      { details: { node: this.#options.node, job: this.name, partition, stale: stale[0]! } },
    );
  }

  #failed(partition: number, error: unknown): void {
    const clock = this.#options.clock ?? systemClock;
    this.#backoffUntilMs.set(partition, clock.monotonicNow() + 1000);
    this.#options.onError?.({ partition, error });
  }

  async #stopTask(partition: number): Promise<void> {
    const task = this.#tasks.get(partition);
    if (task === undefined) return;
    this.#tasks.delete(partition);
    await task.job.stop();
    await task.running;
    this.#ownership.release([this.#options.firstFencingPartition + partition]);
  }

  /** Stops every partition's job (each commits its last round), leaves the group and stops the relay. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.#reconciling;
    for (const partition of [...this.#tasks.keys()]) await this.#stopTask(partition);
    await this.#relay?.flush().catch(() => undefined);
    await this.#relay?.stop();
    await this.#consumer?.close();
  }
}

/** Starts a partitioned stream job on this node (see PartitionedStreamJob). */
export async function startPartitionedStreamJob(
  options: PartitionedStreamJobOptions,
): Promise<PartitionedStreamJob> {
  const job = new PartitionedStreamJob(options);
  await job.start();
  return job;
}
