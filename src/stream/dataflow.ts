import { ValidationError } from '../errors.ts';
import type { LogRecord } from '../log/types.ts';
import { integerOption, invalidOption } from '../resilience/options.ts';
import { requireName } from '../store/limits.ts';
import type { Json } from '../store/types.ts';
import type { Aggregator } from './aggregators.ts';
import type { Sink } from './sinks.ts';
import type { Table, TableState } from './table.ts';
import { WindowOperator, type WindowResult } from './window-operator.ts';
import type { WindowAssigner } from './windows.ts';

/** Passes one element on, with its event time. */
export type Push<T> = (value: T, timestampMs: number) => void;

/** What compiling a dataflow for one run of a job wires together. */
export interface CompileContext {
  /** The input sequence of the record being processed (read when an element is aggregated). */
  readonly sequence: () => number;
  /** Processing time of the current batch, for processing-time windows. */
  readonly processingNowMs: () => number;
  /** The buffer a sink's values collect in until the next commit. */
  buffer<T>(sink: Sink<T>): T[];
  /** A window fired (or fired again): the job notes when, to measure result latency. */
  fired(): void;
  /** Registers a window operator; its snapshot is saved under its position in this order. */
  operator(operator: WindowOperator<unknown, Json, unknown>, time: 'event' | 'processing'): void;
  /** The materialised state of `table` (one per table, however many joins use it). */
  table<V extends Json>(table: Table<V>): TableState<V>;
}

interface Child<T> {
  compile(context: CompileContext): Push<T>;
}

/**
 * A typed stream of values with event times. Operations return new streams; a stream with
 * several consumers (two windows over the same trades, a sink beside a window) fans out: every
 * element goes to each, in the order they were added.
 */
export class Stream<T> {
  readonly #children: Child<T>[] = [];

  map<U>(fn: (value: T) => U): Stream<U> {
    const next = new Stream<U>();
    this.#children.push({
      compile: (context) => {
        const push = next.compile(context);
        return (value, timestampMs) => push(fn(value), timestampMs);
      },
    });
    return next;
  }

  filter<S extends T>(predicate: (value: T) => value is S): Stream<S>;
  filter(predicate: (value: T) => boolean): Stream<T>;
  filter(predicate: (value: T) => boolean): Stream<T> {
    const next = new Stream<T>();
    this.#children.push({
      compile: (context) => {
        const push = next.compile(context);
        return (value, timestampMs) => {
          if (predicate(value)) push(value, timestampMs);
        };
      },
    });
    return next;
  }

  /** Each value becomes zero or more values, all with its event time. */
  flatMap<U>(fn: (value: T) => Iterable<U>): Stream<U> {
    const next = new Stream<U>();
    this.#children.push({
      compile: (context) => {
        const push = next.compile(context);
        return (value, timestampMs) => {
          for (const item of fn(value)) push(item, timestampMs);
        };
      },
    });
    return next;
  }

  /** Partitions the stream by a string key: windows keep state and fire per key. */
  keyBy(key: (value: T) => string): KeyedStream<T> {
    return new KeyedStream(this, key);
  }

  /** Sends every value to `sink` (in the commit, see Sink). */
  to(sink: Sink<T>): this {
    if (sink.write === undefined && sink.committed === undefined) {
      throw new ValidationError(
        `Sink '${sink.name}' has neither 'write' nor 'committed': it would drop every value`,
      );
    }
    this.#children.push({
      compile: (context) => {
        const buffer = context.buffer(sink);
        return (value) => {
          buffer.push(value);
        };
      },
    });
    return this;
  }

  /** @internal Adds a consumer (the keyed and windowed streams use it). */
  attach(child: Child<T>): void {
    this.#children.push(child);
  }

  /** @internal One push function for this stream's consumers. */
  compile(context: CompileContext): Push<T> {
    const pushes = this.#children.map((child) => child.compile(context));
    if (pushes.length === 0) return () => undefined;
    if (pushes.length === 1) return pushes[0]!;
    return (value, timestampMs) => {
      for (const push of pushes) push(value, timestampMs);
    };
  }
}

export class KeyedStream<T> {
  readonly #parent: Stream<T>;
  readonly #key: (value: T) => string;

  constructor(parent: Stream<T>, key: (value: T) => string) {
    this.#parent = parent;
    this.#key = key;
  }

  /**
   * Inner join with a table (Kafka Streams' KStream-KTable join): each element meets the row of
   * its key that was valid at the element's event time (see Table), and `joiner` makes the
   * output, with the element's event time. Elements whose key has no row then are dropped: use
   * `leftJoin` to keep them. Table changes produce no output; only stream elements do.
   */
  join<V extends Json, U>(table: Table<V>, joiner: (value: T, row: V) => U): Stream<U> {
    return this.#join(table, (value, row) => (row === undefined ? undefined : { out: joiner(value, row) }));
  }

  /** Left join with a table: like `join`, but an element with no row meets `null` instead of being dropped. */
  leftJoin<V extends Json, U>(table: Table<V>, joiner: (value: T, row: V | null) => U): Stream<U> {
    return this.#join(table, (value, row) => ({ out: joiner(value, row ?? null) }));
  }

