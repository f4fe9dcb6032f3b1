import { randomBytes } from 'node:crypto';
import { afterAll, describe } from 'vitest';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import { parseBrokerList } from '../log/kafka/options.ts';
import type { Log } from '../log/types.ts';
import { openPostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import type { Store, StoreReader, StoreTransaction } from '../store/types.ts';
import {
  type Clock,
  flushMicrotasks,
  type ManualClock,
  type Random,
  systemClock,
  systemRandom,
  systemTimers,
  type Timers,
} from '../time.ts';
import { advance, eventually, openEmbedded, turns } from './harness.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from './runtime.ts';

/**
 * One fixture for the runtime's semantic tests on either shape, so that one suite states the
 * runtime's promises once and runs them on both (as src/log/contract.ts and
 * src/store/contract.ts do for the log and the store). Not part of the API.
 *
 * - `embedded`: one SQLite file (openEmbedded); waiting is in turns of the event loop.
 * - `cluster`: a one-node cluster on real PostgreSQL (a fresh schema) and a real Kafka broker (a
 *   work topic and group of its own). Real I/O happens, so waiting is real-time polling, bounded.
 *   The runtime's clock and timers are still the test's (a ManualClock works): `advance` moves
 *   it step by step and after each step lets the I/O it caused finish.
 *
 * Topics a test reads are shared on the broker by every test file and run, so a test names them
 * through `topic()`: unchanged on the embedded shape (one fresh file per test), made unique on
 * the cluster shape. The dead-letter topic is made unique by the fixture itself.
 */
export type ShapeName = 'embedded' | 'cluster';

export interface ShapeFixture {
  readonly shape: ShapeName;
  readonly store: Store;
  readonly log: Log;
  /** `name` on the embedded shape; `name` made unique to this fixture on the cluster shape. */
  topic(name: string): string;
  /** A runtime on this fixture's store and log; `options` adds to the fixture's clock, timers and random. */
  runtime(options?: Partial<RuntimeOptions>): Runtime;
  /**
   * Starts `runtime`; on the cluster shape also waits (bounded) until the node owns every work
   * partition and the work it resumed there has settled, so the test starts from a node that
   * does everything locally, as the embedded runtime does.
   */
  start(runtime: Runtime): Promise<Runtime>;
  /** Lets pending work run: turns of the event loop (embedded), until the store is idle (cluster). */
  turns(count?: number): Promise<void>;
  /** Waits until `predicate` holds; fails after a bound (turns embedded, real time on the cluster). */
  eventually(predicate: () => boolean | Promise<boolean>, what?: string): Promise<void>;
  /** Moves `clock` by `deltaMs` in steps of `stepMs`, letting the work each step causes run. */
  advance(clock: ManualClock, deltaMs: number, stepMs?: number): Promise<void>;
  /**
   * Waits until every record committed so far is on the log: at once on the embedded shape
   * (records are appended in the committing transaction); on the cluster shape until the relay
   * has published the outbox.
   */
  published(): Promise<void>;
  /** Stops the runtimes made here and closes the store and log (data kept). */
  close(): Promise<void>;
  /** Closes, then deletes the data (the file; the schema and this fixture's topics). */
  destroy(): Promise<void>;
}

export interface ShapeFixtureOptions {
  clock?: Clock;
  timers?: Timers;
  random?: Random;
}

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
/** True when the cluster shape can run here (PostgreSQL and Kafka given). */
export const clusterAvailable = Boolean(pgUrl && brokersText);
/** Work partitions of a test node: few, so that one node owns them all quickly. */
export const testWorkPartitions = 4;
/**
 * Runs of a property test on the cluster shape, where each run opens a schema and a node and
 * every simulated crash restarts it: the same seed as the embedded run, fewer of its cases.
 */
export const clusterPropertyRuns = Number(process.env.MERIDIAN_CLUSTER_PROPERTY_RUNS ?? 4);
/** Longest a cluster test waits for something that should happen (ownership, a record, a status). */
const clusterWaitMs = 20_000;

let schemas: ReturnType<typeof testSchemas> | undefined;
/** The unique topics cluster fixtures made, deleted when the file's cluster suite ends. */
const createdTopics = new Set<string>();

async function deleteCreatedTopics(): Promise<void> {
  if (createdTopics.size === 0 || brokersText === undefined) return;
  const log = new KafkaLog({ brokers: parseBrokerList(brokersText), clientId: 'meridian-shape-cleanup' });
  try {
    const existing = new Set(await log.listTopics());
    const names = [...createdTopics].filter((name) => existing.has(name));
    createdTopics.clear();
    await Promise.all(names.map((name) => log.deleteTopic(name)));
  } finally {
    await log.close();
  }
}

/**
 * Declares the suite `body` once per shape. The cluster run is skipped, with the reason in its
 * name, when MERIDIAN_TEST_PG_URL or MERIDIAN_TEST_KAFKA_BROKERS is not set.
 */
export function describeShapes(name: string, body: (shape: ShapeName) => void): void {
  describe(`${name} [embedded]`, () => body('embedded'));
  if (!clusterAvailable) {
    // Skipped on purpose: the cluster run needs a real PostgreSQL and a real Kafka broker, and
    // without their URLs there is nothing real to run it against (CI sets both, so it runs there).
    describe.skip(`${name} [cluster] (skipped: set MERIDIAN_TEST_PG_URL and MERIDIAN_TEST_KAFKA_BROKERS to run it)`, () =>
      body('cluster'));
    return;
  }
  describe(`${name} [cluster: PostgreSQL + Kafka]`, () => {
    afterAll(async () => {
      await deleteCreatedTopics();
      await schemas?.end();
      schemas = undefined;
    });
    body('cluster');
  });
}

/** Opens a fixture of `shape`. */
export async function openShape(shape: ShapeName, options: ShapeFixtureOptions = {}): Promise<ShapeFixture> {
  return shape === 'embedded' ? openEmbeddedShape(options) : openClusterShape(options);
}

function openEmbeddedShape(options: ShapeFixtureOptions): ShapeFixture {
  const fixture = openEmbedded(options);
  return {
    shape: 'embedded',
    store: fixture.store,
    log: fixture.log,
    topic: (name) => name,
    runtime: (runtimeOptions) => fixture.runtime(runtimeOptions),
    async start(runtime) {
      await runtime.start();
      return runtime;
    },
    turns: (count) => turns(count),
    eventually: (predicate) => eventually(predicate),
    advance: (clock, deltaMs, stepMs) => advance(clock, deltaMs, stepMs),
    published: async () => {},
    close: () => fixture.close(),
    destroy: () => fixture.destroy(),
  };
}

/**
 * The store, passed through unchanged, counting the transactions and reads in flight: how the
 * cluster fixture knows that the I/O a step caused has finished. Nothing is changed or faked.
 */
class ObservedStore implements Store {
  readonly #inner: Store;
  inFlight = 0;

  constructor(inner: Store) {
    this.#inner = inner;
  }

  get dialect(): Store['dialect'] {
    return this.#inner.dialect;
  }

  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await this.#inner.transaction(fn);
    } finally {
      this.inFlight--;
    }
  }

  async read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await this.#inner.read(fn);
    } finally {
      this.inFlight--;
    }
  }

  listen(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>> {
    return this.#inner.listen(channel, listener);
  }

  storage(): ReturnType<Store['storage']> {
    return this.#inner.storage();
  }

  reclaim(maxPages: number): Promise<number> {
    return this.#inner.reclaim(maxPages);
  }

  checkWrites(): ReturnType<Store['checkWrites']> {
    return this.#inner.checkWrites();
  }

  onWriteHealth(listener: Parameters<Store['onWriteHealth']>[0]): () => void {
    return this.#inner.onWriteHealth(listener);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** A pause in real time (the system timers), whatever clock the runtime is given. */
const realPause = (ms: number) => new Promise<void>((resolve) => systemTimers.setTimeout(resolve, ms));

/** Polls `predicate` in real time until it holds; throws after `timeoutMs`. */
async function until(
  predicate: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = clusterWaitMs,
): Promise<void> {
  const deadline = systemClock.monotonicNow() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (systemClock.monotonicNow() > deadline)
      throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await realPause(5);
  }
}

/**
 * Waits until no store call has been in flight for a few consecutive checks a few ms apart (the
 * work a timer or a commit set off has reached the store and finished). Bounded: gives up
 * quietly after `timeoutMs`, since callers then check what they expect.
 */
async function settle(store: ObservedStore, timeoutMs = 5_000): Promise<void> {
  const deadline = systemClock.monotonicNow() + timeoutMs;
  let quiet = 0;
  while (quiet < 3 && systemClock.monotonicNow() < deadline) {
    await realPause(2);
    await flushMicrotasks();
    quiet = store.inFlight === 0 ? quiet + 1 : 0;
  }
}

async function openClusterShape(options: ShapeFixtureOptions): Promise<ShapeFixture> {
  if (pgUrl === undefined || brokersText === undefined) {
    throw new Error('The cluster shape needs MERIDIAN_TEST_PG_URL and MERIDIAN_TEST_KAFKA_BROKERS');
  }
  schemas ??= testSchemas(pgUrl, 'shape');
  const schema = schemas.next();
  const clock = options.clock ?? systemClock;
  const store = new ObservedStore(await openPostgresStore({ connectionString: pgUrl, schema, clock }));
  return new ClusterShapeFixture(store, schema, brokersText, options);
}

/** A one-node cluster on a fresh schema, with a work topic, group and dead-letter topic of its own. */
class ClusterShapeFixture implements ShapeFixture {
  readonly shape = 'cluster' as const;
  readonly store: ObservedStore;
  readonly log: KafkaLog;
  readonly #schema: string;
  readonly #suffix = `${process.pid}.${randomBytes(4).toString('hex')}`;
  readonly #options: Required<ShapeFixtureOptions>;
  readonly #topics = new Set<string>();
  readonly #runtimes: Runtime[] = [];
  readonly #workTopic: string;
  readonly #deadLetterTopic: string;
  #closed = false;

  constructor(store: ObservedStore, schema: string, brokers: string, options: ShapeFixtureOptions) {
    this.store = store;
    this.#schema = schema;
    this.#options = {
      clock: options.clock ?? systemClock,
      timers: options.timers ?? systemTimers,
      random: options.random ?? systemRandom,
    };
    // The log keeps real time: it is the real broker's client, with its own deadlines.
    // Fetches wait at most 100 ms at the broker, so that stopping a node (which lets its
    // consumers' fetches in flight finish) takes a tenth of a second, not half of one.
    this.log = new KafkaLog({
      brokers: parseBrokerList(brokers),
      clientId: `meridian-shape-${this.#suffix}`,
      fetchMaxWaitMs: 100,
    });
    this.#workTopic = this.topic('meridian.work');
    this.#deadLetterTopic = this.topic('meridian.dead-letters');
  }

  topic(name: string): string {
    const unique = `${name}.${this.#suffix}`;
    this.#topics.add(unique);
    return unique;
  }

  runtime(options: Partial<RuntimeOptions> = {}): Runtime {
    const runtime = createRuntime({
      store: this.store,
      log: this.log,
      ...this.#options,
      deadLetterTopic: this.#deadLetterTopic,
      ...options,
      cluster: {
        // One node, restarted under the same name, as a real node would be.
        node: 'node-1',
        workPartitions: testWorkPartitions,
        workTopic: this.#workTopic,
        group: `meridian.nodes.${this.#suffix}`,
        requestTimeoutMs: 20_000,
        ...options.cluster,
      },
    });
    this.#runtimes.push(runtime);
    return runtime;
  }

  async start(runtime: Runtime): Promise<Runtime> {
    await runtime.start();
    const partitions = runtime.cluster?.workPartitions ?? testWorkPartitions;
    await until(
      () => (runtime.cluster?.owned().length ?? 0) === partitions,
      `The node owning all ${partitions} work partitions`,
    );
    await settle(this.store);
    return runtime;
  }

  turns(): Promise<void> {
    return settle(this.store);
  }

  eventually(predicate: () => boolean | Promise<boolean>, what = 'The condition'): Promise<void> {
    return until(predicate, what);
  }

  async advance(clock: ManualClock, deltaMs: number, stepMs = 10): Promise<void> {
    await settle(this.store);
    let left = deltaMs;
    while (left > 0) {
      const step = Math.min(stepMs, left);
      clock.advance(step);
      left -= step;
      await settle(this.store);
    }
  }

  published(): Promise<void> {
    return until(
      async () => (await this.store.read((tx) => tx.outbox.pending(1))).length === 0,
      'The relay publishing every committed record',
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const runtime of this.#runtimes) await runtime.stop();
    await this.log.close();
    await this.store.close();
  }

  async destroy(): Promise<void> {
    await this.close();
    await schemas?.drop(this.#schema);
    // The broker is shared by every test file and run: this fixture's topics are deleted too,
    // all at once when the file's cluster suite ends (deleting one takes about half a second).
    for (const name of this.#topics) createdTopics.add(name);
  }
}
