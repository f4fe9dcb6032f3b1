import { Ownership } from '../cluster/ownership.ts';
import { messageIdOf, OutboxRelay } from '../cluster/relay.ts';
import { AlreadyExistsError, ValidationError } from '../errors.ts';
import type { Log, ProducerRecord } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';
import type { Json, Store, TimerRecord } from '../store/types.ts';
import type { Clock, Random, Timers } from '../time.ts';
import { ClusterCommitPath } from './cluster-commit-path.ts';
import { type AppliedRequest, ClusterNode } from './cluster-node.ts';
import { toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import { headers } from './entity-command.ts';
import type { GroupCommitter } from './group-commit.ts';
import { requireRuntimeId, requireRuntimeName } from './options.ts';
import type { ExecutionResult, RemoteEntities } from './saga-execution.ts';
import type { HousekeepingOptions } from './singletons.ts';
import type { RemoteSubscriptionEffects } from './subscription-runner.ts';
import {
  encodeWorkRequest,
  errorFromReply,
  startCreatedReply,
  type WorkRequest,
  workKindHeader,
} from './work-requests.ts';

/** The timer kind that hands a forwarded record back to its owner for another attempt. */
export const redeliverTimerKind = 'meridian.subscription.redeliver';

/** How a runtime runs as one node of a cluster (Kafka + PostgreSQL). */
export interface ClusterOptions {
  /** This node's name: unique in the cluster, stable across restarts of the same node. */
  node: string;
  /** Work partitions of the cluster; every node must agree. 1 to 1024. @default 16 */
  workPartitions?: number;
  /** The topic that carries work to partition owners. @default 'meridian.work' */
  workTopic?: string;
  /** The consumer group the nodes form. @default 'meridian.nodes' */
  group?: string;
  /** How long a command or saga start routed to another node waits for its reply. 1 to 600000. @default 10000 */
  requestTimeoutMs?: number;
  /** Replication factor of the work topic when the runtime creates it. @default the broker's default */
  replicationFactor?: number;
  /** How long replies of routed requests are kept (the leader deletes older ones). 60000 to 604800000. @default 3600000 */
  replyRetentionMs?: number;
  /**
   * How long inbox entries are kept: a record re-sent or redelivered later than this applies
   * again, so keep it above the log's retention. 3600000 to 31536000000. @default 604800000 (7 days)
   */
  inboxRetentionMs?: number;
  /**
   * Entities of this node's partitions whose last committed state it keeps in memory, so that a
   * command does not read its entity from PostgreSQL (an owner is its partitions' only writer;
   * every write still checks its version). 0 keeps none. 0 to 10000000. @default 10000
   */
  entityCacheSize?: number;
}

export interface NormalizedClusterOptions {
  readonly node: string;
  readonly workPartitions: number;
  readonly workTopic: string;
  readonly group: string;
  readonly requestTimeoutMs: number;
  readonly replicationFactor: number | undefined;
  readonly entityCacheSize: number;
  readonly housekeeping: HousekeepingOptions;
}

export function normalizeClusterOptions(options: ClusterOptions): NormalizedClusterOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(`'cluster' must be an object such as { node: 'node-1' }`);
  }
  return {
    node: requireRuntimeId(`'cluster.node'`, options.node),
    workPartitions: integerOption('cluster.workPartitions', options.workPartitions, 16, 1, 1024),
    workTopic: requireRuntimeName(`'cluster.workTopic'`, options.workTopic ?? 'meridian.work'),
    group: requireRuntimeName(`'cluster.group'`, options.group ?? 'meridian.nodes'),
    requestTimeoutMs: integerOption('cluster.requestTimeoutMs', options.requestTimeoutMs, 10_000, 1, 600_000),
    replicationFactor:
      options.replicationFactor === undefined
        ? undefined
        : integerOption('cluster.replicationFactor', options.replicationFactor, 1, 1, 16),
    entityCacheSize: integerOption('cluster.entityCacheSize', options.entityCacheSize, 10_000, 0, 10_000_000),
    housekeeping: {
      replyRetentionMs: integerOption(
        'cluster.replyRetentionMs',
        options.replyRetentionMs,
        3_600_000,
        60_000,
        604_800_000,
      ),
      inboxRetentionMs: integerOption(
        'cluster.inboxRetentionMs',
        options.inboxRetentionMs,
        604_800_000,
        3_600_000,
        31_536_000_000,
      ),
      intervalMs: 60_000,
    },
  };
}

/** What the cluster shape needs from the runtime it runs in. */
export interface ClusterRuntime {
  /** Resume the running and compensating sagas of `partitions`, and their timers. */
  resume(partitions: readonly number[]): Promise<void>;
  /** Park every execution of a saga in `partitions`; resolves once they have stopped. */
  evict(partitions: ReadonlySet<number>): Promise<void>;
  /** Applies a routed request in `scope`. */
  apply(scope: UnitScope, request: WorkRequest): Promise<AppliedRequest>;
  report(problem: { message: string; error: unknown }): void;
}

