import swagger from '@fastify/swagger';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchema,
  type RouteHandlerMethod,
  type RouteOptions,
} from 'fastify';
import type { Registry } from 'prom-client';
import { ConflictError, isMeridianError, ValidationError } from '../errors.ts';
import { type LoadShedderPolicy, type Permit, tokenBucket } from '../resilience/index.ts';
import type { IdempotencyClaim, IdempotencyReservation, IdempotencyStore, Store } from '../store/types.ts';
import { type Clock, systemClock, systemTimers, type TimerHandle, type Timers } from '../time.ts';
import {
  admitBacklog,
  admitOrShed,
  type CheckedRateLimit,
  checkBacklog,
  checkRateLimit,
  clientOf,
  enforceRateLimit,
  type RouteBacklog,
  type RouteRateLimit,
} from './admission.ts';
import {
  API_KEY_HEADER,
  AUTH_OFF_PRINCIPAL,
  Authenticator,
  type AuthOptions,
  authorize,
  checkAccess,
  hostnameOf,
  LOOPBACK_HOSTS,
  type Principal,
  type RouteAccess,
  sha256Hex,
} from './auth.ts';
import { answerClientError } from './client-errors.ts';
import {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENT_REPLAYED_HEADER,
  idempotencyStoreOf,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseIdempotencyKey,
  requestFingerprint,
  storableBody,
  storableHeaders,
} from './idempotency.ts';
import { HttpMetrics, type IdempotencyOutcome } from './metrics.ts';
import { integerOption } from './options.ts';
import { type ExposablePolicy, PolicyExposure } from './policy-exposure.ts';
import {
  HttpProblem,
  PROBLEM_CONTENT_TYPE,
  problemFromError,
  renderProblem,
  statusProblem,
} from './problem.ts';
import { type ReadinessCheck, ReadinessChecks, type ReadinessReport } from './readiness.ts';
import { createValidatorCompiler } from './request-validation.ts';
import { RouteMatcher } from './route-matcher.ts';
import type { GatewayHandler, GatewayRequest, RouteSchema } from './route-types.ts';
import { type ExposableRuntime, registerRuntimeMetrics } from './runtime-metrics.ts';
import { nameRequestSpan, traceRequest } from './tracing.ts';
import { invalidFields, type SchemaError, validationProblem } from './validation.ts';

export interface GatewayOptions {
  /**
   * Who may call what. Required, because no default is safe: `AuthOptions` (API keys, bearer
   * tokens) makes every application route authenticate and check its `access`; `false` turns
   * authentication off (every caller is an anonymous operator), for local experiments only.
   */
  auth: AuthOptions | false;
  /**
   * Host names (of the `Host` header, without port) the gateway answers; others get 421. A page
   * on another site that rebinds its DNS name to 127.0.0.1 still sends its own name, so a
   * loopback listener only answering `localhost` and loopback addresses cannot be reached that
   * way. `'any'` turns the check off. @default loopback names when listening on a loopback address, else 'any'
   */
  allowedHosts?: readonly string[] | 'any';
  /** Where Idempotency-Key records live; each call runs in its own short transaction. */
  store?: Store;
  /** Overrides `store` for Idempotency-Key records (a MemoryIdempotencyStore, say). */
  idempotencyStore?: IdempotencyStore;
  /** @default systemClock */
  clock?: Clock;
  /** @default systemTimers */
  timers?: Timers;
  /** The OpenAPI document's title. @default 'Meridian gateway' */
  title?: string;
  /** The OpenAPI document's API version. @default '0.1.0' */
  version?: string;
  description?: string;
  /** Largest request body accepted (bytes); larger ones get 413. Range [1024, 67108864]. @default 1048576 */
  bodyLimitBytes?: number;
  /**
   * Longest request target (path and query, bytes) accepted; longer ones get 414. A whole request
   * head beyond Node's limit (16 KiB) gets 431. Range [256, 16384]. @default 8192
   */
  maxUrlLength?: number;
  /** Time a client has to send a whole request (ms), against slow-loris clients. Range [1000, 600000]. @default 30000 */
  requestTimeoutMs?: number;
  /** How long an Idempotency-Key is remembered after first use (ms). Range [1000, 2592000000]. @default 86400000 (24 h) */
  idempotencyKeyTtlMs?: number;
  /**
   * How long a first attempt holds its key before another attempt may take over (ms): a bound
   * on how long a request can be stuck at 409 after the process serving it died. It must exceed
   * the slowest handler, or a slow first attempt and a retry may both run.
   * Range [100, 86400000]. @default 30000
   */
  idempotencyLeaseMs?: number;
  /** How often expired keys are deleted while listening (ms). Range [1000, 86400000]. @default 60000 */
  idempotencySweepIntervalMs?: number;
  /** Bound on each readiness check (ms); a check still running then fails. Range [10, 60000]. @default 2000 */
  readinessCheckTimeoutMs?: number;
  /**
   * Who the caller is, when the gateway's `auth` is off and the app identifies callers itself:
   * keys are then scoped per client as well as per route. With `auth` on, the principal is the
   * client, and this is not consulted.
   */
  clientIdentity?: (request: GatewayRequest) => string | undefined;
  /**
   * A header naming the client (`x-client-id`), for per-client rate limits when no
   * `clientIdentity` is given or it returns undefined; without either, the remote address is used.
   */
  clientIdHeader?: string;
  /**
   * A rate limit every application route applies (not `/healthz`, `/readyz`, `/metrics`,
   * `/policies`), before a route's own limit, per principal (`per: 'client'`). Refused requests
   * get 429 with Retry-After. `false`: none.
   * @default an in-process token bucket of 100 requests/s, burst 200, per client; authenticated
   * operators are exempt from this default (not from a limit given here)
   */
  rateLimit?: RouteRateLimit | false;
  /**
   * A load shedder every application route takes a permit from before any work starts (a route's
   * own `loadShedder` replaces it). Requests beyond its limit get 503 with Retry-After.
   */
  loadShedder?: LoadShedderPolicy;
  /** Prefix of the `type` URI of Meridian's own problem types. @default 'urn:meridian:problem:' */
  problemTypeBase?: string;
  /** Prefix of every metric name. @default 'meridian_' */
  metricsPrefix?: string;
  /** Also export process metrics (CPU, memory, event-loop lag, GC). @default true */
  defaultMetrics?: boolean;
  /** Fastify's (pino) request logging. @default false */
  logger?: boolean;
}