  #join<V extends Json, U>(
    table: Table<V>,
    joined: (value: T, row: V | undefined) => { out: U } | undefined,
  ): Stream<U> {
    if (typeof (table as { decode?: unknown })?.decode !== 'function' || typeof table.topic !== 'string')
      invalidOption('table', 'a Table (tableFromTopic(...))', table);
    const next = new Stream<U>();
    const key = this.#key;
    this.#parent.attach({
      compile: (context) => {
        const push = next.compile(context);
        const state = context.table(table);
        return (value, timestampMs) => {
          const result = joined(value, state.lookup(key(value), timestampMs));
          if (result !== undefined) push(result.out, timestampMs);
        };
      },
    });
    return next;
  }

  /**
   * Windows per key. `late` receives the records that arrive after their windows' allowed
   * lateness ran out (they are counted in the job's metrics as well): required, so that no
   * record is ever dropped silently.
   */
  window(assigner: WindowAssigner, options: WindowOptions<T>): WindowedStream<T> {
    const allowedLatenessMs = integerOption('allowedLatenessMs', options.allowedLatenessMs, 0, 0, 86_400_000);
    if (options.late === undefined)
      invalidOption('late', 'a sink for late records (topicSink, ...)', undefined);
    return new WindowedStream(this.#parent, this.#key, assigner, allowedLatenessMs, options.late);
  }
}

export interface WindowOptions<T> {
  /** How long after a window fired a late record still updates it (it fires again). @default 0 */
  readonly allowedLatenessMs?: number;
  /** Where records later than that go. */
  readonly late: Sink<T>;
}

export class WindowedStream<T> {
  readonly parent: Stream<T>;
  readonly key: (value: T) => string;
  readonly assigner: WindowAssigner;
  readonly allowedLatenessMs: number;
  readonly late: Sink<T>;

  constructor(
    parent: Stream<T>,
    key: (value: T) => string,
    assigner: WindowAssigner,
    allowedLatenessMs: number,
    late: Sink<T>,
  ) {
    this.parent = parent;
    this.key = key;
    this.assigner = assigner;
    this.allowedLatenessMs = allowedLatenessMs;
    this.late = late;
  }

  /** Aggregates each window incrementally; the results are a stream with the window's last instant as event time. */
  aggregate<A extends Json, R>(aggregator: Aggregator<T, A, R>): Stream<WindowResult<R>> {
    if (this.assigner.kind === 'session' && aggregator.merge === undefined) {
      throw new ValidationError('Session windows merge, so their aggregator needs a merge(a, b) function');
    }
    const results = new Stream<WindowResult<R>>();
    const { key, assigner, allowedLatenessMs, late } = this;
    this.parent.attach({
      compile: (context) => {
        const emit = results.compile(context);
        const lateBuffer = context.buffer(late);
        const operator = new WindowOperator<T, A, R>({
          assigner,
          aggregator,
          allowedLatenessMs,
          emit: (result) => {
            context.fired();
            emit(result, result.window.endMs - 1);
          },
          late: (value) => lateBuffer.push(value),
        });
        context.operator(operator as unknown as WindowOperator<unknown, Json, unknown>, assigner.time);
        const { sequence, processingNowMs } = context;
        if (assigner.time === 'processing') {
          return (value) => operator.add(key(value), value, processingNowMs(), sequence());
        }
        return (value, timestampMs) => operator.add(key(value), value, timestampMs, sequence());
      },
    });
    return results;
  }
}

export interface TopicSourceOptions<T> {
  readonly topic: string;
  /** Turns a record into a value; a throw fails the job at that record unless `invalid` is given. */
  readonly decode: (record: LogRecord) => T;
  /** Event time of a value. @default the record's timestamp */
  readonly timestampOf?: (value: T, record: LogRecord) => number;
  /** How far behind the newest event time a record may arrive and still be on time (ms). 0 to 86400000. */
  readonly outOfOrdernessMs: number;
  /**
   * A partition that delivered nothing for this long (processing time) stops holding the
   * watermark back until it delivers again. null: never idle (deterministic replays). 1 to
   * 86400000. @default 10000
   */
  readonly idleTimeoutMs?: number | null;
  /** Where records that fail to decode go, instead of failing the job. @default none */
  readonly invalid?: Sink<LogRecord>;
}

/** The root of a dataflow: the records of one topic (all its partitions), decoded. */
export class TopicSource<T> extends Stream<T> {
  readonly options: Required<Omit<TopicSourceOptions<T>, 'invalid' | 'timestampOf'>> &
    Pick<TopicSourceOptions<T>, 'invalid' | 'timestampOf'>;

  constructor(options: TopicSourceOptions<T>) {
    super();
    requireName('topic', options.topic);
    if (typeof options.decode !== 'function')
      invalidOption('decode', 'a function (record) => value', options.decode);
    const idle =
      options.idleTimeoutMs === null
        ? null
        : integerOption('idleTimeoutMs', options.idleTimeoutMs, 10_000, 1, 86_400_000);
    this.options = {
      ...options,
      outOfOrdernessMs: integerOption('outOfOrdernessMs', options.outOfOrdernessMs, 0, 0, 86_400_000),
      idleTimeoutMs: idle,
    };
  }
}

/** Starts a dataflow at a topic. */
export function fromTopic<T>(options: TopicSourceOptions<T>): TopicSource<T> {
  return new TopicSource(options);
}
