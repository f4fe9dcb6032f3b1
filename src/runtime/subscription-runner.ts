import { ensureError } from '../errors.ts';
import type { Consumer, Log, LogRecord, ProducerRecord } from '../log/types.ts';
import { plantedBug } from '../planted-bugs.ts';
import { type RetryStrategy, toRetryStrategy } from '../resilience/retry.ts';
import { decodeJson, decodeText } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import { ConsumeSpans } from './consume-spans.ts';
import type {
  AnyEntityDefinition,
  EmitRecord,
  SagaDefinition,
  SubscriptionContext,
  SubscriptionDefinition,
  SubscriptionRecord,
} from './definitions.ts';
import { type Effects, truncateMessage } from './effects.ts';
import { applyCommand } from './entity-command.ts';
import { FencedError } from './errors.ts';
import type { SagaLaunch } from './saga-execution.ts';
import { childTraceparent, traceparentHeader } from './trace.ts';

/** Headers of a dead letter: the original record's headers plus these. */
export const deadLetterHeaders = {
  subscription: 'meridian-dead-letter-subscription',
  topic: 'meridian-dead-letter-topic',
  partition: 'meridian-dead-letter-partition',
  offset: 'meridian-dead-letter-offset',
  error: 'meridian-dead-letter-error',
  attempts: 'meridian-dead-letter-attempts',
  at: 'meridian-dead-letter-at',
} as const;

/** How sagas are started from inside a unit: created in its transaction, launched after it commits. */
export interface SagaStarter {
  /** Creates a saga inside `scope` (idempotent on its id); returns what to launch after the commit. */
  create(
    scope: UnitScope,
    saga: SagaDefinition,
    id: string,
    input: unknown,
    traceparent: string,
  ): Promise<SagaLaunch | null>;
  /** Launches sagas whose creation committed. */
  launch(launches: readonly SagaLaunch[]): void;
}

/** The collaborators every subscription runner shares. */
export interface SubscriptionServices {
  readonly effects: Effects;
  readonly log: Log;
  readonly deadLetterTopic: string;
  readonly sagas: SagaStarter;
  readonly report: (problem: { subscription: string; message: string; error: unknown }) => void;
  /** A fenced batch: true when the runner must stop (embedded: another runtime owns the store). */
  readonly fenced: (error: FencedError) => boolean;
  /** Entities and sagas other nodes own (cluster shape); absent on the embedded shape. */
  readonly remote?: RemoteSubscriptionEffects;
}

/** How a subscription handler's effects reach ids another node owns (cluster shape). */
export interface RemoteSubscriptionEffects {
  /** True when this node owns the id's work partition. */
  owns(id: string): boolean;
  /**
   * Sends `record` inside `scope` to the owner of `id`'s partition, whose runner of the same
   * subscription handles it there (its inbox applies it once); `hops` counts forwards so far.
   */
  forward(scope: UnitScope, subscription: string, record: LogRecord, id: string, hops: number): Promise<void>;
  /**
   * Hands `record` to this same owner again after `delayMs` (a durable timer that, when it
   * fires, publishes the delivery anew in its own transaction), as attempt number `attempt`.
   */
  retryLater(
    scope: UnitScope,
    delivery: { subscription: string; record: LogRecord; id: string; hops: number; attempt: number },
    delayMs: number,
  ): Promise<void>;
  /** Starts a saga on its owner once `scope` commits (through the outbox; idempotent on its id). */
  startSaga(scope: UnitScope, request: StartRequest): Promise<void>;
}

/** A saga start a subscription routes to the saga's owner. */
export interface StartRequest {
  readonly requestId: string;
  readonly saga: string;
  readonly id: string;
  readonly input: unknown;
  readonly traceparent: string;
}

/**
 * A handler sent a command to an entity another node owns: its record must be handled there.
 * Thrown through the handler (rolling its savepoint back) and caught by the runner.
 */
class MustForward extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`entity '${id}' is owned by another node`);
    this.id = id;
  }
}

