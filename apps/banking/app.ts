// The banking case study: a mobile-facing gateway route that calls auth, then the balance
// service. With `policies: false` it awaits auth however slow it gets, as the bank's app did;
// with `policies: true` auth sits behind a timeout, a slow-call circuit breaker and a bulkhead,
// the route sheds load beyond an adaptive limit, and a broken auth answers from the last balance
// this session saw (marked degraded) or a clear 503, within the route's budget.

import { createCache } from '../../src/cache/index.ts';
import { type AuthOptions, createGateway, type Gateway, HttpProblem, Type } from '../../src/http/index.ts';
import {
  type Clock,
  type Random,
  systemClock,
  systemRandom,
  systemTimers,
  type Timers,
} from '../../src/index.ts';
import {
  aimdLimit,
  type BulkheadPolicy,
  bulkhead,
  type CircuitBreakerPolicy,
  circuitBreaker,
  isBrokenCircuitError,
  isBulkheadRejectedError,
  isTimeoutError,
  type LoadShedderPolicy,
  loadShedder,
  type Policy,
  pipeline,
  timeout,
} from '../../src/resilience/index.ts';
import { AuthService, type AuthSettings, AuthUnavailableError } from './auth-service.ts';
import { type Balance, BalanceService } from './balance-service.ts';

export interface BankingOptions {
  /** Whether auth is called through resilience policies. Required: it is the experiment. */
  policies: boolean;
  /**
   * Who may call the gateway's own routes: the `/admin` routes are the operator's. The mobile
   * route is public at the gateway, because the bank's auth service checks its session token
   * (that call is the experiment). `false` turns it off (local experiments only). Required.
   */
  gatewayAuth: AuthOptions | false;
  clock?: Clock;
  timers?: Timers;
  random?: Random;
  /** Auth's initial behaviour. @default { latencyMs: 2, failureRate: 0 } */
  auth?: Partial<AuthSettings>;
  /** How long auth may take on the route's behalf (policies on). @default 50 */
  authTimeoutMs?: number;
  /** How long the breaker stays open before probing auth again (policies on). @default 2000 */
  openDurationMs?: number;
  /** Balances the fallback cache keeps, least recently used dropped first. @default 10_000 */
  maxCachedBalances?: number;
  /** How old a balance may be and still be served (degraded) when auth fails. @default 300_000 (5 min) */
  fallbackTtlMs?: number;
}

export interface BalanceAnswer extends Balance {
  degraded: boolean;
  /** When degraded: why the answer is not fresh. */
  reason?: string;
}

export interface BankingApp {
  gateway: Gateway;
  auth: AuthService;
  balances: BalanceService;
  /** The breaker around auth; undefined with policies off. */
  breaker: CircuitBreakerPolicy | undefined;
  bulkhead: BulkheadPolicy | undefined;
  shedder: LoadShedderPolicy | undefined;
  close(): Promise<void>;
}

const balanceSchema = {
  type: 'object',
  properties: {
    accountId: { type: 'string' },
    currency: { type: 'string' },
    availableMinor: { type: 'integer' },
    degraded: { type: 'boolean' },
    reason: { type: 'string' },
  },
} as const;

