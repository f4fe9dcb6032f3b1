import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  type Clock,
  type Random,
  systemClock,
  systemTimers,
  type TimerHandle,
  type Timers,
  ValidationError,
} from '../../src/index.ts';
import { isStorageFault } from '../../src/store/index.ts';
import { seededRandom } from '../../src/testing/index.ts';
import { NEXT_CURSOR_HEADER } from './payment-gateway-client.ts';
import {
  type Charge,
  defaultChargePageSize,
  type LedgerPage,
  maxChargePageSize,
  PaymentLedger,
  type Refund,
} from './payment-gateway-ledger.ts';

/** How the simulated gateway misbehaves. Each rate is rolled independently per request. */
export interface PaymentGatewaySettings {
  /** Share of requests answered 503 without doing anything. Range [0, 1]. @default 0 */
  failureRate: number;
  /** Delay before each request is looked at (ms). Range [0, 60000]. @default 0 */
  latencyMs: number;
  /**
   * Share of requests that are never answered (and not processed): the connection is held
   * for `hangMs` and then dropped, past any sensible client timeout. Range [0, 1]. @default 0
   */
  timeoutRate: number;
  /**
   * Share of requests that are processed (the charge or refund is recorded) and then lose
   * their response: the connection is destroyed without an answer, so the caller cannot tell
   * whether it was charged. Range [0, 1]. @default 0
   */
  lostResponseRate: number;
}

export interface PaymentGatewayOptions {
  settings?: Partial<PaymentGatewaySettings>;
  /**
   * The credential callers present (`Authorization: Bearer <apiKey>`, at least 32 characters);
   * other requests get 401. Omitted: anyone who reaches the port may charge and refund, so
   * only for in-process tests.
   */
  apiKey?: string;
  /** Where the ledger is kept across restarts (JSON lines); in memory only when omitted. */
  ledgerPath?: string;
  /** Also fsync each ledger entry, as `--durability fsync` does for the store. @default false */
  fsync?: boolean;
  /** Forget charges and refunds this long after they were made (ms; `PaymentLedgerOptions.forgetAfterMs`). @default never */
  forgetAfterMs?: number;
  /** How long a "timeout" holds its connection before dropping it (ms). Range [1, 600000]. @default 30000 */
  hangMs?: number;
  /** Randomness for the rolls; a seeded source makes a run's faults replay exactly. @default seededRandom(seed) */
  random?: Random;
  /** Seed for the default random source. @default 1 */
  seed?: number;
  /**
   * The `Retry-After` (seconds) of a simulated outage's 503; 0 sends none, so callers fall back
   * to their own backoff (fast tests). Range [0, 3600]. @default 1
   */
  retryAfterSeconds?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default systemTimers */
  timers?: Timers;
}

export interface PaymentGateway {
  readonly server: FastifyInstance;
  readonly ledger: PaymentLedger;
  settings(): PaymentGatewaySettings;
  /** Changes settings at runtime (also `PUT /settings`); returns the settings now in force. */
  updateSettings(change: Partial<PaymentGatewaySettings>): PaymentGatewaySettings;
  /** Listens; returns the base URL. @default host '127.0.0.1', port 0 (any free port) */
  listen(options?: { host?: string; port?: number }): Promise<string>;
  /** Drops held connections, stops listening and closes the ledger file. */
  close(): Promise<void>;
}

const DEFAULT_SETTINGS: PaymentGatewaySettings = {
  failureRate: 0,
  latencyMs: 0,
  timeoutRate: 0,
  lostResponseRate: 0,
};

