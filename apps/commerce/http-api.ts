import {
  type Gateway,
  HttpProblem,
  idempotencyOf,
  PREFERENCE_APPLIED_HEADER,
  preferredWaitSeconds,
} from '../../src/http/index.ts';
import {
  ConflictError,
  NotFoundError,
  type Runtime,
  type SagaDefinition,
  type Timers,
} from '../../src/index.ts';
import type { Catalog } from './catalog.ts';
import { Inventory, type StockState, stockView } from './inventory.ts';
import { Notifications } from './notifications.ts';
import { Order } from './order.ts';
import type { OrderInput, OrderOutput } from './order-saga.ts';
import { listOrders, orderIdFor, orderView } from './order-view.ts';
import { NEXT_CURSOR_HEADER, type PaymentGatewayClient } from './payment-gateway-client.ts';

export interface CommerceApiDependencies {
  readonly runtime: Runtime;
  readonly catalog: Catalog;
  readonly orderSaga: SagaDefinition<OrderInput, OrderOutput>;
  readonly payments: PaymentGatewayClient;
  /** Bounds long polls (`Prefer: wait`). */
  readonly timers: Timers;
  /** Aborted when the app starts draining: long polls answer at once instead of holding it up. */
  readonly closing: AbortSignal;
  /** Orders running or queued at most before `POST /orders` answers 503. */
  readonly maxOrdersInProgress: number;
}

/** The longest `Prefer: wait` that `GET /orders/{orderId}` honours (seconds). */
export const maxOrderWaitSeconds = 60;

const problemTypeBase = 'urn:meridian:problem:';

// ---------------------------------------------------------------------------------------------
// Schemas: they validate requests, shape responses (fields not listed are not sent) and make
// the OpenAPI document at /openapi.json.

const skuSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  description: 'A SKU: letters, digits, ".", "_" and "-", starting with a letter or digit.',
} as const;

const orderIdSchema = { type: 'string', minLength: 1, maxLength: 64 } as const;
const moneySchema = { type: 'number', exclusiveMinimum: 0, maximum: 1_000_000 } as const;

const stockSchema = {
  type: 'object',
  required: ['sku', 'available', 'reserved', 'sold', 'price'],
  properties: {
    sku: { type: 'string' },
    available: { type: 'integer' },
    reserved: { type: 'integer' },
    sold: { type: 'integer' },
    price: { type: 'number' },
  },
} as const;

const itemSchema = {
  type: 'object',
  required: ['sku', 'qty', 'price'],
  properties: { sku: { type: 'string' }, qty: { type: 'integer' }, price: { type: 'number' } },
} as const;

const summaryProperties = {
  orderId: { type: 'string' },
  customerId: { type: 'string' },
  items: { type: 'array', items: itemSchema },
  total: { type: 'number' },
  status: { type: 'string', enum: ['pending', 'confirmed', 'cancelled'] },
  reason: { type: 'string' },
  createdAt: { type: 'string', format: 'date-time' },
  updatedAt: { type: 'string', format: 'date-time' },
} as const;

const orderSchema = {
  type: 'object',
  required: ['orderId', 'customerId', 'items', 'total', 'status', 'payment', 'history'],
  properties: {
    ...summaryProperties,
    payment: {
      type: 'object',
      required: ['status'],
      properties: {
        status: { type: 'string', enum: ['pending', 'charged', 'refunded', 'failed', 'none'] },
        chargeId: { type: 'string' },
      },
    },
    history: {
      type: 'array',
      items: {
        type: 'object',
        required: ['at', 'event'],
        properties: {
          at: { type: 'string', format: 'date-time' },
          event: { type: 'string' },
          detail: { type: 'string' },
        },
      },
    },
  },
} as const;

const chargeSchema = {
  type: 'object',
  required: ['chargeId', 'orderId', 'amount', 'status'],
  properties: {
    chargeId: { type: 'string' },
    orderId: { type: 'string' },
    amount: { type: 'number' },
    status: { type: 'string', enum: ['charged', 'refunded'] },
    refundId: { type: 'string' },
  },
} as const;

const notificationSchema = {
  type: 'object',
  required: ['kind', 'channel', 'to', 'orderId', 'message', 'at'],
  properties: {
    kind: { type: 'string' },
    channel: { type: 'string' },
    to: { type: 'string' },
    orderId: { type: 'string' },
    message: { type: 'string' },
    at: { type: 'string', format: 'date-time' },
  },
} as const;

