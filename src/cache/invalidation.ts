/**
 * Invalidation across nodes. A write or invalidation on one node must reach every node's
 * in-process tier; a message can be missed (a node disconnected from Redis), so the bus also
 * tells each cache when it may have missed some ("repair"): the cache then drops its whole
 * in-process tier and marks its loads in flight stale. Between a miss and its repair, staleness
 * is bounded by the in-process TTL, which is why `l1.ttlMs` exists.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Subscription } from '../resilience/index.ts';
import type { RedisClient } from './redis-tier.ts';

export interface InvalidationMessage {
  readonly cache: string;
  /** The key, or null for every key of the cache. */
  readonly key: string | null;
  /** The version the key was invalidated at (a tombstone's), or null when unknown. */
  readonly version: number | null;
}

export interface InvalidationHandlers {
  invalidate(key: string | null, version: number | null): void;
  /** Messages may have been missed: forget everything that could be stale. */
  repair(): void;
}

export interface InvalidationBus {
  /** This node's id: a node ignores its own messages. */
  readonly nodeId: string;
  /** Sends to every other node; best effort, never throws (a lost message ends in a repair or a TTL). */
  publish(message: InvalidationMessage): void;
  join(cache: string, handlers: InvalidationHandlers): Subscription;
  close(): Promise<void>;
}

/** The longest message accepted off the wire; keys are bounded well below it. */
const MAX_MESSAGE_CHARS = 8192;

function subscription(dispose: () => void): Subscription {
  let active = true;
  const once = () => {
    if (!active) return;
    active = false;
    dispose();
  };
  return { dispose: once, [Symbol.dispose]: once };
}

/** Handlers by cache name, shared by both buses. */
class Members {
  readonly #byCache = new Map<string, Set<InvalidationHandlers>>();

  join(cache: string, handlers: InvalidationHandlers): Subscription {
    const set = this.#byCache.get(cache) ?? new Set<InvalidationHandlers>();
    this.#byCache.set(cache, set);
    set.add(handlers);
    return subscription(() => set.delete(handlers));
  }

  deliver(message: InvalidationMessage): void {
    for (const handlers of this.#byCache.get(message.cache) ?? [])
      handlers.invalidate(message.key, message.version);
  }

  repair(): void {
    for (const set of this.#byCache.values()) for (const handlers of set) handlers.repair();
  }
}

/** Parses a message off the wire; anything malformed is dropped (and counted by the caller). */
export function parseMessage(text: string): (InvalidationMessage & { origin: string }) | undefined {
  if (text.length > MAX_MESSAGE_CHARS) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { origin, cache, key, version } = parsed as Record<string, unknown>;
  if (typeof origin !== 'string' || typeof cache !== 'string') return undefined;
  if (key !== null && typeof key !== 'string') return undefined;
  if (version !== null && !(typeof version === 'number' && Number.isFinite(version))) return undefined;
  return { origin, cache, key, version };
}

export interface RedisInvalidationBusOptions {
  /** The client to publish with; subscribing uses a duplicate of it. Required. */
  redis: RedisClient;
  /** @default 'meridian:cache:invalidations' */
  channel?: string;
  /** @default a random UUID */
  nodeId?: string;
}

/**
 * Redis pub/sub as the bus. After the subscriber connection drops and comes back, it subscribes
 * again and only then asks every cache to repair, so nothing published after the repair is lost.
 */
export class RedisInvalidationBus implements InvalidationBus {
  readonly nodeId: string;
  readonly channel: string;
  readonly #publisher: RedisClient;
  readonly #subscriber: RedisClient;
  readonly #members = new Members();
  #malformed = 0;
  #repairs = 0;
  /** True until the first subscription is active, and again whenever the connection drops. */
  #disconnected = true;
  #closed = false;
  #firstSubscribed!: () => void;
  readonly #subscribed = new Promise<void>((resolve) => {
    this.#firstSubscribed = resolve;
  });

  constructor(options: RedisInvalidationBusOptions) {
    this.#publisher = options.redis;
    this.channel = options.channel ?? 'meridian:cache:invalidations';
    this.nodeId = options.nodeId ?? randomUUID();
    // The bus subscribes again itself on every 'ready' (#reconnected). ioredis's own resubscription
    // is off on a plain client: it leaves a SUBSCRIBE that fails (Redis dying again just after a
    // reconnect) as an unhandled rejection, which ends a Node process. A Cluster's subscriber
    // resubscribes through callbacks and keeps its options.
    this.#subscriber = options.redis.isCluster
      ? (options.redis as Cluster).duplicate()
      : (options.redis as Redis).duplicate({ autoResubscribe: false });
    this.#subscriber.on('error', () => {});
    this.#subscriber.on('message', (channel: string, text: string) => this.#receive(channel, text));
    this.#subscriber.on('close', () => {
      this.#disconnected = true;
    });
    this.#subscriber.on('ready', () => void this.#reconnected());
    // A duplicate of a lazyConnect client is lazy too: the subscriber must connect by itself.
    if (this.#subscriber.status === 'wait') this.#subscriber.connect().catch(() => {});
  }

  /** Resolves once the subscription is active (messages published from then on arrive). */
  ready(): Promise<void> {
    return this.#subscribed;
  }

  get stats(): { readonly malformed: number; readonly repairs: number } {
    return { malformed: this.#malformed, repairs: this.#repairs };
  }

  publish(message: InvalidationMessage): void {
    const text = JSON.stringify({ origin: this.nodeId, ...message });
    this.#publisher.publish(this.channel, text).catch(() => {
      // Lost: the receivers' own disconnection (then repair) or their L1 TTL bounds the staleness.
    });
  }

  join(cache: string, handlers: InvalidationHandlers): Subscription {
    return this.#members.join(cache, handlers);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subscriber.disconnect();
  }

  #receive(channel: string, text: string): void {
    if (channel !== this.channel) return;
    const message = parseMessage(text);
    if (message === undefined) {
      this.#malformed++;
      return;
    }
    if (message.origin === this.nodeId) return;
    this.#members.deliver(message);
  }

  async #reconnected(): Promise<void> {
    if (!this.#disconnected || this.#closed) return;
    this.#disconnected = false;
    try {
      await this.#subscriber.subscribe(this.channel);
    } catch {
      this.#disconnected = true;
      return;
    }
    this.#firstSubscribed();
    this.#repairs++;
    this.#members.repair();
  }
}

export function redisInvalidationBus(options: RedisInvalidationBusOptions): RedisInvalidationBus {
  return new RedisInvalidationBus(options);
}

/**
 * Nodes in one process (tests, simulation): `connect()` gives each simulated node its bus, and
 * `disconnect`/`reconnect` drop a node's messages and then repair it, as Redis pub/sub would.
 */
export class MemoryInvalidationHub {
  readonly #nodes = new Map<string, { members: Members; connected: boolean }>();

  connect(nodeId: string = randomUUID()): InvalidationBus {
    const node = { members: new Members(), connected: true };
    this.#nodes.set(nodeId, node);
    return {
      nodeId,
      publish: (message) => {
        for (const [id, other] of this.#nodes)
          if (id !== nodeId && other.connected) other.members.deliver(message);
      },
      join: (cache, handlers) => node.members.join(cache, handlers),
      close: async () => {
        this.#nodes.delete(nodeId);
      },
    };
  }

  disconnect(nodeId: string): void {
    const node = this.#nodes.get(nodeId);
    if (node !== undefined) node.connected = false;
  }

  reconnect(nodeId: string): void {
    const node = this.#nodes.get(nodeId);
    if (node === undefined || node.connected) return;
    node.connected = true;
    node.members.repair();
  }
}