/** Validates a partial settings change and returns the merged settings. */
export function mergeSettings(
  current: PaymentGatewaySettings,
  change: Partial<PaymentGatewaySettings>,
): PaymentGatewaySettings {
  const next = { ...current };
  for (const [name, value] of Object.entries(change ?? {})) {
    if (value === undefined) continue;
    if (name === 'failureRate' || name === 'timeoutRate' || name === 'lostResponseRate') {
      if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
        throw new ValidationError(`'${name}' must be a number in [0, 1]: current value is ${String(value)}`);
      }
      next[name] = value;
    } else if (name === 'latencyMs') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 60_000) {
        throw new ValidationError(
          `'latencyMs' must be an integer in [0, 60000]: current value is ${String(value)}`,
        );
      }
      next.latencyMs = value;
    } else {
      throw new ValidationError(`Unknown payment gateway setting '${name}'`);
    }
  }
  return next;
}

const chargeView = (charge: Charge) => ({
  chargeId: charge.chargeId,
  orderId: charge.orderId,
  amount: charge.amount,
  status: charge.status,
  ...(charge.refundId === undefined ? {} : { refundId: charge.refundId }),
});

const refundView = (refund: Refund) => ({
  refundId: refund.refundId,
  chargeId: refund.chargeId,
  orderId: refund.orderId,
  amount: refund.amount,
  status: 'refunded' as const,
});

const keySchema = { type: 'string', minLength: 1, maxLength: 255 } as const;

interface Rolls {
  fail: boolean;
  hang: boolean;
  loseResponse: boolean;
}

/**
 * A simulated external payment provider, as flaky as its settings say: its own Fastify
 * instance on its own port, idempotent by the caller's key like a real provider (the same key
 * returns the same charge, never a second one), recording everything it accepted.
 *
 * - `POST /charges {orderId, amount, idempotencyKey}` → 201 the charge (200 when the key was seen)
 * - `POST /refunds {chargeId, idempotencyKey}` → 201 the refund (200 when already refunded)
 * - `GET /charges?orderId=` → `[{chargeId, orderId, amount, status}]`, all of that order's charges
 * - `GET /charges?limit=&after=` → a page of every charge in the order they were made (`limit`
 *   1..1000, default 100; `after` a chargeId), with `Next-Cursor: <chargeId>` while more follow
 * - `GET /refunds?chargeId=` → that charge's refund (at most one); `GET /refunds?limit=&after=` →
 *   a page of every refund, paged like the charges
 * - `GET /settings`, `PUT /settings` (partial) → the settings in force
 *
 * Failure modes, rolled in this order per POST: `failureRate` → 503, nothing done;
 * `timeoutRate` → no answer, nothing done; otherwise the request is processed, then
 * `lostResponseRate` → the connection is destroyed without an answer.
 */
