import type { Log } from '../log/types.ts';
import type { PartitionClaim, SagaRecord, Store } from '../store/types.ts';
import type { Clock, Random, Timers } from '../time.ts';
import type { ClusterOptions } from './cluster-shape.ts';
import type { CommitPath } from './commit-path.ts';
import type { GroupCommitStats, Yield } from './group-commit.ts';
import type { RetentionOptions, RetentionStats } from './retention.ts';

export interface RuntimeOptions {
  store: Store;
  log: Log;
  /**
   * How the runtime commits. @default the embedded path, which needs the SQLite store and
   * the SQLite log on one database
   */
  commitPath?: CommitPath;
  /** @default systemClock */
  clock?: Clock;
  /** @default systemTimers */
  timers?: Timers;
  /** Jitter, trace ids. @default systemRandom */
  random?: Random;
  /** Units (commands, journal entries, record batches) one transaction takes. 1 to 10000. @default 1000 */
  maxUnitsPerTransaction?: number;
  /**
   * How the committer lets resumed work run before each transaction (it involves no time). A
   * simulated scheduler supplies its own. @default one turn of the event loop (setImmediate)
   */
  yield?: Yield;
  /**
   * How long the group commit waits for more units before each transaction that would not be
   * full (Kafka's linger.ms), on `timers`: each durable call waits up to that much longer at low
   * load, and under load transactions are fewer and larger (see docs/benchmarks.md for what it
   * did to the commerce system). 0 to 1000. @default 0
   */
  commitLingerMs?: number;
  /**
   * Sagas executing in memory at once (a saga in a durable sleep does not count). More wait
   * their turn; their state is safe in the store meanwhile. 1 to 1000000. @default 10000
   */
  maxActiveSagas?: number;
  /** How long `stop` waits for running steps to finish before abandoning them. 0 to 600000. @default 10000 */
  drainTimeoutMs?: number;
  /** Where failed records go. @default 'meridian.dead-letters' */
  deadLetterTopic?: string;
  /** Partitions of topics the runtime creates without other instructions. 1 to 1024. @default 8 */
  defaultPartitions?: number;
  /**
   * Topics to create at start (e.g. those subscription handlers emit to), and how the runtime
   * creates any topic named here (entities' events topics, the dead-letter topic included):
   * `partitions` (1 to 1024; @default the definition's, else `defaultPartitions`) and
   * `retentionMs` (null: forever; @default the log's, 7 days). Topics that exist are left as they are.
   */
  topics?: Readonly<Record<string, { partitions?: number; retentionMs?: number | null }>>;
  /** Compensation retry: unbounded attempts, this backoff. @default 100 ms doubling to 30 s, full jitter */
  compensationRetry?: { initialDelayMs?: number; maxDelayMs?: number };
  /** Operating problems (a parked saga, a failed batch, a fence). They are also kept: see `problems()`. */
  onProblem?: (problem: RuntimeProblem) => void;
  /**
   * Run as one node of a cluster (Kafka log + PostgreSQL store, shared by every node): work
   * partitions are owned per node through a Kafka consumer group, and work for a partition owned
   * elsewhere travels to its owner. Absent: the embedded shape, which owns everything.
   */
  cluster?: ClusterOptions;
  /**
   * What finished work is deleted, and when: sagas and their journals, dead letters, expired
   * Idempotency-Key records (docs/runtime.md, "Retention"). On by default.
   */
  retention?: RetentionOptions;
}

/** What a cluster node can say about itself (`runtime.cluster`). */
export interface ClusterInfo {
  /** This node's name. */
  readonly node: string;
  /** How many work partitions the cluster has. */
  readonly workPartitions: number;
  /** The work partitions this node owns now, ascending. */
  owned(): number[];
  /** The work partition of an entity or saga id. */
  partitionOf(id: string): number;
  /** Records the relay has published to Kafka since start. */
  readonly published: number;
  /**
   * Who holds each work partition, cluster-wide: the last claim recorded in the store for each
   * partition ever claimed — the node and the fencing epoch it got — by partition number.
   */
  claims(): Promise<PartitionClaim[]>;
}

/** An operating problem the runtime handled: nothing was lost, but someone may want to know. */
export interface RuntimeProblem {
  readonly at: number;
  readonly message: string;
  readonly sagaId?: string;
  readonly subscription?: string;
  readonly error: string;
}

export interface SagaHandle<O> {
  readonly id: string;
  /**
   * The saga's output once it completes; rejects with SagaNotCompletedError if it compensated or
   * failed. `signal` stops waiting (rejecting with its reason) without touching the saga.
   */
  result(options?: { signal?: AbortSignal }): Promise<O>;
  /** The saga's stored record now. */
  record(): Promise<SagaRecord>;
}

export interface StartSagaOptions {
  /** The W3C traceparent of the caller: the saga joins its trace. @default a new trace */
  traceparent?: string;
}

export interface SendOptions {
  /** The W3C traceparent of the caller: the command's events join its trace. @default a new trace */
  traceparent?: string;
}

export interface RuntimeStats {
  readonly activeSagas: number;
  readonly sleepingSagas: number;
  readonly queuedSagas: number;
  readonly commits: GroupCommitStats;
  readonly subscriptions: Readonly<Record<string, { handled: number; deadLettered: number }>>;
  /** What retention removed since start, and the latest storage sample (taken on the leader). */
  readonly retention: RetentionStats;
}