export interface ClusterShapeOptions {
  store: Store;
  log: Log;
  clock: Clock;
  timers: Timers;
  random: Random;
  options: NormalizedClusterOptions;
  report: (problem: { message: string; error: unknown }) => void;
  /** A durable timer now exists at `dueAt` (arms the timer scheduler; early is harmless). */
  timerScheduled: (dueAt: number) => void;
}

/**
 * The pieces of one cluster node, wired: ownership of work partitions (epochs in PostgreSQL),
 * the commit path (one fenced PostgreSQL transaction per group commit, records to the outbox),
 * the relay (outbox to Kafka), and the node's group membership and request routing.
 */
export class ClusterShape {
  readonly options: NormalizedClusterOptions;
  readonly ownership: Ownership;
  readonly path: ClusterCommitPath;
  readonly relay: OutboxRelay;
  #node: ClusterNode | undefined;
  readonly #shape: ClusterShapeOptions;
  #sequence = 0;

  constructor(shape: ClusterShapeOptions) {
    this.#shape = shape;
    this.options = shape.options;
    this.ownership = new Ownership({
      store: shape.store,
      node: shape.options.node,
      partitions: shape.options.workPartitions,
      clock: shape.clock,
    });
    this.relay = new OutboxRelay({
      store: shape.store,
      log: shape.log,
      ownership: this.ownership,
      timers: shape.timers,
      onError: (error) => shape.report({ message: 'publishing the outbox failed; retrying', error }),
    });
    this.path = new ClusterCommitPath({
      store: shape.store,
      log: shape.log,
      ownership: this.ownership,
      clock: shape.clock,
      onOutbox: () => this.relay.wake(),
      entityCacheSize: shape.options.entityCacheSize,
    });
  }