/** How often a record may be forwarded before its effects are judged to span nodes. */
const maxForwardHops = 3;

/** A partition held back because its first record failed and waits for its next attempt. */
interface Held {
  readonly partition: number;
  /** The failed record: the partition resumes from here. */
  readonly offset: number;
  readonly attempts: number;
  /** The wait chosen before this retry (decorrelated jitter grows from it). */
  readonly delayMs: number;
  readonly retryAt: number;
  /** True once the consumer was moved back to `offset` for the retry. */
  readonly rewound: boolean;
}

/** The longest a poll waits for records before the loop looks around again. */
const maxPollWaitMs = 5000;

interface BatchOutcome {
  /** Records handled or dead-lettered: the consumer's offsets moved past them. */
  readonly consumed: LogRecord[];
  /** By partition, the record that failed and will be retried (the partition waits behind it). */
  readonly failed: Map<string, LogRecord>;
  readonly launches: SagaLaunch[];
  readonly remember: () => void;
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

function toSubscriptionRecord(record: LogRecord): SubscriptionRecord {
  return {
    ...record,
    json: <T>() => decodeJson(record.value) as T,
    keyText: () => decodeText(record.key),
  };
}

/**
 * Runs one subscription: polls its topic, and handles each poll's records in ONE transaction
 * (group commit), each record in its own savepoint, with the consumer's offsets committed in the
 * same transaction. So a record's effects and its consumption commit together: after a crash
 * a record is either fully applied and past the committed offset, or not applied at all.
 *
 * A failing record is retried (after a backoff, in a later transaction) while the records behind
 * it in its partition wait, so per-partition (per-key) order holds. When its retries run out —
 * or it fails terminally — it goes to the dead-letter topic with the error, in the same
 * transaction that moves the offset past it: never dropped, never both.
 */
export class SubscriptionRunner {
  readonly definition: SubscriptionDefinition;
  readonly #host: SubscriptionServices;
  readonly #effects: Effects;
  readonly #strategy: RetryStrategy;
  readonly #held = new Map<string, Held>();
  readonly #stop = new AbortController();
  #consumer: Consumer | undefined;
  #loop: Promise<void> = Promise.resolve();
  #handled = 0;
  #deadLettered = 0;
  /** Planted bug 'offsets-apart' only: consumed records whose offsets the next poll commits. */
  #uncommitted: LogRecord[] = [];

  constructor(host: SubscriptionServices, definition: SubscriptionDefinition) {
    this.#host = host;
    this.#effects = host.effects;
    this.definition = definition;
    this.#strategy = toRetryStrategy(definition.retry);
  }

  get stats(): { readonly handled: number; readonly deadLettered: number } {
    return { handled: this.#handled, deadLettered: this.#deadLettered };
  }

  start(): void {
    this.#consumer = this.#host.log.consumer({
      group: this.definition.group,
      topics: [this.definition.topic],
      maxPollRecords: this.definition.maxRecordsPerBatch,
    });
    this.#loop = this.#run(this.#consumer);
  }