export type RouteMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

/**
 * A route, declared once: its schema validates the request, documents it in `/openapi.json`
 * and (written with TypeBox) types the handler's request.
 */
export interface GatewayRoute<S extends RouteSchema = RouteSchema> {
  method: RouteMethod;
  /** A Fastify route pattern: `/orders/:orderId`. */
  url: string;
  /**
   * Who may call the route (see RouteAccess): checked before anything else the route does.
   * @default 'operator'
   */
  access?: RouteAccess;
  schema?: S;
  /**
   * Whether the route follows the Idempotency-Key protocol: a key is required, the first
   * response (2xx or 4xx) is stored and replayed for retries, a 5xx releases the key.
   * Only for POST, PUT, PATCH and DELETE. @default false
   */
  idempotent?: boolean;
  /** This route's lease (ms), when its handler is slower than the gateway's default allows. */
  idempotencyLeaseMs?: number;
  /** This route's body limit (bytes), within the gateway's bounds. */
  bodyLimitBytes?: number;
  /** This route's own rate limit, applied after the gateway's. 429 with Retry-After when refused. */
  rateLimit?: RouteRateLimit;
  /**
   * This route's load shedder, instead of the gateway's; `false` exempts the route from the
   * gateway's. 503 with Retry-After when its limit is reached.
   */
  loadShedder?: LoadShedderPolicy | false;
  /**
   * A bound on the work the route leaves running (sagas it starts, jobs it queues): 503 with
   * Retry-After while it is full, decided before anything is parsed or reserved.
   */
  backlog?: RouteBacklog;
  handler: GatewayHandler<S>;
}

/** What an idempotent route's handler may read about its key (to derive stable ids from it). */
export interface RequestIdempotency {
  readonly key: string;
  readonly scope: string;
  readonly fingerprint: string;
  /**
   * When this request first reserved the key (ms since the epoch), set once it did, so always in
   * the handler: the same on every retry that takes the key over, new for a new key. With the
   * scope and key it makes ids that are stable across attempts and ordered by time (keys with
   * random ids scatter B-tree inserts across the database; time-ordered ones append).
   */
  readonly reservedAt?: number;
}

export interface Gateway {
  /** The Fastify instance, for what the helpers below do not cover (hooks, decorators, plugins). */
  readonly server: FastifyInstance;
  /** The Prometheus registry served at `/metrics`; apps register their own metrics in it. */
  readonly metrics: Registry;
  /** Registers a route. Must be called before `listen`/`ready`. */
  route<S extends RouteSchema>(route: GatewayRoute<S>): void;
  /** Every route registered (the gateway's own too) with who may call it: for audits and tests. */
  routes(): ReadonlyArray<{
    readonly method: RouteMethod;
    readonly url: string;
    readonly access: RouteAccess;
  }>;
  /** Adds a check to `/readyz` (store open, processors running, ...). */
  addReadinessCheck(name: string, check: ReadinessCheck): void;
  /**
   * Shows policies (circuit breakers, bulkheads, load shedders: anything with `snapshot()`) at
   * `GET /policies` and as gauges on `/metrics`. May be called at any time.
   */
  exposePolicies(policies: Record<string, ExposablePolicy>): void;
  /**
   * Shows the runtime's figures on `/metrics` (`<prefix>runtime_*`: sagas by state, the group
   * commit's transactions and units, each subscription's handled and dead-lettered records),
   * read at each scrape. Once per gateway.
   */
  exposeRuntime(runtime: ExposableRuntime): void;
  /** Runs the readiness checks, as `/readyz` does. */
  readiness(): Promise<ReadinessReport>;
  /** Deletes expired Idempotency-Keys now; the gateway also does it every sweep interval while listening. */
  sweepIdempotencyKeys(): Promise<number>;
  /**
   * Starts listening; returns the base URL (`http://127.0.0.1:7070`). @default host '127.0.0.1',
   * port 0 (any free port), backlog 4096: connections the kernel holds for the server while its
   * event loop is busy. Node's 511 overflowed under bursts of new connections (the clients'
   * SYNs were dropped and retried after 1 s, 3 s, 7 s: multi-second latency spikes measured
   * with `meridian load`); Linux caps it at net.core.somaxconn.
   */
  listen(options?: { host?: string; port?: number; backlog?: number }): Promise<string>;
  /** Loads the routes and plugins without listening (for `inject`). */
  ready(): Promise<void>;
  /**
   * Graceful close: `/readyz` turns 503 at once, new requests get 503, requests in flight finish,
   * idle keep-alive connections close, then the listener stops.
   */
  close(): Promise<void>;
}