  /** Creates the work topic if needed, joins the group and starts relaying. */
  async start(committer: GroupCommitter, runtime: ClusterRuntime): Promise<void> {
    const { log } = this.#shape;
    try {
      await log.createTopic(this.options.workTopic, {
        partitions: this.options.workPartitions,
        retentionMs: 7 * 86_400_000,
        ...(this.options.replicationFactor === undefined
          ? {}
          : { replicationFactor: this.options.replicationFactor }),
      });
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw error;
    }
    const described = await log.describeTopic(this.options.workTopic);
    if (described.partitions !== this.options.workPartitions) {
      throw new ValidationError(
        `The work topic '${this.options.workTopic}' has ${described.partitions} partitions but 'cluster.workPartitions' is ${this.options.workPartitions}: every node must agree with the topic`,
      );
    }
    this.#node = new ClusterNode({
      store: this.#shape.store,
      log,
      ownership: this.ownership,
      committer,
      clock: this.#shape.clock,
      timers: this.#shape.timers,
      workTopic: this.options.workTopic,
      group: this.options.group,
      host: {
        gained: async (partitions) => {
          this.relay.wake();
          await runtime.resume(partitions);
        },
        lost: (partitions) => runtime.evict(new Set(partitions)),
        apply: (scope, request) => runtime.apply(scope, request),
        report: (problem) => runtime.report(problem),
      },
    });
    this.relay.start();
    await this.#node.start();
  }

  /** Leaves the group (handing partitions over), then publishes what is left in the outbox. */
  async stop(): Promise<void> {
    await this.relay.flush();
    await this.#node?.stop();
    await this.relay.stop();
  }

  get node(): ClusterNode {
    if (this.#node === undefined) throw new ValidationError('The cluster node is not started');
    return this.#node;
  }

  /** True when this node owns the work partition of `id`. */
  ownsId(id: string): boolean {
    return this.ownership.owns(this.ownership.partitionOf(id));
  }

  /** A request id unique across the cluster and across restarts of this node. */
  newRequestId(): string {
    this.#sequence++;
    const nonce = Math.floor(this.#shape.random.next() * 2 ** 48).toString(36);
    return `${this.options.node}/${this.#shape.clock.now().toString(36)}/${this.#sequence}/${nonce}`;
  }

  /** How a saga on this node reaches entities other nodes own. */
  remoteEntities(): RemoteEntities {
    return {
      owns: (id) => this.ownsId(id),
      publish: (scope, request, sagaId) => {
        // Expected before the unit that sends it commits: its reply cannot be missed.
        this.node.expectReply(request.requestId);
        const record = encodeWorkRequest(request);
        // Named for the saga, the outbox row is this node's relay's to send, at once.
        return scope.publish(this.options.workTopic, [
          { ...record, headers: { ...record.headers, [headers.saga]: sagaId } },
        ]);
      },
      awaitReply: (requestId, signal) => this.node.awaitReply(requestId, signal),
    };
  }

  /** How subscription handlers on this node reach entities and sagas other nodes own. */
  remoteSubscriptionEffects(): RemoteSubscriptionEffects {
    const publish = (scope: UnitScope, request: WorkRequest) =>
      scope.publish(this.options.workTopic, [encodeWorkRequest(request)]);
    return {
      owns: (id) => this.ownsId(id),
      forward: (scope, subscription, record, id, hops) =>
        publish(scope, {
          kind: 'deliver',
          requestId: `deliver/${subscription}/${messageIdOf(record)}/${hops}`,
          subscription,
          id,
          hops,
          attempt: 1,
          record,
        }),
      retryLater: async (scope, delivery, delayMs) => {
        const { subscription, record: consumed, id, hops, attempt } = delivery;
        const request: WorkRequest = {
          kind: 'deliver',
          requestId: `deliver/${subscription}/${messageIdOf(consumed)}/${hops}/a${attempt}`,
          subscription,
          id,
          hops,
          attempt,
          record: consumed,
        };
        const record = encodeWorkRequest(request);
        const dueAt = this.#shape.clock.now() + delayMs;
        this.#shape.timerScheduled(dueAt);
        await scope.tx.timers.schedule({
          id: `redeliver/${request.requestId}`,
          dueAt,
          kind: redeliverTimerKind,
          // `owner` names the entity whose partition the timer belongs to (this node's).
          payload: { owner: delivery.id, request: new TextDecoder().decode(record.value!) },
        });
      },
      startSaga: (scope, request) =>
        publish(scope, {
          kind: 'start',
          ...request,
          input: toJson(`The input of saga '${request.saga}'`, request.input),
        }),
    };
  }

  /**
   * Inside the transaction that fired `timers`: republishes the deliveries of the redelivery
   * timers among them (through the outbox), so a fired timer and its delivery commit together.
   */
  async redeliver(scope: UnitScope, timers: readonly TimerRecord[]): Promise<void> {
    const records: ProducerRecord[] = [];
    for (const timer of timers) {
      if (timer.kind !== redeliverTimerKind) continue;
      const request = (timer.payload as { request?: unknown } | null)?.request;
      if (typeof request !== 'string') continue;
      const owner = (timer.payload as { owner?: unknown }).owner;
      records.push({
        key: typeof owner === 'string' ? owner : null,
        value: new TextEncoder().encode(request),
        headers: { [workKindHeader]: 'deliver' },
      });
    }
    if (records.length > 0) await scope.publish(this.options.workTopic, records);
  }

  /** Waits until a saga another node runs has ended (woken when its end commits). */
  async awaitSagaEnd(id: string, signal: AbortSignal | undefined): Promise<ExecutionResult> {
    const record = await this.node.awaitSagaEnd(id, signal);
    return {
      outcome: record.status as ExecutionResult['outcome'],
      output: record.output,
      reason: record.reason,
    };
  }

  /** Sends a command to the owner of `id`'s partition; resolves with its reply. */
  routeSend(entity: string, id: string, command: string, input: unknown, traceparent: string): Promise<Json> {
    return this.route({
      kind: 'send',
      requestId: this.newRequestId(),
      entity,
      id,
      command,
      input: toJson(`The input of command '${command}' of entity '${entity}'`, input),
      traceparent,
    });
  }

  /**
   * Starts a saga on the owner of `id`'s partition (idempotent on the id). Its end is expected
   * from before the start is sent, so awaiting its result needs no read of the saga when this
   * start created it (the owner's reply says so).
   */
  async routeStart(saga: string, id: string, input: unknown, traceparent: string): Promise<void> {
    this.node.expectSagaEnd(id);
    let reply: Json;
    try {
      reply = await this.route({
        kind: 'start',
        requestId: this.newRequestId(),
        saga,
        id,
        input: toJson(`The input of saga '${saga}'`, input),
        traceparent,
      });
    } catch (error) {
      this.node.forgetSagaEnd(id);
      throw error;
    }
    if (reply !== startCreatedReply) this.node.forgetSagaEnd(id);
  }

  /** Delivers a signal at the owner of the saga's partition; resolves with what it did. */
  async routeSignal(sagaId: string, name: string, value: Json): Promise<Json> {
    return this.route({ kind: 'signal', requestId: this.newRequestId(), id: sagaId, name, value });
  }

  /** Asks the owner of the saga's partition to cancel it; resolves with what it did. */
  async routeCancel(sagaId: string, reason: string): Promise<Json> {
    return this.route({ kind: 'cancel', requestId: this.newRequestId(), id: sagaId, reason });
  }

  /** Routes `request` to its owner and returns the stored reply's value, or throws its error. */
  async route(request: WorkRequest, signal?: AbortSignal): Promise<Json> {
    const reply = await this.node.request(request, this.options.requestTimeoutMs, signal);
    if (!reply.ok) throw errorFromReply(reply);
    return reply.reply;
  }
}
