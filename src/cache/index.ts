/**
 * The cache layer: read-through and cache-aside over an in-process LRU (L1) and Redis or Redis
 * Cluster (L2), with single flight, stale-while-revalidate, serve-stale-on-error, negative
 * caching, version stamps compared on write, and invalidation across nodes. See docs/cache.md.
 */
export { Cache, createCache, type DeleteOptions, MAX_KEY_CHARS, type SetOptions } from './cache.ts';
export {
  bindEntityChanges,
  type CommittedEntityChange,
  type EntityBindingOptions,
  type EntityChangeSource,
} from './entity-binding.ts';
export type {
  CacheSnapshot,
  EvictEvent,
  HitEvent,
  LoadFailedEvent,
  MissEvent,
  StaleServedEvent,
  Tier as CacheTier,
} from './events.ts';
export {
  type InvalidationBus,
  type InvalidationHandlers,
  type InvalidationMessage,
  MemoryInvalidationHub,
  RedisInvalidationBus,
  type RedisInvalidationBusOptions,
  redisInvalidationBus,
} from './invalidation.ts';
export type { CacheOptions, Loader, MemoryTierConfig } from './options.ts';
export {
  type Codec,
  type RedisClient,
  type RedisErrorEvent as CacheRedisErrorEvent,
  RedisTier,
  type RedisTierOptions,
  redisTier,
} from './redis-tier.ts';