interface IdempotencyState {
  key: string;
  scope: string;
  routeUrl: string;
  fingerprint: string;
  /**
   * The token of this attempt's reservation, once it reserved the key: it must complete or
   * release it, naming the token, so that it changes nothing once another attempt took over.
   */
  token: number | undefined;
  /** When this request first reserved the key (see IdempotencyReservation), once it did. */
  reservedAt: number | undefined;
  finished: boolean;
}

interface RequestState {
  startedMs: number;
  /** Who the request comes from, once its route authenticated it. */
  principal?: Principal;
  rawBody?: Buffer;
  idempotency?: IdempotencyState;
  /** The load-shedder slot this request holds until its response is finished. */
  permit?: Permit;
}

/** Per request, keyed by the request object handlers see (Fastify's, behind GatewayRequest). */
const requestStates = new WeakMap<object, RequestState>();

/** Names this attempt's reservation to the store's `complete` and `release`. */
function claimOf(state: IdempotencyState, token: number): IdempotencyClaim {
  return { scope: state.scope, key: state.key, fingerprint: state.fingerprint, token };
}

/**
 * Who a request comes from: set before the route's handler runs on every route that is not
 * `public` (the anonymous operator when the gateway's auth is off), undefined on public routes.
 */
export function principalOf(request: GatewayRequest): Principal | undefined {
  return requestStates.get(request)?.principal;
}

/** The Idempotency-Key of a request on an idempotent route, once it was validated. */
export function idempotencyOf(request: GatewayRequest): RequestIdempotency | undefined {
  const state = requestStates.get(request)?.idempotency;
  return state === undefined
    ? undefined
    : {
        key: state.key,
        scope: state.scope,
        fingerprint: state.fingerprint,
        ...(state.reservedAt === undefined ? {} : { reservedAt: state.reservedAt }),
      };
}

const IDEMPOTENT_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const ROUTE_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const UNMATCHED_ROUTE = '(unmatched)';

const problemSchema = {
  type: 'object',
  description: 'RFC 9457 problem details (application/problem+json).',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string' },
  },
  required: ['type', 'title', 'status'],
  additionalProperties: true,
} as const;

/** Every error answer: a problem document, with the media type it is sent as. */
function problemResponse(description: string) {
  return { description, content: { [PROBLEM_CONTENT_TYPE]: { schema: problemSchema } } };
}