export async function createBankingApp(options: BankingOptions): Promise<BankingApp> {
  const clock = options.clock ?? systemClock;
  const timers = options.timers ?? systemTimers;
  const auth = new AuthService({
    timers,
    random: options.random ?? systemRandom,
    settings: options.auth ?? {},
  });
  const balances = new BalanceService();
  // Keyed by session token and account: a cached balance is only ever shown to a session that
  // auth verified for that account before, never to a caller auth has not seen; and never one
  // older than fallbackTtlMs.
  const cache = createCache<Balance>({
    name: 'balance-fallback',
    ttlMs: options.fallbackTtlMs ?? 300_000,
    l1: { maxEntries: options.maxCachedBalances ?? 10_000 },
    clock,
  });

  let breaker: CircuitBreakerPolicy | undefined;
  let authBulkhead: BulkheadPolicy | undefined;
  let shedder: LoadShedderPolicy | undefined;
  let authPolicy: Policy | undefined;
  if (options.policies) {
    const authTimeoutMs = options.authTimeoutMs ?? 50;
    breaker = circuitBreaker({
      name: 'auth',
      mode: 'time-window',
      // A short window: healthy calls from minutes ago must not delay opening once auth degrades.
      windowMs: 2000,
      minimumCalls: 10,
      failureRateThreshold: 0.5,
      // Calls at half the budget already mean auth is in trouble: open before timeouts pile up.
      slowCallDurationMs: Math.max(1, Math.floor(authTimeoutMs / 2)),
      slowCallRateThreshold: 0.5,
      openDurationMs: options.openDurationMs ?? 2000,
      halfOpenMaxCalls: 3,
      clock,
    });
    authBulkhead = bulkhead({ maxConcurrent: 64, maxQueued: 0 });
    // The breaker sees every attempt, the bulkhead caps what a slow auth can hold, the timeout
    // bounds each call (aggressive: the route answers on time even if auth ignores the signal).
    authPolicy = pipeline(
      breaker,
      authBulkhead,
      timeout({ timeoutMs: authTimeoutMs, strategy: 'aggressive', clock, timers }),
    );
    shedder = loadShedder({ limit: aimdLimit({ initialLimit: 100, minLimit: 10, maxLimit: 1000 }), clock });
  }

  const gateway = await createGateway({
    clock,
    timers,
    title: 'Meridian bank (mobile)',
    defaultMetrics: false,
    auth: options.gatewayAuth,
    // The mobile route is rate-limited per session token (the caller the bank's auth knows),
    // else per x-client-id, else per address.
    clientIdentity: (request) => {
      const token = request.headers.authorization;
      return typeof token === 'string' && token !== '' ? `session:${token.slice(0, 256)}` : undefined;
    },
    clientIdHeader: 'x-client-id',
  });

  gateway.route({
    method: 'GET',
    url: '/mobile/balance/:accountId',
    access: 'public',
    schema: {
      summary: "An account's balance for the mobile app (auth, then balance)",
      params: Type.Object({ accountId: Type.String({ minLength: 1, maxLength: 64 }) }),
      headers: Type.Object({ authorization: Type.String({ minLength: 1, maxLength: 256 }) }),
      response: { 200: balanceSchema },
    },
    ...(shedder === undefined ? {} : { loadShedder: shedder }),
    handler: async (request): Promise<BalanceAnswer> => {
      const token = request.headers.authorization ?? '';
      const accountId = request.params.accountId;
      const cacheKey = `${token}\n${accountId}`;
      if (authPolicy === undefined) {
        const customer = await auth.verify(token);
        return { ...balances.balanceOf(customer, accountId), degraded: false };
      }
      let customer: string;
      try {
        customer = await authPolicy.execute((context) => auth.verify(token, context.signal));
      } catch (error) {
        const reason = isBrokenCircuitError(error)
          ? 'auth circuit open'
          : isTimeoutError(error)
            ? 'auth timed out'
            : isBulkheadRejectedError(error)
              ? 'auth saturated'
              : error instanceof AuthUnavailableError
                ? 'auth failed'
                : undefined;
        if (reason === undefined) throw error;
        const cached = cache.peek(cacheKey);
        if (cached !== undefined) return { ...cached, degraded: true, reason };
        throw new HttpProblem({
          status: 503,
          title: 'Balances are temporarily unavailable',
          type: 'urn:meridian-bank:problem:auth-unavailable',
          detail: `Sign-in checks are failing (${reason}) and no recent balance is known for this session; retry shortly.`,
          headers: { 'retry-after': '2' },
        });
      }
      const balance = balances.balanceOf(customer, accountId);
      await cache.set(cacheKey, balance);
      return { ...balance, degraded: false };
    },
  });

  gateway.route({
    method: 'PUT',
    url: '/admin/auth',
    access: 'operator',
    schema: {
      summary: "Sets the auth service's latency and failure rate (the experiment's knob)",
      body: Type.Object(
        {
          latencyMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
          failureRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
        },
        { additionalProperties: false },
      ),
    },
    loadShedder: false,
    handler: async (request) => auth.set(request.body),
  });
  gateway.route({
    method: 'GET',
    url: '/admin/auth',
    access: 'operator',
    loadShedder: false,
    handler: async () => ({ ...auth.settings, inFlight: auth.inFlight, calls: auth.calls }),
  });

  if (breaker !== undefined) {
    const authBreaker = breaker;
    gateway.exposePolicies({
      auth: authBreaker,
      'auth-bulkhead': authBulkhead!,
      'mobile-shedder': shedder!,
      'balance-fallback': cache,
    });
    // Only a closed breaker is ready: open or probing, a load balancer should prefer other nodes.
    gateway.addReadinessCheck('auth', () => {
      const state = authBreaker.state;
      return state === 'closed'
        ? { ok: true, detail: 'auth circuit closed' }
        : { ok: false, detail: `auth circuit ${state}` };
    });
  }

  return {
    gateway,
    auth,
    balances,
    breaker,
    bulkhead: authBulkhead,
    shedder,
    close: () => gateway.close(),
  };
}