  /** Finishes the batch in hand, then closes the consumer. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await this.#consumer?.close();
  }

  async #run(consumer: Consumer): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      this.#rewindDue(consumer);
      let records: LogRecord[];
      try {
        records = await consumer.poll({ timeoutMs: this.#pollTimeoutMs(), signal });
      } catch (error) {
        if (signal.aborted) break;
        this.#host.report({ subscription: this.definition.name, message: 'poll failed', error });
        await this.#sleep(1000);
        continue;
      }
      if (plantedBug === 'offsets-apart' && !signal.aborted) await this.#commitApart(consumer);
      if (records.length === 0) continue;
      try {
        await this.#handleBatch(consumer, records);
      } catch (error) {
        if (error instanceof FencedError && this.#host.fenced(error)) break;
        if (signal.aborted) break;
        // Nothing of the batch committed: read it again after a pause.
        this.#host.report({ subscription: this.definition.name, message: 'a batch failed to commit', error });
        this.#rewind(consumer, records);
        await this.#sleep(1000);
      }
    }
  }

  /**
   * Planted bug 'offsets-apart' (tests only, src/planted-bugs.ts): the offsets of the batches
   * handled before this poll commit now, in a transaction of their own, as Kafka's auto-commit
   * does; a stop or crash before it leaves them uncommitted (a stop is taken for a crash here,
   * so that the simulation's restarts open the window), and the next runner handles them again.
   */
  async #commitApart(consumer: Consumer): Promise<void> {
    const records = this.#uncommitted;
    if (records.length === 0) return;
    this.#uncommitted = [];
    await this.#effects.committer.submit((scope) => scope.commitConsumed(consumer, records));
  }

  /** Polls wake on new records; with a partition held, also in time for its retry. */
  #pollTimeoutMs(): number {
    let timeoutMs = maxPollWaitMs;
    const nowMs = this.#effects.clock.now();
    for (const held of this.#held.values()) {
      if (!held.rewound) timeoutMs = Math.min(timeoutMs, Math.max(0, held.retryAt - nowMs));
    }
    return timeoutMs;
  }

  /** Moves each held partition whose retry is due back to its failed record. */
  #rewindDue(consumer: Consumer): void {
    const nowMs = this.#effects.clock.now();
    for (const [key, held] of this.#held) {
      if (held.rewound || held.retryAt > nowMs) continue;
      this.#held.set(key, { ...held, rewound: true });
      consumer.seek(this.definition.topic, held.partition, held.offset);
    }
  }

  async #handleBatch(consumer: Consumer, records: LogRecord[]): Promise<void> {
    const nowMs = this.#effects.clock.now();
    // A held partition is parked at its end until its retry is due: records polled from it
    // meanwhile (appended since) are skipped here and read again after the rewind.
    const runnable = records.filter((record) => {
      const held = this.#held.get(partitionKey(record.topic, record.partition));
      return held === undefined || held.rewound || record.offset < held.offset;
    });
    let outcome: BatchOutcome = { consumed: [], failed: new Map(), launches: [], remember: () => {} };
    if (runnable.length > 0) {
      const spans = new ConsumeSpans(this.definition.name, this.definition.group, runnable);
      try {
        outcome = await this.#effects.committer.submit((scope) =>
          this.#handleInTransaction(scope, consumer, runnable, nowMs, spans),
        );
      } catch (error) {
        spans.end(new Set(), error);
        throw error;
      }
      spans.end(new Set(outcome.failed.values()));
    }
    outcome.remember();
    this.#host.sagas.launch(outcome.launches);
    for (const record of outcome.failed.values()) {
      // Parked at the end (not at the failed record), so polls neither spin on it nor deliver
      // the records behind it; #rewindDue moves it back when the retry is due.
      const { end } = await this.#host.log.offsets(record.topic, record.partition);
      consumer.seek(record.topic, record.partition, end);
    }
  }

  async #handleInTransaction(
    scope: UnitScope,
    consumer: Consumer,
    records: readonly LogRecord[],
    nowMs: number,
    spans: ConsumeSpans,
  ): Promise<BatchOutcome> {
    const consumed: LogRecord[] = [];
    const failed = new Map<string, LogRecord>();
    const launches: SagaLaunch[] = [];
    const retries = new Map<string, Held>();
    const cleared: string[] = [];
    let handled = 0;
    let deadLettered = 0;
    for (const record of records) {
      const key = partitionKey(record.topic, record.partition);
      // Planted bug (tests only, src/planted-bugs.ts): the records behind a failed one are handled
      // now, and again when the partition rewinds to the failed record.
      if (failed.has(key) && plantedBug !== 'applied-twice') continue;
      const held = this.#held.get(key);
      const retrying = held !== undefined && held.offset === record.offset ? held : undefined;
      const attempts = (retrying?.attempts ?? 0) + 1;
      const recordLaunches: SagaLaunch[] = [];
      try {
        await scope.isolate(async (inner) => {
          if (!(await inner.consume(this.definition.group, record))) return;
          await this.definition.handler(
            toSubscriptionRecord(record),
            this.#context(inner, record, attempts, recordLaunches, spans),
          );
        });
        consumed.push(record);
        launches.push(...recordLaunches);
        if (held !== undefined) cleared.push(key);
        handled++;
      } catch (caught) {
        if (caught instanceof MustForward) {
          // The owner of the entity handles the record; its inbox applies it once.
          await scope.isolate((inner) =>
            this.#host.remote!.forward(inner, this.definition.name, record, caught.id, 1),
          );
          consumed.push(record);
          if (held !== undefined) cleared.push(key);
          continue;
        }
        const error = ensureError(caught);
        const delayMs = this.#strategy.nextDelayMs(
          attempts,
          error,
          this.#effects.random,
          retrying?.delayMs ?? 0,
        );
        if (delayMs !== undefined) {
          failed.set(key, record);
          retries.set(key, {
            partition: record.partition,
            offset: record.offset,
            attempts,
            delayMs,
            retryAt: nowMs + delayMs,
            rewound: false,
          });
          continue;
        }
        await scope.isolate(async (inner) => {
          await inner.consume(this.definition.group, record);
          await inner.publish(this.#host.deadLetterTopic, [this.#deadLetter(record, error, attempts, nowMs)]);
        });
        consumed.push(record);
        if (held !== undefined) cleared.push(key);
        deadLettered++;
      }
    }
    if (plantedBug !== 'offsets-apart') await scope.commitConsumed(consumer, consumed);
    return {
      consumed,
      failed,
      launches,
      // Applied by the caller once the transaction has committed, never for one that rolled back.
      remember: () => {
        for (const key of cleared) this.#held.delete(key);
        for (const [key, held] of retries) this.#held.set(key, held);
        this.#handled += handled;
        this.#deadLettered += deadLettered;
        if (plantedBug === 'offsets-apart') this.#uncommitted.push(...consumed);
      },
    };
  }

  /**
   * Handles a record another node forwarded here (cluster shape) inside `scope`, exactly once
   * (the inbox holds it under the subscription's group), under the same rules as a record
   * consumed here: a handler that throws is retried after the subscription's backoff (a durable
   * timer hands the record back to this partition's owner), and once the retries are spent, or
   * for a terminal error, the record goes to the dead-letter topic. A handler that again reaches
   * an entity owned elsewhere forwards it on, a few hops at most.
   */
  async deliver(
    scope: UnitScope,
    delivery: { record: LogRecord; id: string; hops: number; attempt: number },
  ): Promise<SagaLaunch[]> {
    const { record, hops, attempt } = delivery;
    const launches: SagaLaunch[] = [];
    try {
      await scope.isolate(async (inner) => {
        if (!(await inner.consume(this.definition.group, record))) return;
        await this.definition.handler(
          toSubscriptionRecord(record),
          this.#context(inner, record, attempt, launches),
        );
      });
      this.#handled++;
      return launches;
    } catch (caught) {
      if (caught instanceof MustForward && hops < maxForwardHops) {
        await scope.isolate((inner) =>
          this.#host.remote!.forward(inner, this.definition.name, record, caught.id, hops + 1),
        );
        return [];
      }
      await this.#failDelivered(scope, delivery, caught);
      return [];
    }
  }

  /** A forwarded record whose handler failed here: retried later, or dead-lettered. */
  async #failDelivered(
    scope: UnitScope,
    delivery: { record: LogRecord; id: string; hops: number; attempt: number },
    caught: unknown,
  ): Promise<void> {
    const error =
      caught instanceof MustForward
        ? new Error(
            `the handler's effects reach entities owned by different nodes (forwarded ${delivery.hops} times): on the cluster shape one record's effects must stay within one entity's partition; start a saga for more`,
          )
        : ensureError(caught);
    const delayMs =
      caught instanceof MustForward
        ? undefined
        : this.#strategy.nextDelayMs(delivery.attempt, error, this.#effects.random, 0);
    if (delayMs !== undefined) {
      const retry = {
        subscription: this.definition.name,
        record: delivery.record,
        id: delivery.id,
        hops: delivery.hops,
        attempt: delivery.attempt + 1,
      };
      await scope.isolate((inner) => this.#host.remote!.retryLater(inner, retry, delayMs));
      return;
    }
    const nowMs = this.#effects.clock.now();
    await scope.isolate(async (inner) => {
      await inner.consume(this.definition.group, delivery.record);
      await inner.publish(this.#host.deadLetterTopic, [
        this.#deadLetter(delivery.record, error, delivery.attempt, nowMs),
      ]);
    });
    this.#deadLettered++;
  }

  #context(
    scope: UnitScope,
    record: LogRecord,
    attempt: number,
    launches: SagaLaunch[],
    spans?: ConsumeSpans,
  ): SubscriptionContext {
    const fallback = () => childTraceparent(record.headers[traceparentHeader], this.#effects.random);
    const traceparent = spans === undefined ? fallback() : spans.traceparentOf(record, fallback);
    return {
      subscription: this.definition.name,
      attempt,
      traceparent,
      send: async (entity: AnyEntityDefinition, id: string, command: string, input: unknown) => {
        if (this.#host.remote?.owns(id) === false) throw new MustForward(id);
        const outcome = await applyCommand(scope, {
          entity,
          id,
          command,
          input,
          traceparent,
          nowMs: this.#effects.clock.now(),
          random: this.#effects.random,
        });
        if (!outcome.ok) throw outcome.error;
        return outcome.reply as never;
      },
      emit: async (topic: string, emitted: EmitRecord) => {
        await scope.publish(topic, [this.#effects.record(topic, emitted, traceparent)]);
      },
      startSaga: async <I, O>(saga: SagaDefinition<I, O>, id: string, input: I) => {
        const remote = this.#host.remote;
        if (remote !== undefined && !remote.owns(id)) {
          const requestId = `sub/${this.definition.group}/${record.topic}/${record.partition}/${record.offset}/${id}`;
          await remote.startSaga(scope, { requestId, saga: saga.name, id, input, traceparent });
          return;
        }
        const launch = await this.#host.sagas.create(scope, saga as SagaDefinition, id, input, traceparent);
        if (launch !== null) launches.push(launch);
      },
    } as SubscriptionContext;
  }

  #deadLetter(record: LogRecord, error: Error, attempts: number, nowMs: number): ProducerRecord {
    const message = truncateMessage(error.message);
    return {
      key: record.key,
      value: record.value,
      headers: {
        ...record.headers,
        [deadLetterHeaders.subscription]: this.definition.name,
        [deadLetterHeaders.topic]: record.topic,
        [deadLetterHeaders.partition]: String(record.partition),
        [deadLetterHeaders.offset]: String(record.offset),
        [deadLetterHeaders.error]: message,
        [deadLetterHeaders.attempts]: String(attempts),
        [deadLetterHeaders.at]: String(nowMs),
      },
      timestamp: nowMs,
    };
  }

  #rewind(consumer: Consumer, records: readonly LogRecord[]): void {
    const first = new Map<string, LogRecord>();
    for (const record of records) {
      const key = partitionKey(record.topic, record.partition);
      if (!first.has(key)) first.set(key, record);
    }
    for (const record of first.values()) {
      try {
        consumer.seek(record.topic, record.partition, record.offset);
      } catch {
        // The partition moved to another member, which starts from the committed offset.
      }
    }
  }

  /** Waits on the Timers port; returns early when the subscription stops. */
  #sleep(delayMs: number): Promise<void> {
    return this.#effects.wait(delayMs, this.#stop.signal);
  }
}