/**
 * Creates the HTTP gateway: a Fastify instance with JSON-schema validation whose failures are
 * RFC 9457 problem details, an OpenAPI document at `/openapi.json`, `/healthz`, `/readyz`,
 * `/metrics`, JSON 404/405 problems, and the Idempotency-Key protocol on routes marked
 * `idempotent`. Async because the OpenAPI plugin must load before any route is registered.
 */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const clock = options.clock ?? systemClock;
  const timers = options.timers ?? systemTimers;
  const bodyLimitBytes = integerOption('bodyLimitBytes', options.bodyLimitBytes, 1_048_576, 1024, 67_108_864);
  const requestTimeoutMs = integerOption('requestTimeoutMs', options.requestTimeoutMs, 30_000, 1000, 600_000);
  const maxUrlLength = integerOption('maxUrlLength', options.maxUrlLength, 8192, 256, 16_384);
  const keyTtlMs = integerOption(
    'idempotencyKeyTtlMs',
    options.idempotencyKeyTtlMs,
    86_400_000,
    1000,
    2_592_000_000,
  );
  const leaseMs = integerOption('idempotencyLeaseMs', options.idempotencyLeaseMs, 30_000, 100, 86_400_000);
  if (keyTtlMs < leaseMs) {
    throw new ValidationError(
      `'idempotencyKeyTtlMs' must be >= 'idempotencyLeaseMs' (${leaseMs}): current value is ${keyTtlMs}`,
    );
  }
  /** Keys one sweep transaction deletes at most (the store's default batch). */
  const sweepBatchSize = 1000;
  const sweepIntervalMs = integerOption(
    'idempotencySweepIntervalMs',
    options.idempotencySweepIntervalMs,
    60_000,
    1000,
    86_400_000,
  );
  const checkTimeoutMs = integerOption(
    'readinessCheckTimeoutMs',
    options.readinessCheckTimeoutMs,
    2000,
    10,
    60_000,
  );
  const typeBase = options.problemTypeBase ?? 'urn:meridian:problem:';
  const idempotencyStore =
    options.idempotencyStore ?? (options.store === undefined ? undefined : idempotencyStoreOf(options.store));
  const httpMetrics = new HttpMetrics({
    prefix: options.metricsPrefix ?? 'meridian_',
    defaultMetrics: options.defaultMetrics ?? true,
  });
  const readinessChecks = new ReadinessChecks({ clock, timers, checkTimeoutMs });
  const matcher = new RouteMatcher();
  const policyExposure = new PolicyExposure(httpMetrics.registry, options.metricsPrefix ?? 'meridian_');
  let runtimeExposed = false;
  const gatewayRateLimit =
    options.rateLimit === false
      ? undefined
      : checkRateLimit(
          'rateLimit',
          options.rateLimit ?? {
            limiter: tokenBucket({ ratePerSecond: 100, burst: 200, clock }),
            per: 'client',
          },
        );
  if (options.auth === undefined) {
    throw new ValidationError(
      "'auth' is required: AuthOptions (API keys, JWT) or false to turn authentication off (local experiments only)",
    );
  }
  const authenticator = options.auth === false ? undefined : new Authenticator(options.auth, clock);
  let allowedHosts = checkAllowedHosts(options.allowedHosts);
  const clientIdHeader = options.clientIdHeader?.toLowerCase();
  let operationsRoutes = true;
  const registered: Array<{ method: RouteMethod; url: string; access: RouteAccess }> = [];
  let closing = false;
  let sweepTimer: TimerHandle | undefined;

  const server = Fastify({
    logger: options.logger ?? false,
    bodyLimit: bodyLimitBytes,
    requestTimeout: requestTimeoutMs,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Requests whose head Node cannot parse (too large, malformed) still get a problem document.
    clientErrorHandler: (error, socket) => answerClientError(error, socket, typeBase),
  });
  // Strict, bounded checks: unknown fields refused, no coercion of bodies, the first error of a
  // large body, every error (at most 10) of a small one (request-validation.ts).
  server.setValidatorCompiler(createValidatorCompiler());

  // The JSON parser keeps the raw bytes for the idempotency fingerprint, then parses them with
  // Fastify's own parser, which rejects __proto__ and constructor.prototype poisoning.
  const parseJson = server.getDefaultJsonParser('error', 'error');
  server.removeContentTypeParser('application/json');
  server.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const state = requestStates.get(request);
    if (state !== undefined && Buffer.isBuffer(body)) state.rawBody = body;
    parseJson(request, body as unknown as string, done);
  });

  // First: the request's server span, active for the hooks and the handler that follow.
  server.addHook('onRequest', (request, reply, done) => traceRequest(request.raw, reply.raw, done));
  server.addHook('onRequest', async (request) => {
    requestStates.set(request, { startedMs: clock.monotonicNow() });
    if (request.url.length > maxUrlLength) {
      throw statusProblem(
        414,
        `The request target is ${request.url.length} bytes long; the limit is ${maxUrlLength}.`,
      );
    }
    if (allowedHosts !== undefined && !allowedHosts.has(hostnameOf(request.headers.host) ?? '')) {
      throw new HttpProblem({
        status: 421,
        title: 'The request names a host this server does not serve',
        type: `${typeBase}host-not-allowed`,
        detail: `Host '${String(request.headers.host ?? '').slice(0, 64)}' is not one of this server's names; use ${[...allowedHosts].slice(0, 4).join(', ')}.`,
      });
    }
    if (request.is404) await unmatched(request);
  });

  /** Authenticates (when auth is on) and authorizes a request on a route that is not public. */
  async function admitPrincipal(request: FastifyRequest, access: RouteAccess, routeName: string) {
    const principal =
      authenticator === undefined
        ? AUTH_OFF_PRINCIPAL
        : await authenticator.authenticate(
            { authorization: request.headers.authorization, apiKey: request.headers[API_KEY_HEADER] },
            typeBase,
          );
    authorize(principal, access, routeName, typeBase);
    const state = requestStates.get(request);
    if (state !== undefined) state.principal = principal;
    return principal;
  }

  /** Who counts as one client for rate limits and Idempotency-Key scopes. */
  function clientKey(request: FastifyRequest): string {
    const principal = requestStates.get(request)?.principal;
    if (principal !== undefined && principal.via !== 'auth-off') return `p:${principal.role}:${principal.id}`;
    return clientOf(request, options.clientIdentity, clientIdHeader);
  }

  server.addHook('onResponse', async (request, reply) => {
    const state = requestStates.get(request);
    if (state === undefined) return;
    releasePermit(state, reply.statusCode);
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
    nameRequestSpan(request.raw, request.method, request.routeOptions.url);
    httpMetrics.observeRequest(
      request.method,
      route,
      reply.statusCode,
      clock.monotonicNow() - state.startedMs,
    );
    // A reply that bypassed onSend (hijacked, aborted) must not leave its key held until the lease ends.
    const idempotency = state.idempotency;
    if (idempotency?.token !== undefined && !idempotency.finished) {
      idempotency.finished = true;
      await releaseKey(request, idempotency, idempotency.token);
    }
  });

  // A client that hung up before its answer still gives its load-shedder slot back.
  server.addHook('onRequestAbort', async (request) => {
    const state = requestStates.get(request);
    if (state !== undefined) releasePermit(state, 0);
  });

  const sendProblem = (request: FastifyRequest, reply: FastifyReply, problem: HttpProblem) => {
    const { problem: body, headers } = renderProblem(problem, request.url.split('?')[0]);
    return reply
      .code(problem.status)
      .headers(headers)
      .header('content-type', PROBLEM_CONTENT_TYPE)
      .send(JSON.stringify(body));
  };

  server.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = problemForError(error, request, typeBase, bodyLimitBytes);
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    return sendProblem(request, reply, problem);
  });

  // Also decided in the onRequest hook (request.is404), before the body is read: a request that
  // matches no route never has its body parsed (a megabyte sent to nowhere costs nothing).
  async function unmatched(request: FastifyRequest): Promise<never> {
    const path = (request.url.split('?')[0] ?? '/').slice(0, 256);
    const allowed = matcher.allowedMethods(path);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      throw statusProblem(
        405,
        `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}.`,
        {
          headers: { allow: allowed.join(', ') },
        },
      );
    }
    throw statusProblem(404, `No route matches ${request.method} ${path}.`);
  }
  server.setNotFoundHandler(unmatched);

  await server.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      ...(authenticator === undefined
        ? {}
        : {
            components: {
              securitySchemes: {
                bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
                apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
              },
            },
          }),
      info: {
        title: options.title ?? 'Meridian gateway',
        version: options.version ?? '0.1.0',
        ...(options.description === undefined ? {} : { description: options.description }),
      },
    },
  });

  const observeIdempotency = (state: IdempotencyState, outcome: IdempotencyOutcome) =>
    httpMetrics.observeIdempotency(state.routeUrl, outcome);

  async function releaseKey(request: FastifyRequest, state: IdempotencyState, token: number): Promise<void> {
    try {
      await idempotencyStore!.release(claimOf(state, token));
      observeIdempotency(state, 'released');
    } catch (error) {
      // The lease still bounds how long the key stays held.
      request.log.error({ err: error }, 'could not release an Idempotency-Key');
    }
  }

  function releasePermit(state: RequestState, status: number): void {
    const permit = state.permit;
    if (permit === undefined) return;
    state.permit = undefined;
    // A 503 or 504 means the work behind the route is overloaded: the limit should shrink.
    permit.release(status === 503 || status === 504 ? 'dropped' : status === 0 ? 'ignored' : 'success');
  }

  function addRoute<S extends RouteSchema>(route: GatewayRoute<S>): void {
    const method = String(route.method).toUpperCase();
    if (!ROUTE_METHODS.has(method)) {
      throw new ValidationError(
        `A route's 'method' must be one of ${[...ROUTE_METHODS].join(', ')}: current value is '${route.method}'`,
      );
    }
    if (typeof route.url !== 'string' || !route.url.startsWith('/')) {
      throw new ValidationError(
        `A route's 'url' must start with '/': current value is '${String(route.url)}'`,
      );
    }
    const idempotent = route.idempotent ?? false;
    const routeLeaseMs = integerOption(
      'idempotencyLeaseMs',
      route.idempotencyLeaseMs,
      leaseMs,
      100,
      keyTtlMs,
    );
    const routeBodyLimit = integerOption(
      'bodyLimitBytes',
      route.bodyLimitBytes,
      bodyLimitBytes,
      0,
      67_108_864,
    );
    const schema: RouteSchema = { ...(route.schema ?? {}) };
    const response = { ...((schema.response as Record<string, unknown> | undefined) ?? {}) };
    response['400'] ??= problemResponse(
      'The request is invalid: `errors` lists at most 10 invalid fields (a large body: the first one).',
    );
    if (route.url.includes(':')) response['404'] ??= problemResponse('Nothing exists under this path.');
    if (IDEMPOTENT_METHODS.has(method))
      response['413'] ??= problemResponse('The body is larger than the limit.');
    response['414'] ??= problemResponse(`The request target is longer than ${maxUrlLength} bytes.`);
    response['421'] ??= problemResponse('The Host header names a host this server does not serve.');
    response['431'] ??= problemResponse('The request head is larger than 16 KiB.');
    response['4xx'] ??= problemResponse('A problem document (RFC 9457).');
    response['5xx'] ??= problemResponse('A problem document (RFC 9457); the detail hides internals.');
    schema.response = response as RouteSchema['response'];

    const routeOptions: RouteOptions = {
      method,
      url: route.url,
      schema: schema as FastifySchema,
      bodyLimit: routeBodyLimit,
      handler: route.handler as unknown as RouteHandlerMethod,
    };

    const rateLimits = (
      operationsRoutes ? [] : [gatewayRateLimit, checkRateLimit('rateLimit', route.rateLimit)]
    ).filter((limit): limit is CheckedRateLimit => limit !== undefined);
    const shedder = operationsRoutes
      ? undefined
      : route.loadShedder === false
        ? undefined
        : (route.loadShedder ?? options.loadShedder);
    if (shedder !== undefined && typeof shedder.tryAcquire !== 'function') {
      throw new ValidationError(`'loadShedder' of ${method} ${route.url} must be a load shedder`);
    }
    const backlog = checkBacklog(`backlog of ${method} ${route.url}`, route.backlog);
    const access = checkAccess(`${method} ${route.url}`, route.access);
    const admissionScope = `${method} ${route.url}`;
    if (access !== 'public') {
      response['401'] ??= problemResponse('No valid credentials (WWW-Authenticate says why).');
      response['403'] ??= problemResponse('The principal may not call this route (role or scope).');
      if (authenticator !== undefined) schema.security ??= [{ bearer: [] }, { apiKey: [] }];
    }
    if (rateLimits.length > 0 || shedder !== undefined || backlog !== undefined) {
      response['429'] ??= problemResponse(
        'A rate limit refused the request; Retry-After says when to retry.',
      );
      response['503'] ??= problemResponse('Overloaded or unavailable; Retry-After says when to retry.');
    }
    // The first hook of the route: nothing is parsed, validated, reserved or run before it.
    // Who the caller is comes first (limits are per principal), then limits, so a client over
    // its limit never takes a shedder slot.
    routeOptions.onRequest = async (request) => {
      if (access !== 'public') await admitPrincipal(request, access, admissionScope);
      if (rateLimits.length > 0) {
        const client = clientKey(request);
        const operator =
          authenticator !== undefined && requestStates.get(request)?.principal?.role === 'operator';
        for (const limit of rateLimits) {
          // The default limit bounds customers (and callers of public routes); authenticated
          // operators run audits and load tools, and are limited only by a limit set on purpose.
          if (operator && limit === gatewayRateLimit && options.rateLimit === undefined) continue;
          await enforceRateLimit(limit, admissionScope, client, typeBase);
        }
      }
      if (backlog !== undefined) admitBacklog(backlog, admissionScope, typeBase);
      if (shedder !== undefined) {
        const state = requestStates.get(request);
        const permit = admitOrShed(shedder, admissionScope, typeBase);
        if (state === undefined) permit.release('ignored');
        else state.permit = permit;
      }
    };

    if (idempotent) {
      if (!IDEMPOTENT_METHODS.has(method)) {
        throw new ValidationError(
          `Only POST, PUT, PATCH and DELETE routes can be idempotent: ${method} ${route.url} already is by definition`,
        );
      }
      if (idempotencyStore === undefined) {
        throw new ValidationError(
          `Route ${method} ${route.url} is idempotent but the gateway has no 'store' or 'idempotencyStore'`,
        );
      }
      const store = idempotencyStore;
      schema.headers = withKeyHeader(schema.headers);
      response['409'] ??= problemResponse(
        'The first request with this Idempotency-Key is still in progress.',
      );
      response['422'] ??= problemResponse('The Idempotency-Key was used for a different request.');
      const routeScope = `${method} ${route.url}`;

      // The key is checked before the body is validated, so a client missing it learns that first.
      routeOptions.preValidation = async (request) => {
        const parsed = parseIdempotencyKey(request.headers[IDEMPOTENCY_KEY_HEADER]);
        if (!parsed.ok) {
          throw new HttpProblem({
            status: 400,
            title:
              parsed.reason === 'missing'
                ? 'An Idempotency-Key header is required'
                : 'The Idempotency-Key is invalid',
            type: `${typeBase}idempotency-key-${parsed.reason}`,
            detail: parsed.detail,
          });
        }
        const state = requestStates.get(request)!;
        const client =
          state.principal !== undefined && state.principal.via !== 'auth-off'
            ? clientKey(request)
            : options.clientIdentity?.(request);
        state.idempotency = {
          key: parsed.key,
          // The client is hashed: the scope stays bounded (the store caps it) and holds no credential.
          scope: client === undefined ? routeScope : `${routeScope} client=${sha256Hex(client).slice(0, 32)}`,
          routeUrl: route.url,
          fingerprint: requestFingerprint(method, request.url, state.rawBody),
          token: undefined,
          reservedAt: undefined,
          finished: false,
        };
      };

      // Only a valid request reaches the store: the key is reserved atomically, and only then
      // does the handler run. A check-then-act would let two concurrent requests both run.
      routeOptions.preHandler = async (request, reply) => {
        const state = requestStates.get(request)!.idempotency!;
        const nowMs = clock.now();
        let reservation: IdempotencyReservation;
        try {
          reservation = await reserveWithRetry(store, {
            scope: state.scope,
            key: state.key,
            fingerprint: state.fingerprint,
            nowMs,
            leaseMs: routeLeaseMs,
            expiresAt: nowMs + keyTtlMs,
          });
        } catch (error) {
          if (isMeridianError(error) && error.code === 'INVALID_ARGUMENT') {
            throw new HttpProblem({
              status: 422,
              title: 'The Idempotency-Key cannot be stored',
              type: `${typeBase}idempotency-key-invalid`,
              detail: error.message,
            });
          }
          request.log.error({ err: error }, 'could not reserve an Idempotency-Key');
          throw statusProblem(503, 'The idempotency store is unavailable; retry with the same key.', {
            headers: { 'retry-after': '1' },
          });
        }
        switch (reservation.outcome) {
          case 'reserved':
            state.token = reservation.token;
            state.reservedAt = reservation.reservedAt;
            observeIdempotency(state, 'reserved');
            return;
          case 'completed': {
            observeIdempotency(state, 'replayed');
            const stored = reservation.response;
            return reply
              .code(stored.status)
              .headers(stored.headers)
              .header(IDEMPOTENT_REPLAYED_HEADER, 'true')
              .send(stored.body);
          }
          case 'in_flight': {
            observeIdempotency(state, 'in_flight');
            const retryAfterSeconds = Math.max(1, Math.ceil((reservation.leaseUntil - nowMs) / 1000));
            throw new HttpProblem({
              status: 409,
              title: 'A request with this Idempotency-Key is in progress',
              type: `${typeBase}idempotency-request-in-flight`,
              detail: `The first request with key '${state.key}' has not finished; retry after ${retryAfterSeconds} s to get its response.`,
              headers: { 'retry-after': String(retryAfterSeconds) },
            });
          }
          case 'mismatch':
            observeIdempotency(state, 'mismatch');
            throw new HttpProblem({
              status: 422,
              title: 'The Idempotency-Key was used for a different request',
              type: `${typeBase}idempotency-key-reused`,
              detail: `Key '${state.key}' was first used with another body or target on ${routeScope}; use a new key for a new request.`,
            });
        }
      };

      // The response is stored before it is sent, so a client that saw it can always replay it.
      // 2xx and 4xx are stored (the request's outcome); 5xx releases the key for a retry.
      routeOptions.onSend = async (request, reply, payload) => {
        const state = requestStates.get(request)?.idempotency;
        if (state?.token === undefined || state.finished) return payload;
        state.finished = true;
        const token = state.token;
        const body = storableBody(payload);
        if (reply.statusCode >= 500 || body === undefined) {
          await releaseKey(request, state, token);
          return payload;
        }
        try {
          await store.complete(claimOf(state, token), {
            status: reply.statusCode,
            headers: storableHeaders(reply.getHeaders()),
            body,
          });
          observeIdempotency(state, 'stored');
        } catch (error) {
          if (error instanceof ConflictError) {
            // Another attempt took the key over after this one's lease ran out: its token outranks
            // ours, so the key (in flight or completed) stays the other attempt's.
            observeIdempotency(state, 'lease_lost');
            request.log.warn({ err: error }, 'Idempotency-Key lease lost before the response was stored');
          } else if (isMeridianError(error) && error.code === 'INVALID_ARGUMENT') {
            // Too large to store: give the key up rather than hold it until the lease ends.
            request.log.warn({ err: error }, 'response not storable for its Idempotency-Key');
            await releaseKey(request, state, token);
          } else {
            request.log.error({ err: error }, 'could not store the response of an Idempotency-Key');
          }
        }
        return payload;
      };
    }

    server.route(routeOptions);
    matcher.add(route.url, [method]);
    registered.push({ method: method as RouteMethod, url: route.url, access });
  }

  addRoute({
    method: 'GET',
    url: '/healthz',
    access: 'public',
    schema: {
      summary: 'Liveness: the process answers',
      tags: ['operations'],
      response: { 200: { type: 'object', properties: { status: { type: 'string', const: 'ok' } } } },
    },
    handler: async () => ({ status: 'ok' }),
  });

  readinessChecks.add('accepting', () =>
    closing ? { ok: false, detail: 'the gateway is draining' } : { ok: true, detail: 'accepting requests' },
  );
  const reportSchema = {
    type: 'object',
    properties: {
      status: { type: 'string', enum: ['ready', 'not_ready'] },
      checks: {
        type: 'object',
        additionalProperties: {
          type: 'object',
          properties: {
            status: { type: 'string', enum: ['pass', 'fail'] },
            detail: { type: 'string' },
            durationMs: { type: 'number' },
          },
        },
      },
    },
  };
  addRoute({
    method: 'GET',
    url: '/readyz',
    access: 'public',
    schema: {
      summary: 'Readiness: every registered check passes (503 otherwise)',
      tags: ['operations'],
      response: { 200: reportSchema, 503: reportSchema },
    },
    handler: async (_request, reply) => {
      const report = await readinessChecks.run();
      return reply.code(report.status === 'ready' ? 200 : 503).send(report);
    },
  });

  addRoute({
    method: 'GET',
    url: '/metrics',
    schema: { summary: 'Prometheus metrics (text exposition format)', tags: ['operations'] },
    handler: async (_request, reply) => {
      const { contentType, body } = await httpMetrics.render();
      return reply.header('content-type', contentType).send(body);
    },
  });

  addRoute({
    method: 'GET',
    url: '/policies',
    schema: {
      summary: 'Snapshots of the exposed resilience policies (breaker states, ...)',
      tags: ['operations'],
    },
    handler: async () => ({ policies: policyExposure.snapshots() }),
  });

  addRoute({
    method: 'GET',
    url: '/openapi.json',
    access: 'public',
    schema: { hide: true },
    handler: async () => server.swagger(),
  });
  operationsRoutes = false;

  function scheduleSweep(): void {
    if (idempotencyStore === undefined || closing) return;
    sweepTimer = timers.setTimeout(() => {
      sweepKeys()
        .catch((error: unknown) => server.log.error({ err: error }, 'Idempotency-Key sweep failed'))
        .finally(scheduleSweep);
    }, sweepIntervalMs);
  }

  /** Deletes every expired key, a bounded batch per call, so no transaction grows with the backlog. */
  async function sweepKeys(): Promise<number> {
    if (idempotencyStore === undefined) return 0;
    const nowMs = clock.now();
    let removed = 0;
    for (;;) {
      const batch = await idempotencyStore.expire(nowMs, sweepBatchSize);
      removed += batch;
      if (batch < sweepBatchSize || closing) return removed;
    }
  }

  return {
    server,
    metrics: httpMetrics.registry,
    route: addRoute,
    routes: () => registered.map((entry) => ({ ...entry })),
    exposePolicies: (policies) => policyExposure.add(policies),
    exposeRuntime(runtime) {
      if (runtimeExposed) throw new ValidationError('This gateway already exposes a runtime on /metrics');
      runtimeExposed = true;
      registerRuntimeMetrics(httpMetrics.registry, options.metricsPrefix ?? 'meridian_', runtime);
    },
    addReadinessCheck: (name, check) => readinessChecks.add(name, check),
    readiness: () => readinessChecks.run(),
    sweepIdempotencyKeys: sweepKeys,
    async listen(listenOptions = {}) {
      const host = listenOptions.host ?? '127.0.0.1';
      if (options.allowedHosts === undefined && LOOPBACK_ADDRESSES.has(host)) {
        allowedHosts = new Set(LOOPBACK_HOSTS);
      }
      const address = await server.listen({
        host,
        port: integerOption('port', listenOptions.port, 0, 0, 65_535),
        backlog: integerOption('backlog', listenOptions.backlog, 4096, 1, 65_535),
      });
      if (sweepTimer === undefined) scheduleSweep();
      return address;
    },
    async ready() {
      await server.ready();
    },
    async close() {
      closing = true;
      sweepTimer?.cancel();
      await server.close();
    },
  };
}

