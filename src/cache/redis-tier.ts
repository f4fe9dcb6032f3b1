/**
 * The shared tier (L2) in Redis, a single server or a Redis Cluster (any ioredis client). Each
 * key is one hash: version stamp `v`, kind `k` (value, negative, tombstone), the entry's windows
 * `f`/`r`/`e` (wall-clock ms) and the encoded value `d`. Writes and invalidations are Lua
 * scripts that compare version stamps inside Redis, so a load that read old data can never
 * overwrite a newer entry or a newer invalidation (its tombstone), whichever node it runs on.
 *
 * Redis down or slow must not take the cache down: every command runs behind a circuit breaker
 * and a short timeout (Meridian's own policies); a failed read counts as a miss, a failed write
 * is skipped, a failed invalidation is kept (bounded) and replayed once Redis answers again, and
 * until then reads of that key skip Redis so its old entry cannot be served.
 */
import type { Cluster, Redis } from 'ioredis';
import { ensureError } from '../errors.ts';
import { Emitter, type Subscribe } from '../resilience/events.ts';
import {
  type CircuitBreakerPolicy,
  circuitBreaker,
  type Policy,
  pipeline,
  timeout,
} from '../resilience/index.ts';
import {
  integerOption,
  invalidOption,
  portsOf,
  requiredOption,
  type TimePorts,
} from '../resilience/options.ts';
import type { Entry } from './entry.ts';

export type RedisClient = Redis | Cluster;

export interface Codec<V> {
  encode(value: V): string;
  decode(text: string): V;
}

export const jsonCodec: Codec<never> = {
  encode: (value) => {
    const text = JSON.stringify(value);
    // JSON.stringify(undefined) is undefined: store it as null, which decodes as a negative entry.
    return text === undefined ? 'null' : text;
  },
  decode: (text) => JSON.parse(text) as never,
};

export interface RedisTierOptions extends Pick<TimePorts, 'clock' | 'timers'> {
  /** An ioredis client: `new Redis(...)` or `new Cluster(...)`. Required. */
  redis: RedisClient;
  /** Prefix of every key, so caches and tests do not collide. @default 'meridian:cache:' */
  keyPrefix?: string;
  /** How long one Redis command may take before the cache goes on without it, in [1, 10_000]. @default 100 */
  timeoutMs?: number;
  /**
   * The breaker in front of Redis. @default consecutive mode, opening after 5 failures in a row
   * for 1 s: an outage costs five timeouts, then reads go straight to the loader.
   */
  breaker?: CircuitBreakerPolicy;
  /** How long a tombstone outlives an invalidation, in [1_000, 86_400_000]. @default 60_000 */
  tombstoneTtlMs?: number;
  /** Invalidations kept for replay while Redis is unreachable, in [0, 1_000_000]. @default 10_000 */
  maxPendingInvalidations?: number;
}

export type SharedRead<V> =
  | { readonly kind: 'entry'; readonly entry: Entry<V> }
  /** Nothing usable; `version` is the key's fence epoch (its tombstone's version, or 0). */
  | { readonly kind: 'absent'; readonly version: number }
  | { readonly kind: 'unavailable' };

export interface RedisErrorEvent {
  readonly operation: 'read' | 'write' | 'invalidate' | 'decode';
  readonly key: string;
  readonly error: Error;
}

/** `auto` asks Redis to stamp the version: above the key's current one and at least its clock in µs. */
const AUTO = '-1';

const writeScript = `
if redis.replicate_commands then redis.replicate_commands() end
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
local version = tonumber(ARGV[1])
if version < 0 then
  local time = redis.call('TIME')
  version = tonumber(time[1]) * 1000000 + tonumber(time[2])
  if version <= current then version = current + 1 end
elseif version < current then
  return -1
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', string.format('%.0f', version), 'k', ARGV[2], 'f', ARGV[3], 'r', ARGV[4], 'e', ARGV[5], 'd', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return version
`;

const invalidateScript = `
if redis.replicate_commands then redis.replicate_commands() end
local state = redis.call('HMGET', KEYS[1], 'v', 'k')
local current = tonumber(state[1] or '-1')
local version = tonumber(ARGV[1])
if version < 0 then
  local time = redis.call('TIME')
  version = tonumber(time[1]) * 1000000 + tonumber(time[2])
  if version <= current then version = current + 1 end
elseif version <= current then
  return current
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', string.format('%.0f', version), 'k', 't')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return version
`;

type WriteCommand = (key: string, ...args: string[]) => Promise<number>;

