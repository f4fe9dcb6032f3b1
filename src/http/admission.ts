/**
 * Admission control for gateway routes: rate limits (per route or per client) and load
 * shedding, decided in the route's first hook, before the body is parsed or an Idempotency-Key
 * reserved, so a refused request costs the gateway almost nothing and never starts work.
 */
import type { FastifyRequest } from 'fastify';
import { ValidationError } from '../errors.ts';
import type { LoadShedderPolicy, Permit, RateLimitDecision, RateLimiter } from '../resilience/index.ts';
import { HttpProblem } from './problem.ts';

/** A rate limit a route (or the whole gateway) applies before accepting a request. */
export interface RouteRateLimit {
  /** Any limiter: `tokenBucket`, `gcra` (in process) or `redisRateLimiter` (shared). Required. */
  limiter: RateLimiter;
  /**
   * What requests are counted under: each client separately (`client`, identified by the
   * gateway's `clientIdentity`, else its `clientIdHeader`, else the remote address), or every
   * caller of the route together (`route`). @default 'client'
   */
  per?: 'client' | 'route';
  /** Units each request takes, in [1, limiter.burst]. @default 1 */
  cost?: number;
}

export interface CheckedRateLimit {
  limiter: RateLimiter;
  per: 'client' | 'route';
  cost: number;
}

export function checkRateLimit(
  name: string,
  limit: RouteRateLimit | undefined,
): CheckedRateLimit | undefined {
  if (limit === undefined) return undefined;
  if (typeof limit.limiter?.consume !== 'function') {
    throw new ValidationError(
      `'${name}.limiter' must be a RateLimiter: current value is ${String(limit.limiter)}`,
    );
  }
  const per = limit.per ?? 'client';
  if (per !== 'client' && per !== 'route') {
    throw new ValidationError(`'${name}.per' must be 'client' or 'route': current value is '${String(per)}'`);
  }
  const cost = limit.cost ?? 1;
  if (!Number.isInteger(cost) || cost < 1 || cost > limit.limiter.burst) {
    throw new ValidationError(
      `'${name}.cost' must be an integer in [1, ${limit.limiter.burst}] (the limiter's burst): current value is ${String(cost)}`,
    );
  }
  return { limiter: limit.limiter, per, cost };
}

/** Retry-After is whole seconds; rounding up never invites a client back too early. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

/** Applies one limit to a request; throws the 429 problem when the limit refuses it. */
export async function enforceRateLimit(
  limit: CheckedRateLimit,
  scope: string,
  client: string,
  typeBase: string,
): Promise<void> {
  const key = limit.per === 'client' ? `${scope} client=${client}` : scope;
  const pending = limit.limiter.consume(key, limit.cost);
  const decision: RateLimitDecision = 'then' in pending ? await pending : pending;
  if (decision.allowed) return;
  const seconds = retryAfterSeconds(decision.retryAfterMs);
  throw new HttpProblem({
    status: 429,
    title: 'Too many requests',
    type: `${typeBase}rate-limited`,
    detail: `The rate limit (${limit.limiter.ratePerSecond}/s, burst ${limit.limiter.burst}) of ${limit.per === 'client' ? 'this client on ' : ''}${scope} is used up; retry after ${seconds} s.`,
    extensions: { retryAfterMs: decision.retryAfterMs },
    headers: { 'retry-after': String(seconds) },
  });
}

/**
 * Sheds a route's requests while the work it feeds is backed up: a bounded queue's admission.
 * A load shedder bounds requests in flight, which says nothing once a route answers at once
 * and leaves the work running (an order accepted with 202, its saga still going): without a
 * bound on that backlog, overload turns into every order waiting (and timing out) behind all
 * the others instead of a quick 503 to the ones beyond capacity.
 */
export interface RouteBacklog {
  /** The work behind the route now: sagas running or queued, jobs waiting... Called per request: keep it cheap. */
  depth: () => number;
  /** Requests arriving while `depth()` is at or above this get 503 with Retry-After. At least 1. */
  limit: number;
  /** What the depth counts, for the problem detail: 'orders in progress'. */
  what: string;
  /** The Retry-After of a refusal (seconds). @default 1 */
  retryAfterSeconds?: number;
}

/** A route's backlog as checked when the route is registered, its Retry-After filled in. */
export type CheckedBacklog = RouteBacklog & { readonly retryAfterSeconds: number };

export function checkBacklog(name: string, backlog: RouteBacklog | undefined): CheckedBacklog | undefined {
  if (backlog === undefined) return undefined;
  if (typeof backlog.depth !== 'function') {
    throw new ValidationError(`'${name}.depth' must be a function returning the backlog's depth`);
  }
  if (!Number.isSafeInteger(backlog.limit) || backlog.limit < 1) {
    throw new ValidationError(
      `'${name}.limit' must be an integer >= 1: current value is ${String(backlog.limit)}`,
    );
  }
  if (typeof backlog.what !== 'string' || backlog.what === '') {
    throw new ValidationError(`'${name}.what' must name what the depth counts`);
  }
  const retryAfter = backlog.retryAfterSeconds ?? 1;
  if (!Number.isInteger(retryAfter) || retryAfter < 1 || retryAfter > 3600) {
    throw new ValidationError(
      `'${name}.retryAfterSeconds' must be an integer in [1, 3600]: current value is ${String(retryAfter)}`,
    );
  }
  return { ...backlog, retryAfterSeconds: retryAfter };
}

/** Throws the 503 problem when the route's backlog is full. */
export function admitBacklog(backlog: CheckedBacklog, scope: string, typeBase: string): void {
  const depth = backlog.depth();
  if (depth < backlog.limit) return;
  const seconds = backlog.retryAfterSeconds;
  throw new HttpProblem({
    status: 503,
    title: 'The service is overloaded',
    type: `${typeBase}backlog-full`,
    detail: `${scope} is refused while ${depth} ${backlog.what} are waiting (limit ${backlog.limit}); retry after ${seconds} s.`,
    extensions: { depth, limit: backlog.limit },
    headers: { 'retry-after': String(seconds) },
  });
}

/** How long a shed client is told to wait: long enough for in-flight work to drain. */
const SHED_RETRY_AFTER_SECONDS = 1;

/** Takes a load-shedder permit for a request, or throws the 503 problem when the limit is reached. */
export function admitOrShed(shedder: LoadShedderPolicy, scope: string, typeBase: string): Permit {
  const permit = shedder.tryAcquire();
  if (permit !== undefined) return permit;
  const { limit, inFlight } = shedder.snapshot();
  throw new HttpProblem({
    status: 503,
    title: 'The service is overloaded',
    type: `${typeBase}load-shed`,
    detail: `${scope} is at its concurrency limit (${inFlight} in flight, limit ${limit}); retry after ${SHED_RETRY_AFTER_SECONDS} s.`,
    extensions: { limit, inFlight },
    headers: { 'retry-after': String(SHED_RETRY_AFTER_SECONDS) },
  });
}

/** Who a request comes from, for per-client limits. */
export function clientOf(
  request: FastifyRequest,
  identity: ((request: FastifyRequest) => string | undefined) | undefined,
  header: string | undefined,
): string {
  const identified = identity?.(request);
  if (identified !== undefined) return identified;
  if (header !== undefined) {
    const value = request.headers[header];
    const first = Array.isArray(value) ? value[0] : value;
    // Bounded, so a client cannot make the limiter's key (and its memory) arbitrarily large.
    if (first !== undefined && first !== '') return `h:${first.slice(0, 128)}`;
  }
  return `ip:${request.ip}`;
}