const settingsProperties = {
  failureRate: { type: 'number', minimum: 0, maximum: 1 },
  latencyMs: { type: 'integer', minimum: 0, maximum: 60_000 },
  timeoutRate: { type: 'number', minimum: 0, maximum: 1 },
  lostResponseRate: { type: 'number', minimum: 0, maximum: 1 },
} as const;

const settingsSchema = { type: 'object', properties: settingsProperties } as const;

const sagaType = (deps: CommerceApiDependencies) => deps.orderSaga.name;

/** Registers the commerce HTTP contract on a gateway. */
export function registerCommerceRoutes(gateway: Gateway, deps: CommerceApiDependencies): void {
  const { runtime, catalog, payments, timers, closing } = deps;

  /**
   * Resolves when the order's saga ends, `timeoutMs` passes, the client hangs up or the app
   * starts draining, whichever comes first; the waiter is removed either way.
   */
  async function untilEnded(
    orderId: string,
    timeoutMs: number,
    response: NodeJS.EventEmitter,
  ): Promise<void> {
    if (closing.aborted) return;
    const stop = new AbortController();
    const timer = timers.setTimeout(() => stop.abort(), timeoutMs);
    const hungUp = () => stop.abort();
    response.once('close', hungUp);
    closing.addEventListener('abort', hungUp, { once: true });
    try {
      await runtime.handle(orderId).result({ signal: stop.signal });
    } catch {
      // Cancelled, timed out, or the runtime is stopping: the caller reads where the order stands.
    } finally {
      timer.cancel();
      response.off('close', hungUp);
      closing.removeEventListener('abort', hungUp);
    }
  }

  gateway.route<{ Params: { sku: string }; Body: { available: number; price: number } }>({
    method: 'PUT',
    url: '/inventory/:sku',
    schema: {
      summary: "Sets a SKU's sellable stock and its price (lists the SKU)",
      tags: ['inventory'],
      params: { type: 'object', required: ['sku'], properties: { sku: skuSchema } },
      body: {
        type: 'object',
        required: ['available', 'price'],
        additionalProperties: false,
        properties: {
          available: { type: 'integer', minimum: 0, maximum: 1_000_000_000 },
          price: moneySchema,
        },
      },
      response: { 200: stockSchema },
    },
    handler: async (request) => {
      const { sku } = request.params;
      const state = await runtime.send(Inventory, sku, 'set', request.body);
      await catalog.invalidate(sku);
      return stockView(state as StockState);
    },
  });

  gateway.route<{ Params: { sku: string } }>({
    method: 'GET',
    url: '/inventory/:sku',
    schema: {
      summary: "A SKU's stock: available, reserved (held by orders being paid), sold, and its price",
      tags: ['inventory'],
      params: { type: 'object', required: ['sku'], properties: { sku: skuSchema } },
      response: { 200: stockSchema },
    },
    handler: async (request) => {
      const { sku } = request.params;
      const found = await runtime.state(Inventory, sku);
      if (found === null || !found.state.listed) throw new NotFoundError(`SKU '${sku}' is not listed`);
      return stockView(found.state);
    },
  });

  gateway.route<{ Querystring: { limit?: number; after?: string } }>({
    method: 'GET',
    url: '/catalog',
    schema: {
      summary: 'The catalog read model: listed SKUs with price and stock, served from a cache',
      tags: ['inventory'],
      querystring: {
        type: 'object',
        properties: {
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          after: skuSchema,
        },
      },
      response: {
        200: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              sku: { type: 'string' },
              price: { type: 'number' },
              available: { type: 'integer' },
              inStock: { type: 'boolean' },
            },
          },
        },
      },
    },
    handler: async (request) => catalog.page(request.query.limit ?? 100, request.query.after),
  });

  gateway.route<{ Body: { customerId: string; items: Array<{ sku: string; qty: number }> } }>({
    method: 'POST',
    url: '/orders',
    idempotent: true,
    backlog: {
      depth: () => runtime.sagasInProgress,
      limit: deps.maxOrdersInProgress,
      what: 'orders (and other sagas) in progress',
    },
    schema: {
      summary: 'Places an order: answers 202 at once; the order then reserves, charges and confirms',
      tags: ['orders'],
      body: {
        type: 'object',
        required: ['customerId', 'items'],
        additionalProperties: false,
        properties: {
          customerId: { type: 'string', minLength: 1, maxLength: 128 },
          items: {
            type: 'array',
            minItems: 1,
            maxItems: 100,
            items: {
              type: 'object',
              required: ['sku', 'qty'],
              additionalProperties: false,
              properties: { sku: skuSchema, qty: { type: 'integer', minimum: 1, maximum: 1000 } },
            },
          },
        },
      },
      response: {
        202: {
          type: 'object',
          required: ['orderId', 'status'],
          properties: { orderId: { type: 'string' }, status: { type: 'string', const: 'pending' } },
        },
      },
    },
    handler: async (request, reply) => {
      const quote = await catalog.quote(request.body.items);
      if (!quote.ok) {
        throw new HttpProblem({
          status: 422,
          title: 'The order names SKUs that are not listed',
          type: `${problemTypeBase}unknown-sku`,
          detail: `Not listed: ${quote.unknownSkus.map((sku) => `'${sku}'`).join(', ')}. List them with PUT /inventory/{sku} first.`,
          extensions: { unknownSkus: quote.unknownSkus },
        });
      }
      // The id comes from the key: a retry that takes over a dead attempt's lease resumes the
      // same order instead of placing a second one.
      const { scope, key, reservedAt } = idempotencyOf(request)!;
      const orderId = orderIdFor(scope, key, reservedAt!);
      const input: OrderInput = {
        customerId: request.body.customerId,
        items: quote.items,
        total: quote.total,
      };
      const traceparent = request.headers.traceparent;
      try {
        await runtime.startSaga(
          deps.orderSaga,
          orderId,
          input,
          typeof traceparent === 'string' ? { traceparent } : {},
        );
      } catch (error) {
        // The same key's first attempt created the order with other prices (they changed
        // before this takeover): the order exists, and it is this request's order.
        if (!(error instanceof ConflictError) || (await runtime.saga(orderId))?.type !== sagaType(deps)) {
          throw error;
        }
      }
      return reply.code(202).header('location', `/orders/${orderId}`).send({ orderId, status: 'pending' });
    },
  });

  gateway.route<{ Params: { orderId: string } }>({
    method: 'GET',
    url: '/orders/:orderId',
    schema: {
      summary: 'An order: status (pending, confirmed, cancelled), reason, payment, and its history',
      description: `With \`Prefer: wait=N\` (RFC 7240) a pending order is answered once it is confirmed or cancelled, or after N seconds (at most ${maxOrderWaitSeconds}) as it stands then: a long poll instead of polling. The answer then carries \`Preference-Applied: wait=N\`.`,
      tags: ['orders'],
      params: { type: 'object', required: ['orderId'], properties: { orderId: orderIdSchema } },
      headers: {
        type: 'object',
        properties: {
          prefer: { type: 'string', description: 'wait=<seconds>: hold the answer until the order ends' },
        },
      },
      response: { 200: orderSchema },
    },
    handler: async (request, reply) => {
      const { orderId } = request.params;
      const wait = preferredWaitSeconds(request.headers.prefer, maxOrderWaitSeconds);
      // A long poll waits first and reads once: an order still running answers as soon as it
      // ends; one that ended (or never existed) is looked up by the wait and answered at once.
      if (wait !== undefined && wait > 0) await untilEnded(orderId, wait * 1000, reply.raw);
      // The saga's progress and the Order entity from one snapshot: the two agree, and a poll
      // neither waits for the writer nor holds it up.
      const found = await runtime.read(async (_tx, view) => {
        const progress = await view.progress(orderId);
        if (progress === null || progress.type !== sagaType(deps)) return null;
        return { progress, order: await view.state(Order, orderId) };
      });
      if (found === null) throw new NotFoundError(`Order '${orderId}' does not exist`);
      if (wait !== undefined) reply.header(PREFERENCE_APPLIED_HEADER, `wait=${wait}`);
      reply.header('vary', 'prefer');
      return orderView(found.progress, found.order?.state ?? null, found.order?.updatedAt ?? null);
    },
  });

  gateway.route<{
    Querystring: { status?: 'pending' | 'confirmed' | 'cancelled'; limit?: number; after?: string };
  }>({
    method: 'GET',
    url: '/orders',
    schema: {
      summary: 'A page of orders in order-id order, optionally of one status; `next` continues it',
      tags: ['orders'],
      querystring: {
        type: 'object',
        properties: {
          status: { type: 'string', enum: ['pending', 'confirmed', 'cancelled'] },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          after: orderIdSchema,
        },
      },
      response: {
        200: {
          type: 'object',
          required: ['orders'],
          properties: {
            orders: { type: 'array', items: { type: 'object', properties: summaryProperties } },
            next: { type: ['string', 'null'] },
          },
        },
      },
    },
    handler: async (request) => {
      const { status, after } = request.query;
      const limit = request.query.limit ?? 100;
      return runtime.read((_tx, view) =>
        listOrders(view, {
          limit,
          ...(status === undefined ? {} : { status }),
          ...(after === undefined ? {} : { after }),
        }),
      );
    },
  });

  gateway.route<{ Querystring: { orderId?: string; limit?: number; after?: string } }>({
    method: 'GET',
    url: '/payments/charges',
    schema: {
      summary: 'What the simulated payment gateway recorded (charges and whether they were refunded)',
      description: `With \`orderId\`: all of that order's charges. Without: a page of every charge in the order they were made, \`limit\` (default 100) from after the charge \`after\`; while more follow, the \`${NEXT_CURSOR_HEADER}\` header names the page's last charge, the \`after\` of the next page.`,
      tags: ['payments'],
      querystring: {
        type: 'object',
        properties: {
          orderId: orderIdSchema,
          // No schema default: a limit the caller sent is told apart from none (not with orderId).
          limit: { type: 'integer', minimum: 1, maximum: 1000 },
          after: { type: 'string', minLength: 1, maxLength: 255 },
        },
      },
      response: { 200: { type: 'array', items: chargeSchema } },
    },
    handler: async (request, reply) => {
      const { orderId, limit, after } = request.query;
      if (orderId !== undefined) {
        const paging = limit !== undefined ? 'limit' : after !== undefined ? 'after' : undefined;
        if (paging !== undefined) {
          throw new HttpProblem({
            status: 400,
            title: 'The request is invalid',
            type: `${problemTypeBase}validation-failed`,
            detail: `'${paging}' pages the listing of every charge and cannot be combined with 'orderId'`,
            extensions: {
              errors: [
                {
                  in: 'query',
                  pointer: paging,
                  rule: 'not',
                  message: "must not be given with 'orderId'",
                },
              ],
            },
          });
        }
        return payments.charges(orderId);
      }
      const page = await payments.chargePage({
        ...(limit === undefined ? {} : { limit }),
        ...(after === undefined ? {} : { after }),
      });
      if (page.next !== null) reply.header(NEXT_CURSOR_HEADER, page.next);
      return page.charges;
    },
  });

  gateway.route({
    method: 'GET',
    url: '/payments/settings',
    schema: {
      summary: "The simulated payment gateway's fault settings",
      tags: ['payments'],
      response: { 200: settingsSchema },
    },
    handler: async () => payments.settings(),
  });

  gateway.route<{ Body: Record<string, number> }>({
    method: 'PUT',
    url: '/payments/settings',
    schema: {
      summary: "Changes the simulated payment gateway's faults (any subset): break it, slow it, heal it",
      tags: ['payments'],
      body: { type: 'object', additionalProperties: false, properties: settingsProperties },
      response: { 200: settingsSchema },
    },
    handler: async (request) => payments.updateSettings(request.body),
  });

  gateway.route<{ Querystring: { orderId: string } }>({
    method: 'GET',
    url: '/notifications',
    schema: {
      summary: 'The notifications sent to the customer about an order',
      tags: ['orders'],
      querystring: { type: 'object', required: ['orderId'], properties: { orderId: orderIdSchema } },
      response: { 200: { type: 'array', items: notificationSchema } },
    },
    handler: async (request) => {
      const found = await runtime.state(Notifications, request.query.orderId);
      return (found?.state.sent ?? []).map((notification) => ({
        ...notification,
        at: new Date(notification.at).toISOString(),
      }));
    },
  });
}