const KIND_VALUE = 'v';
const KIND_NEGATIVE = 'n';
const KIND_TOMBSTONE = 't';

export class RedisTier {
  readonly keyPrefix: string;
  readonly timeoutMs: number;
  readonly tombstoneTtlMs: number;
  readonly maxPendingInvalidations: number;
  readonly breaker: CircuitBreakerPolicy;
  readonly #redis: RedisClient;
  readonly #policy: Policy;
  readonly #write: WriteCommand;
  readonly #invalidate: WriteCommand;
  /** Invalidations Redis has not taken yet: key → version (-1 for a stamp Redis chooses). */
  readonly #pending = new Map<string, number>();
  /**
   * Invalidations sent and not answered yet, by key: reads and writes of those keys skip Redis
   * meanwhile, so a read right after a delete (on the node that deleted) never finds the entry
   * the tombstone is about to replace.
   */
  readonly #landing = new Map<string, number>();
  #pendingDropped = 0;
  #replaying = false;
  readonly #errors = new Emitter<RedisErrorEvent>();
  readonly #replayed = new Emitter<{ key: string; version: number }>();

  /** Fires for each Redis command that failed, timed out or was refused by the breaker. */
  readonly onError: Subscribe<RedisErrorEvent> = this.#errors.subscribe;
  /** Fires when a kept invalidation reached Redis, so the cache can tell the other nodes again. */
  readonly onReplayed: Subscribe<{ key: string; version: number }> = this.#replayed.subscribe;

  constructor(options: RedisTierOptions) {
    const redis = requiredOption('redis', options.redis);
    if (typeof redis?.defineCommand !== 'function') invalidOption('redis', 'an ioredis client', redis);
    this.#redis = redis;
    this.keyPrefix = options.keyPrefix ?? 'meridian:cache:';
    if (typeof this.keyPrefix !== 'string') invalidOption('keyPrefix', 'a string', this.keyPrefix);
    this.timeoutMs = integerOption('timeoutMs', options.timeoutMs, 100, 1, 10_000);
    this.tombstoneTtlMs = integerOption('tombstoneTtlMs', options.tombstoneTtlMs, 60_000, 1000, 86_400_000);
    this.maxPendingInvalidations = integerOption(
      'maxPendingInvalidations',
      options.maxPendingInvalidations,
      10_000,
      0,
      1_000_000,
    );
    const { clock, timers } = portsOf(options);
    this.breaker =
      options.breaker ??
      circuitBreaker({
        name: 'cache-redis',
        mode: 'consecutive',
        failureThreshold: 5,
        openDurationMs: 1000,
        clock,
      });
    this.#policy = pipeline(
      this.breaker,
      timeout({ timeoutMs: this.timeoutMs, strategy: 'aggressive', clock, timers }),
    );
    redis.defineCommand('meridianCacheWrite', { numberOfKeys: 1, lua: writeScript });
    redis.defineCommand('meridianCacheInvalidate', { numberOfKeys: 1, lua: invalidateScript });
    const commands = redis as unknown as Record<string, WriteCommand>;
    this.#write = commands.meridianCacheWrite!.bind(redis);
    this.#invalidate = commands.meridianCacheInvalidate!.bind(redis);
    this.breaker.onClose(() => void this.#replay());
  }

