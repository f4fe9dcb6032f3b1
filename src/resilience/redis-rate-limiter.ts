/**
 * A rate limit shared by every instance of a service, kept in Redis. Each decision is one atomic
 * Lua script (sent once, then run by SHA through ioredis `defineCommand`), timed by Redis's own
 * clock so instances with skewed clocks still share one limit. The GCRA script keeps a single
 * number per key; the token-bucket script keeps two. Keys expire once they would be full again.
 *
 * When Redis cannot answer within `redisTimeoutMs`, the limiter cannot know the shared count and
 * must choose: `fail-open` lets the request through (availability first: a Redis outage must not
 * take the API down), `fail-closed` refuses it (protection first: the limit guards something
 * that must not be overrun). No default is safe for both, so the option is required, and each
 * time it happens `onRedisError` fires so the outage shows on dashboards.
 */
import type { Cluster, Redis } from 'ioredis';
import { ensureError } from '../errors.ts';
import type { Timers } from '../time.ts';
import { Emitter, type Subscribe } from './events.ts';
import { checkLimitOptions, type LimitOptions } from './limiter-options.ts';
import {
  durationOption,
  integerOption,
  invalidOption,
  oneOfOption,
  portsOf,
  requiredOption,
  type TimePorts,
} from './options.ts';
import { checkCost, type RateLimitDecision, type RateLimiter } from './rate-limit.ts';

export type RedisFailureMode = 'fail-open' | 'fail-closed';
export type SharedAlgorithm = 'gcra' | 'token-bucket';

export interface RedisRateLimiterOptions extends LimitOptions, Pick<TimePorts, 'timers'> {
  /**
   * The ioredis client, a single server (`Redis`) or a Redis Cluster (`Cluster`: each decision
   * touches one key, so it runs on the key's shard). Required. The limiter defines its script
   * commands on it.
   */
  redis: Redis | Cluster;
  /** What to decide when Redis does not answer. Required: see the module comment. */
  onRedisError: RedisFailureMode;
  /** @default 'gcra' */
  algorithm?: SharedAlgorithm;
  /** Prefix of every Redis key, so limits of different services and tests do not collide. @default 'meridian:ratelimit:' */
  keyPrefix?: string;
  /** How long to wait for Redis before applying `onRedisError`, in [1, 60_000]. @default 250 */
  redisTimeoutMs?: number;
  /** The `retryAfterMs` of a request refused because Redis failed (fail-closed), in [1, 3_600_000]. @default 1000 */
  failClosedRetryAfterMs?: number;
}

export interface RedisErrorEvent {
  error: Error;
  /** What the limiter decided instead. */
  decision: 'allowed' | 'refused';
}

/**
 * GCRA in integer microseconds. KEYS[1]: the key. ARGV: emission interval (µs), burst, cost.
 * Returns {allowed (0|1), retryAfterMs, remaining}.
 */
const gcraScript = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nextTat = tat + cost * interval
local allowAt = nextTat - burst * interval
if now < allowAt then
  return {0, math.ceil((allowAt - now) / 1000), math.floor((now + burst * interval - tat) / interval)}
end
redis.call('SET', KEYS[1], string.format('%.0f', nextTat), 'PX', math.max(1, math.ceil((nextTat - now) / 1000)))
return {1, 0, math.floor((now + burst * interval - nextTat) / interval)}
`;

/**
 * Token bucket in microseconds. KEYS[1]: the key (a hash of tokens and update time). ARGV:
 * tokens per second, burst, cost. Returns {allowed (0|1), retryAfterMs, remaining}.
 */
const tokenBucketScript = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
if now > updated then
  tokens = math.min(burst, tokens + (now - updated) * rate / 1000000)
  updated = now
end
local allowed = 0
local retryAfterMs = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retryAfterMs = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.0f', updated))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) * 1000 / rate)))
return {allowed, retryAfterMs, math.floor(tokens)}
`;

const commandNames: Record<SharedAlgorithm, string> = {
  gcra: 'meridianRateLimitGcra',
  'token-bucket': 'meridianRateLimitTokenBucket',
};

type ScriptCommand = (
  key: string,
  first: string,
  burst: string,
  cost: string,
) => Promise<[number, number, number]>;

class RedisTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`Redis did not answer within ${timeoutMs} ms`);
    this.name = 'RedisTimeoutError';
  }
}

export class RedisRateLimiter implements RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly algorithm: SharedAlgorithm;
  readonly keyPrefix: string;
  readonly onRedisErrorMode: RedisFailureMode;
  readonly redisTimeoutMs: number;
  readonly failClosedRetryAfterMs: number;
  readonly #command: ScriptCommand;
  /** GCRA: the emission interval in whole µs, rounded up so the shared rate never exceeds the configured one. */
  readonly #firstArgument: string;
  readonly #timers: Timers;
  readonly #redisErrors = new Emitter<RedisErrorEvent>();

  /** Fires each time Redis fails to answer and the failure mode decides instead. */
  readonly onRedisError: Subscribe<RedisErrorEvent> = this.#redisErrors.subscribe;

  constructor(options: RedisRateLimiterOptions) {
    ({ ratePerSecond: this.ratePerSecond, burst: this.burst } = checkLimitOptions(options));
    const redis = requiredOption('redis', options.redis);
    if (typeof redis.defineCommand !== 'function') invalidOption('redis', 'an ioredis client', redis);
    this.onRedisErrorMode = oneOfOption(
      'onRedisError',
      requiredOption('onRedisError', options.onRedisError),
      undefined,
      ['fail-open', 'fail-closed'],
    );
    this.algorithm = oneOfOption('algorithm', options.algorithm, 'gcra', ['gcra', 'token-bucket']);
    this.keyPrefix = options.keyPrefix ?? 'meridian:ratelimit:';
    this.redisTimeoutMs = integerOption('redisTimeoutMs', options.redisTimeoutMs, 250, 1, 60_000);
    this.failClosedRetryAfterMs = durationOption(
      'failClosedRetryAfterMs',
      options.failClosedRetryAfterMs,
      1000,
      1,
    );
    if (this.failClosedRetryAfterMs > 3_600_000)
      invalidOption('failClosedRetryAfterMs', '<= 3600000', this.failClosedRetryAfterMs);
    this.#timers = portsOf(options).timers;

    const name = commandNames[this.algorithm];
    redis.defineCommand(name, {
      numberOfKeys: 1,
      lua: this.algorithm === 'gcra' ? gcraScript : tokenBucketScript,
    });
    const command = (redis as unknown as Record<string, ScriptCommand>)[name];
    if (typeof command !== 'function') invalidOption('redis', 'a client that supports defineCommand', redis);
    this.#command = command.bind(redis);
    this.#firstArgument =
      this.algorithm === 'gcra'
        ? String(Math.ceil(1_000_000 / this.ratePerSecond))
        : String(this.ratePerSecond);
  }

  async consume(key: string, cost = 1): Promise<RateLimitDecision> {
    if (cost !== 1) checkCost(cost, this.burst);
    try {
      const [allowed, retryAfterMs, remaining] = await this.#withTimeout(
        this.#command(this.keyPrefix + key, this.#firstArgument, String(this.burst), String(cost)),
      );
      return { allowed: allowed === 1, retryAfterMs, remaining: Math.max(0, remaining) };
    } catch (error) {
      const allowed = this.onRedisErrorMode === 'fail-open';
      if (this.#redisErrors.hasListeners) {
        this.#redisErrors.emit({ error: ensureError(error), decision: allowed ? 'allowed' : 'refused' });
      }
      return allowed
        ? { allowed: true, retryAfterMs: 0, remaining: 0 }
        : { allowed: false, retryAfterMs: this.failClosedRetryAfterMs, remaining: 0 };
    }
  }

  #withTimeout<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.#timers.setTimeout(
        () => reject(new RedisTimeoutError(this.redisTimeoutMs)),
        this.redisTimeoutMs,
      );
      // The Redis socket keeps the process alive while the command is pending; this guard need not.
      timer.unref?.();
      promise.then(
        (value) => {
          timer.cancel();
          resolve(value);
        },
        (error: unknown) => {
          timer.cancel();
          reject(error);
        },
      );
    });
  }
}

/** A rate limiter shared across instances through Redis. */
export function redisRateLimiter(options: RedisRateLimiterOptions): RedisRateLimiter {
  return new RedisRateLimiter(options);
}