/** The allowed host names as a set, or undefined for 'any' (and until `listen` decides the default). */
function checkAllowedHosts(hosts: readonly string[] | 'any' | undefined): Set<string> | undefined {
  if (hosts === undefined || hosts === 'any') return undefined;
  if (
    !Array.isArray(hosts) ||
    hosts.length === 0 ||
    !hosts.every((host) => typeof host === 'string' && host !== '')
  ) {
    throw new ValidationError("'allowedHosts' must be 'any' or a non-empty list of host names");
  }
  return new Set(hosts.map((host) => host.toLowerCase()));
}

const LOOPBACK_ADDRESSES = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** How often a reservation that lost a transaction race is tried again before answering 503. */
const MAX_RESERVE_ATTEMPTS = 3;

/**
 * Reserves a key, trying again when the store reports a lost race (two nodes inserting the same
 * new key at once under serialisable isolation): the second try sees the winner's row and
 * answers `in_flight` or `completed` as it should.
 */
async function reserveWithRetry(
  store: IdempotencyStore,
  request: Parameters<IdempotencyStore['reserve']>[0],
): Promise<IdempotencyReservation> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await store.reserve(request);
    } catch (error) {
      if (!(error instanceof ConflictError) || attempt >= MAX_RESERVE_ATTEMPTS) throw error;
    }
  }
}