export function createPaymentGateway(options: PaymentGatewayOptions = {}): PaymentGateway {
  const clock = options.clock ?? systemClock;
  const timers = options.timers ?? systemTimers;
  const random = options.random ?? seededRandom(options.seed ?? 1);
  const hangMs = options.hangMs ?? 30_000;
  if (!Number.isInteger(hangMs) || hangMs < 1 || hangMs > 600_000) {
    throw new ValidationError(`'hangMs' must be an integer in [1, 600000]: current value is ${hangMs}`);
  }
  const retryAfterSeconds = options.retryAfterSeconds ?? 1;
  if (!Number.isInteger(retryAfterSeconds) || retryAfterSeconds < 0 || retryAfterSeconds > 3600) {
    throw new ValidationError(
      `'retryAfterSeconds' must be an integer in [0, 3600]: current value is ${retryAfterSeconds}`,
    );
  }
  let settings = mergeSettings(DEFAULT_SETTINGS, options.settings ?? {});
  const ledger = new PaymentLedger({
    ...(options.ledgerPath === undefined ? {} : { path: options.ledgerPath, fsync: options.fsync ?? false }),
    ...(options.forgetAfterMs === undefined ? {} : { forgetAfterMs: options.forgetAfterMs }),
  });
  const expectedKey = options.apiKey === undefined ? undefined : checkApiKey(options.apiKey);
  let closed = false;
  const held = new Set<{ request: FastifyRequest; timer: TimerHandle }>();

  const server = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 16_384 });

  server.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
    // A ledger that cannot write (disk full) charged nothing: the caller retries, as after an outage.
    if (isStorageFault(error)) {
      return reply
        .code(503)
        .header('retry-after', '1')
        .send({ error: 'unavailable', message: `The ledger cannot write: ${error.message.slice(0, 200)}` });
    }
    const status = error instanceof ValidationError ? 400 : (error.statusCode ?? 500);
    return reply
      .code(status)
      .send({ error: status >= 500 ? 'internal' : 'invalid_request', message: error.message });
  });

  // Every route, listings included: the ledger names orders and amounts.
  server.addHook('onRequest', async (request, reply) => {
    if (expectedKey === undefined) return;
    const given = Buffer.from(String(request.headers.authorization ?? ''));
    if (given.length === expectedKey.length && timingSafeEqual(given, expectedKey)) return;
    return reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="payments"')
      .send({ error: 'unauthenticated', message: 'Send Authorization: Bearer <the gateway API key>.' });
  });

  /** Draws all three rolls up front, so the random sequence does not depend on the settings. */
  function roll(): Rolls {
    const fail = random.next();
    const hang = random.next();
    const lose = random.next();
    return {
      fail: fail < settings.failureRate,
      hang: hang < settings.timeoutRate,
      loseResponse: lose < settings.lostResponseRate,
    };
  }

  async function delay(): Promise<void> {
    if (settings.latencyMs <= 0) return;
    await new Promise<void>((resolve) => timers.setTimeout(resolve, settings.latencyMs));
  }

  /** Holds the connection without answering, then drops it. */
  function hang(request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    const entry = {
      request,
      timer: timers.setTimeout(() => {
        held.delete(entry);
        request.raw.socket?.destroy();
      }, hangMs),
    };
    held.add(entry);
  }

  function loseResponse(request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    request.raw.socket?.destroy();
  }

  /** Runs the fault rolls around `process`; returns true when the caller should answer normally. */
  async function misbehave(
    request: FastifyRequest,
    reply: FastifyReply,
    process: () => void,
  ): Promise<boolean> {
    const rolls = roll();
    await delay();
    if (rolls.fail) {
      if (retryAfterSeconds > 0) reply.header('retry-after', String(retryAfterSeconds));
      await reply.code(503).send({ error: 'unavailable', message: 'Simulated outage' });
      return false;
    }
    if (rolls.hang) {
      hang(request, reply);
      return false;
    }
    process();
    if (rolls.loseResponse) {
      loseResponse(request, reply);
      return false;
    }
    return true;
  }

  server.post<{ Body: { orderId: string; amount: number; idempotencyKey: string } }>(
    '/charges',
    {
      schema: {
        body: {
          type: 'object',
          required: ['orderId', 'amount', 'idempotencyKey'],
          additionalProperties: false,
          properties: {
            orderId: { type: 'string', minLength: 1, maxLength: 255 },
            amount: { type: 'number', exclusiveMinimum: 0, maximum: 1_000_000_000 },
            idempotencyKey: keySchema,
          },
        },
      },
    },
    async (request, reply) => {
      let outcome: ReturnType<PaymentLedger['charge']> | undefined;
      const answer = await misbehave(request, reply, () => {
        outcome = ledger.charge(request.body, clock.now());
      });
      if (!answer || outcome === undefined) return reply;
      if (outcome.outcome === 'key_reused') {
        return reply.code(422).send({
          error: 'idempotency_key_reused',
          message: `Key '${request.body.idempotencyKey}' was used for charge ${outcome.charge.chargeId} of order ${outcome.charge.orderId}, amount ${outcome.charge.amount}`,
        });
      }
      return reply.code(outcome.outcome === 'created' ? 201 : 200).send(chargeView(outcome.charge));
    },
  );

  server.post<{ Body: { chargeId: string; idempotencyKey: string } }>(
    '/refunds',
    {
      schema: {
        body: {
          type: 'object',
          required: ['chargeId', 'idempotencyKey'],
          additionalProperties: false,
          properties: {
            chargeId: { type: 'string', minLength: 1, maxLength: 255 },
            idempotencyKey: keySchema,
          },
        },
      },
    },
    async (request, reply) => {
      let outcome: ReturnType<PaymentLedger['refund']> | undefined;
      const answer = await misbehave(request, reply, () => {
        outcome = ledger.refund(request.body, clock.now());
      });
      if (!answer || outcome === undefined) return reply;
      switch (outcome.outcome) {
        case 'unknown_charge':
          return reply
            .code(404)
            .send({ error: 'unknown_charge', message: `No charge '${request.body.chargeId}' exists` });
        case 'key_reused':
          return reply.code(422).send({
            error: 'idempotency_key_reused',
            message: `Key '${request.body.idempotencyKey}' was used to refund charge ${outcome.refund.chargeId}`,
          });
        default:
          return reply.code(outcome.outcome === 'created' ? 201 : 200).send(refundView(outcome.refund));
      }
    },
  );

  /**
   * `GET url`: with `?<filter>=`, the items it names, whole (an array: one order's charges, which
   * the saga's lookup relies on, or one charge's refund); without it, a page of every item in
   * the order they were made (`limit`, `after`, and `Next-Cursor` while more follow).
   */
  function listing<T>(
    url: string,
    what: 'charge' | 'refund',
    filter: 'orderId' | 'chargeId',
    named: (id: string) => T[],
    page: (options: { limit: number; after?: string }) => LedgerPage<T>,
    view: (item: T) => unknown,
  ): void {
    server.get<{ Querystring: { limit?: number; after?: string } & Partial<Record<typeof filter, string>> }>(
      url,
      {
        schema: {
          querystring: {
            type: 'object',
            properties: {
              [filter]: { type: 'string' },
              limit: { type: 'integer', minimum: 1, maximum: maxChargePageSize },
              after: keySchema,
            },
          },
        },
      },
      async (request, reply) => {
        const { limit, after } = request.query;
        const id = request.query[filter];
        if (id !== undefined) {
          const paging = limit !== undefined ? 'limit' : after !== undefined ? 'after' : undefined;
          if (paging !== undefined) {
            throw new ValidationError(
              `'${paging}' pages the listing of every ${what} and cannot be combined with '${filter}'`,
            );
          }
          return named(id).map(view);
        }
        const found = page({
          limit: limit ?? defaultChargePageSize,
          ...(after === undefined ? {} : { after }),
        });
        if (found.next !== null) reply.header(NEXT_CURSOR_HEADER, found.next);
        return found.items.map(view);
      },
    );
  }
  listing(
    '/charges',
    'charge',
    'orderId',
    (orderId) => ledger.charges(orderId),
    (options) => ledger.page(options),
    chargeView,
  );
  listing(
    '/refunds',
    'refund',
    'chargeId',
    (chargeId) => ledger.refunds(chargeId),
    (options) => ledger.refundPage(options),
    refundView,
  );

  server.get('/settings', async () => settings);
  server.put<{ Body: Partial<PaymentGatewaySettings> }>(
    '/settings',
    { schema: { body: { type: 'object' } } },
    async (request) => {
      settings = mergeSettings(settings, request.body);
      return settings;
    },
  );

  return {
    server,
    ledger,
    settings: () => ({ ...settings }),
    updateSettings(change) {
      settings = mergeSettings(settings, change);
      return { ...settings };
    },
    async listen(listenOptions = {}) {
      return server.listen({ host: listenOptions.host ?? '127.0.0.1', port: listenOptions.port ?? 0 });
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const entry of held) {
        entry.timer.cancel();
        entry.request.raw.socket?.destroy();
      }
      held.clear();
      await server.close();
      ledger.close();
    },
  };
}

function checkApiKey(apiKey: string): Buffer {
  if (typeof apiKey !== 'string' || apiKey.length < 32 || apiKey.length > 256 || /\s/.test(apiKey)) {
    throw new ValidationError("'apiKey' must be 32 to 256 characters without spaces");
  }
  return Buffer.from(`Bearer ${apiKey}`);
}
