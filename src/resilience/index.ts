/**
 * Resilience policies: retry, timeout, circuit breaker, bulkhead, rate limits (in process and
 * shared through Redis), fallback, hedging and adaptive load shedding, composable with
 * `pipeline`. Each policy's events are disposable subscriptions for metrics and dashboards.
 */
export * from './aimd-limit.ts';
export * from './backoff.ts';
export * from './bulkhead.ts';
export * from './circuit-breaker.ts';
export type { ConcurrencyLimit, LimitBounds, LimitSample } from './concurrency-limit.ts';
export type { PolicyContext } from './context.ts';
export * from './errors.ts';
export type { Listener, Subscribe, Subscription } from './events.ts';
export * from './fallback.ts';
export * from './gcra.ts';
export * from './gradient-limit.ts';
export * from './hedge.ts';
export type { LimitOptions } from './limiter-options.ts';
export * from './load-shedder.ts';
export * from './pipeline.ts';
export type { AltOf, Operation, Policy } from './policy.ts';
export {
  type RateLimitDecision,
  type RateLimiter,
  type RateLimitOptions,
  RateLimitPolicy,
  type RateLimitRejectEvent,
  rateLimit,
} from './rate-limit.ts';
export * from './redis-rate-limiter.ts';
export * from './retry.ts';
export * from './timeout.ts';
export * from './token-bucket.ts';