/** Documents (and lets ajv check) the Idempotency-Key header on an idempotent route. */
function withKeyHeader(headers: unknown): Record<string, unknown> {
  const base = (headers ?? { type: 'object', properties: {} }) as Record<string, unknown>;
  const properties = { ...((base.properties as Record<string, unknown> | undefined) ?? {}) };
  properties[IDEMPOTENCY_KEY_HEADER] = {
    type: 'string',
    minLength: 1,
    // A Structured Field string may come quoted: the quotes are not part of the key.
    maxLength: MAX_IDEMPOTENCY_KEY_LENGTH + 2,
    pattern: `^"?[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,${MAX_IDEMPOTENCY_KEY_LENGTH}}"?$`,
    description: `A unique key per logical request (a UUID, say): retries with the same key and body get the first response. 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters other than '"' and '\\', optionally sent quoted. Scoped per route and per principal: another client's key is a new key.`,
  };
  const required = new Set([...((base.required as string[] | undefined) ?? []), IDEMPOTENCY_KEY_HEADER]);
  return { ...base, type: 'object', properties, required: [...required] };
}

function problemForError(
  error: FastifyError,
  request: FastifyRequest,
  typeBase: string,
  bodyLimitBytes: number,
): HttpProblem {
  if (Array.isArray(error.validation)) {
    const context = error.validationContext ?? 'body';
    const data =
      context === 'querystring'
        ? request.query
        : context === 'params'
          ? request.params
          : context === 'headers'
            ? request.headers
            : request.body;
    return validationProblem(typeBase, invalidFields(context, error.validation as SchemaError[], data));
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return statusProblem(
        413,
        `The request body exceeds the limit of ${request.routeOptions.bodyLimit ?? bodyLimitBytes} bytes.`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return statusProblem(
        415,
        `Content-Type '${request.headers['content-type'] ?? ''}' is not supported; send application/json.`,
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpProblem({
        status: 400,
        title: 'The request body cannot be read',
        type: `${typeBase}malformed-body`,
        detail: error.message,
      });
  }
  if (
    !isMeridianError(error) &&
    typeof error.statusCode === 'number' &&
    error.statusCode >= 400 &&
    error.statusCode < 500
  ) {
    return statusProblem(error.statusCode, error.message);
  }
  return problemFromError(error, typeBase);
}