  /** Invalidations waiting for Redis, and how many were dropped because the bound was reached. */
  get pendingInvalidations(): { readonly kept: number; readonly dropped: number } {
    return { kept: this.#pending.size, dropped: this.#pendingDropped };
  }

  async read<V>(key: string, codec: Codec<V>): Promise<SharedRead<V>> {
    if (this.#pending.has(key) || this.#landing.has(key)) return { kind: 'unavailable' };
    let fields: (string | null)[];
    try {
      fields = await this.#policy.execute(() =>
        this.#redis.hmget(this.keyPrefix + key, 'v', 'k', 'f', 'r', 'e', 'd'),
      );
    } catch (error) {
      return this.#failed('read', key, error, { kind: 'unavailable' });
    }
    this.#afterSuccess();
    const [version, kind, fresh, revalidate, expires, data] = fields;
    if (version === null || version === undefined) return { kind: 'absent', version: 0 };
    if (kind === KIND_TOMBSTONE || data === null || data === undefined)
      return { kind: 'absent', version: Number(version) };
    let value: V;
    try {
      value = codec.decode(data);
    } catch (error) {
      // An entry this build cannot decode (another version's format, or damage) is a miss.
      return this.#failed('decode', key, error, { kind: 'absent', version: Number(version) });
    }
    const entry: Entry<V> = {
      value,
      version: Number(version),
      negative: kind === KIND_NEGATIVE,
      freshUntilMs: Number(fresh),
      revalidateUntilMs: Number(revalidate),
      errorUntilMs: Number(expires),
      bytes: data.length,
    };
    return { kind: 'entry', entry };
  }

  /**
   * Stores an encoded entry unless Redis holds a newer version (or a newer tombstone). With
   * `autoVersion`, Redis stamps a version above everything it holds. Returns the stored version,
   * 'rejected', or 'unavailable'.
   */
  async write(
    key: string,
    entry: Entry<unknown>,
    data: string,
    autoVersion: boolean,
    nowMs: number,
  ): Promise<number | 'rejected' | 'unavailable'> {
    if (this.#pending.has(key) || this.#landing.has(key)) return 'unavailable';
    const ttlMs = Math.max(1, Math.ceil(entry.errorUntilMs - nowMs));
    let stored: number;
    try {
      stored = await this.#policy.execute(() =>
        this.#write(
          this.keyPrefix + key,
          autoVersion ? AUTO : String(entry.version),
          entry.negative ? KIND_NEGATIVE : KIND_VALUE,
          String(entry.freshUntilMs),
          String(entry.revalidateUntilMs),
          String(entry.errorUntilMs),
          data,
          String(ttlMs),
        ),
      );
    } catch (error) {
      return this.#failed('write', key, error, 'unavailable');
    }
    this.#afterSuccess();
    return stored < 0 ? 'rejected' : stored;
  }

  /**
   * Writes a tombstone newer than whatever the key holds (or at `version`, unless the key already
   * holds that version or a later one). Returns the tombstone's version, or 'unavailable' when
   * Redis did not answer: then the invalidation is kept and replayed later.
   */
  async invalidate(key: string, version: number | undefined): Promise<number | 'unavailable'> {
    this.#landing.set(key, (this.#landing.get(key) ?? 0) + 1);
    let result: number | 'unavailable';
    try {
      result = await this.#tryInvalidate(key, version ?? -1);
    } finally {
      const left = this.#landing.get(key)! - 1;
      if (left === 0) this.#landing.delete(key);
      else this.#landing.set(key, left);
    }
    if (result !== 'unavailable') return result;
    this.#keep(key, version ?? -1);
    return 'unavailable';
  }

  async #tryInvalidate(key: string, version: number): Promise<number | 'unavailable'> {
    try {
      const stored = await this.#policy.execute(() =>
        this.#invalidate(
          this.keyPrefix + key,
          version < 0 ? AUTO : String(version),
          String(this.tombstoneTtlMs),
        ),
      );
      return Number(stored);
    } catch (error) {
      return this.#failed('invalidate', key, error, 'unavailable');
    }
  }

  #keep(key: string, version: number): void {
    if (this.maxPendingInvalidations === 0) {
      this.#pendingDropped++;
      return;
    }
    const previous = this.#pending.get(key);
    // An automatic stamp (-1) beats any given version: Redis will stamp above everything.
    const merged =
      previous === undefined ? version : previous < 0 || version < 0 ? -1 : Math.max(previous, version);
    this.#pending.delete(key);
    this.#pending.set(key, merged);
    if (this.#pending.size > this.maxPendingInvalidations) {
      // Forgetting the oldest is the bounded choice: its Redis entry expires by its own TTL.
      this.#pending.delete(this.#pending.keys().next().value as string);
      this.#pendingDropped++;
    }
  }

  #afterSuccess(): void {
    if (this.#pending.size > 0 && !this.#replaying) void this.#replay();
  }

  async #replay(): Promise<void> {
    if (this.#replaying) return;
    this.#replaying = true;
    try {
      for (const [key, version] of [...this.#pending]) {
        const stored = await this.#tryInvalidate(key, version);
        if (stored === 'unavailable') return;
        if (this.#pending.get(key) === version) this.#pending.delete(key);
        if (this.#replayed.hasListeners) this.#replayed.emit({ key, version: stored });
      }
    } finally {
      this.#replaying = false;
    }
  }

  #failed<R>(operation: RedisErrorEvent['operation'], key: string, error: unknown, result: R): R {
    if (this.#errors.hasListeners) this.#errors.emit({ operation, key, error: ensureError(error) });
    return result;
  }
}

/** The Redis tier for a cache's `l2` option. Share one per Redis deployment and key prefix. */
export function redisTier(options: RedisTierOptions): RedisTier {
  return new RedisTier(options);
}
