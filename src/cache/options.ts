/**
 * A cache's options, validated once at construction with the project's option helpers: each
 * error names the option, the rule and the value.
 */
import {
  durationOption,
  functionOption,
  integerOption,
  invalidOption,
  portsOf,
  requiredOption,
  type TimePorts,
} from '../resilience/options.ts';
import type { Clock } from '../time.ts';
import type { Windows } from './entry.ts';
import type { InvalidationBus } from './invalidation.ts';
import { type Codec, jsonCodec, type RedisTier } from './redis-tier.ts';

/** Loads the value of a key from the source of truth (a store read, a remote call). */
export type Loader<V> = (key: string) => V | PromiseLike<V>;

export interface MemoryTierConfig {
  /** Entries kept at most, least recently used out first, in [1, 10_000_000]. @default 10_000 */
  maxEntries?: number;
  /** Bytes kept at most (as `sizeOf` counts them), in [1024, 2^40]. @default 67_108_864 (64 MiB) */
  maxBytes?: number;
  /**
   * How long a copy lives in this process at most, whatever its windows in Redis, in
   * [1, 86_400_000]. It bounds how stale a node can be after missing an invalidation.
   * @default the cache's ttlMs
   */
  ttlMs?: number;
}

export interface CacheOptions<V> extends Pick<TimePorts, 'clock'> {
  /** Names the cache in keys, events, messages and metrics: [a-z0-9._-], 1 to 64 characters. Required. */
  name: string;
  /** How long a loaded value is fresh, in [1, 86_400_000]. Required: only the data's owner knows. */
  ttlMs: number;
  /** After ttlMs, how long a value is still served while one background load refreshes it. @default 0 */
  staleWhileRevalidateMs?: number;
  /** After ttlMs, how long a value is still served when loading fails (grace). @default 0 */
  staleIfErrorMs?: number;
  /** How long an absence (see isNegative) is cached, in [0, 86_400_000]; 0 caches none. @default ttlMs */
  negativeTtlMs?: number;
  /** Which loaded values are absences. @default null or undefined */
  isNegative?: (value: V) => boolean;
  /** The read-through loader `get(key)` uses; `get(key, loader)` overrides it (cache-aside). */
  loader?: Loader<V>;
  /**
   * The value's own version (an entity's version), compared on every write so an older value
   * never replaces a newer one. @default none: the version is the fence epoch the load started at
   */
  versionOf?: (value: V) => number | undefined;
  /** The in-process tier, or false for Redis alone. @default { maxEntries: 10_000 } */
  l1?: MemoryTierConfig | false;
  /** The Redis tier (`redisTier(...)`). @default none: in process only */
  l2?: RedisTier;
  /** Carries writes and invalidations to the other nodes. @default none: one node */
  invalidation?: InvalidationBus;
  /** How values are written to Redis and measured. @default JSON */
  codec?: Codec<V>;
  /** An entry's size for maxBytes. @default the encoded length plus the key's */
  sizeOf?: (value: V, key: string) => number;
  /**
   * A load that took longer than this still answers its callers but is not stored: by then an
   * invalidation's tombstone may have expired. In [1, 3_600_000], below l2.tombstoneTtlMs.
   * @default 30_000
   */
  maxLoadMs?: number;
}

export interface ResolvedOptions<V> {
  readonly name: string;
  readonly windows: Windows;
  readonly negativeWindows: Windows;
  readonly isNegative: (value: V) => boolean;
  readonly loader: Loader<V> | undefined;
  readonly versionOf: ((value: V) => number | undefined) | undefined;
  readonly l1: Required<MemoryTierConfig> | undefined;
  readonly codec: Codec<V>;
  readonly sizeOf: ((value: V, key: string) => number) | undefined;
  readonly maxLoadMs: number;
  readonly clock: Clock;
}

const CACHE_NAME = /^[a-z0-9._-]{1,64}$/;

const isAbsent = (value: unknown) => value === null || value === undefined;

function optionalFunction<F extends (...args: never[]) => unknown>(option: string, value: F | undefined) {
  return value === undefined ? undefined : functionOption(option, value, value);
}

function memoryConfig(option: MemoryTierConfig | false | undefined, ttlMs: number) {
  if (option === false) return undefined;
  if (option !== undefined && (typeof option !== 'object' || option === null))
    invalidOption('l1', 'an object or false', option);
  return {
    maxEntries: integerOption('l1.maxEntries', option?.maxEntries, 10_000, 1, 10_000_000),
    maxBytes: integerOption('l1.maxBytes', option?.maxBytes, 64 * 1024 * 1024, 1024, 2 ** 40),
    ttlMs: durationOption('l1.ttlMs', option?.ttlMs, ttlMs, 1),
  };
}

export function resolveOptions<V>(options: CacheOptions<V>): ResolvedOptions<V> {
  const name = requiredOption('name', options.name);
  if (typeof name !== 'string' || !CACHE_NAME.test(name))
    invalidOption('name', `matching ${CACHE_NAME}`, name);
  const ttlMs = durationOption('ttlMs', requiredOption('ttlMs', options.ttlMs), 0, 1);
  const staleWhileRevalidateMs = durationOption('staleWhileRevalidateMs', options.staleWhileRevalidateMs, 0);
  const staleIfErrorMs = durationOption('staleIfErrorMs', options.staleIfErrorMs, 0);
  const negativeTtlMs = durationOption('negativeTtlMs', options.negativeTtlMs, ttlMs);
  const maxLoadMs = integerOption('maxLoadMs', options.maxLoadMs, 30_000, 1, 3_600_000);
  if (options.l2 !== undefined && maxLoadMs >= options.l2.tombstoneTtlMs)
    invalidOption('maxLoadMs', `< the Redis tier's tombstoneTtlMs (${options.l2.tombstoneTtlMs})`, maxLoadMs);
  const l1 = memoryConfig(options.l1, ttlMs);
  if (l1 === undefined && options.l2 === undefined)
    invalidOption('l1', 'kept when there is no l2 (a cache needs at least one tier)', options.l1);
  const codec = options.codec ?? (jsonCodec as Codec<V>);
  if (typeof codec?.encode !== 'function' || typeof codec.decode !== 'function')
    invalidOption('codec', 'an object with encode and decode functions', codec);
  return {
    name,
    windows: { ttlMs, staleWhileRevalidateMs, staleIfErrorMs },
    negativeWindows: { ttlMs: negativeTtlMs, staleWhileRevalidateMs, staleIfErrorMs },
    isNegative: functionOption('isNegative', options.isNegative, isAbsent),
    loader: optionalFunction('loader', options.loader),
    versionOf: optionalFunction('versionOf', options.versionOf),
    l1,
    codec,
    sizeOf: optionalFunction('sizeOf', options.sizeOf),
    maxLoadMs,
    clock: portsOf(options).clock,
  };
}
