import {
  type Gateway,
  HttpProblem,
  idempotencyOf,
  PREFERENCE_APPLIED_HEADER,
  type Principal,
  preferredWaitSeconds,
  principalOf,
  Type,
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

/**
 * What a customer credential may do: read the catalog and stock, place orders, read its own
 * orders (their charges, notifications and events), and read and write its own profile. Everything that changes settings or
 * inventory, and every listing across customers, is the operator's.
 */
export const CUSTOMER_SCOPES = [
  'catalog:read',
  'orders:read',
  'orders:write',
  'profile:read',
  'profile:write',
] as const;
const catalogRead = { scopes: ['catalog:read'] } as const;
const ordersRead = { scopes: ['orders:read'] } as const;
const ordersWrite = { scopes: ['orders:write'] } as const;

/** Whether the principal may see an order of this customer: its own, or any for an operator. */
export function mayReadOrdersOf(principal: Principal, customerId: string | undefined): boolean {
  return principal.role === 'operator' || (customerId !== undefined && principal.id === customerId);
}

/** The 404 of an order the caller may not see: the same as for one that does not exist, so ids leak nothing. */
function orderNotFound(orderId: string): NotFoundError {
  return new NotFoundError(`Order '${orderId}' does not exist`);
}

// ---------------------------------------------------------------------------------------------
// Schemas: they validate requests, shape responses (fields not listed are not sent) and make
// the OpenAPI document at /openapi.json.

// Requests are declared with TypeBox: each schema below also types its handler's request.
const sku = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  description: 'A SKU: letters, digits, ".", "_" and "-", starting with a letter or digit.',
});
const orderId = Type.String({ minLength: 1, maxLength: 64 });
const money = Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 });
const pageLimit = Type.Integer({ minimum: 1, maximum: 1000, default: 100 });
const skuParams = Type.Object({ sku }, { additionalProperties: false });

const stockBody = Type.Object(
  { available: Type.Integer({ minimum: 0, maximum: 1_000_000_000 }), price: money },
  { additionalProperties: false },
);

const orderBody = Type.Object(
  {
    customerId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    items: Type.Array(
      Type.Object({ sku, qty: Type.Integer({ minimum: 1, maximum: 1000 }) }, { additionalProperties: false }),
      { minItems: 1, maxItems: 100 },
    ),
  },
  { additionalProperties: false },
);

const orderListQuery = Type.Object({
  status: Type.Optional(
    Type.Union([Type.Literal('pending'), Type.Literal('confirmed'), Type.Literal('cancelled')]),
  ),
  limit: Type.Optional(pageLimit),
  after: Type.Optional(orderId),
});

const chargeQuery = Type.Object({
  orderId: Type.Optional(orderId),
  // No default: a limit the caller sent is told apart from none (not with orderId).
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
});

const settingsBody = Type.Object(
  {
    failureRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    latencyMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
    timeoutRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    lostResponseRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  },
  { additionalProperties: false },
);

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

const settingsSchema = { type: 'object', properties: settingsBody.properties } as const;

const sagaType = (deps: CommerceApiDependencies) => deps.orderSaga.name;

/** Registers the commerce HTTP contract on a gateway. */
export function registerCommerceRoutes(gateway: Gateway, deps: CommerceApiDependencies): void {
  const { runtime, catalog, payments, timers, closing } = deps;

  /** Throws the order's 404 unless it exists and the principal may read it. */
  async function checkOrderReadable(principal: Principal, orderId: string): Promise<void> {
    if (principal.role === 'operator') return;
    const record = await runtime.saga(orderId);
    const customerId =
      record === null || record.type !== sagaType(deps)
        ? undefined
        : (record.input as unknown as OrderInput | undefined)?.customerId;
    if (!mayReadOrdersOf(principal, customerId)) throw orderNotFound(orderId);
  }

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

  gateway.route({
    method: 'PUT',
    url: '/inventory/:sku',
    access: 'operator',
    // Two numbers: a small limit, so a hostile body is refused (413) before it is read.
    bodyLimitBytes: 1024,
    schema: {
      summary: "Sets a SKU's sellable stock and its price (lists the SKU)",
      tags: ['inventory'],
      params: skuParams,
      body: stockBody,
      response: { 200: stockSchema },
    },
    handler: async (request) => {
      const { sku } = request.params;
      // The commit invalidates the SKU's catalog entry on every node (the catalog is bound to it).
      const state = await runtime.send(Inventory, sku, 'set', request.body);
      return stockView(state as StockState);
    },
  });

  gateway.route({
    method: 'GET',
    url: '/inventory/:sku',
    access: catalogRead,
    schema: {
      summary: "A SKU's stock: available, reserved (held by orders being paid), sold, and its price",
      tags: ['inventory'],
      params: skuParams,
      response: { 200: stockSchema },
    },
    handler: async (request) => {
      const { sku } = request.params;
      const found = await runtime.state(Inventory, sku);
      if (found === null || !found.state.listed) throw new NotFoundError(`SKU '${sku}' is not listed`);
      return stockView(found.state);
    },
  });

  gateway.route({
    method: 'GET',
    url: '/catalog',
    access: catalogRead,
    schema: {
      summary: 'The catalog read model: listed SKUs with price and stock, served from a cache',
      tags: ['inventory'],
      querystring: Type.Object({ limit: Type.Optional(pageLimit), after: Type.Optional(sku) }),
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

  gateway.route({
    method: 'POST',
    url: '/orders',
    access: ordersWrite,
    idempotent: true,
    // 100 items of a 64-character SKU and a quantity fit in ~10 KB.
    bodyLimitBytes: 16_384,
    backlog: {
      depth: () => runtime.sagasInProgress,
      limit: deps.maxOrdersInProgress,
      what: 'orders (and other sagas) in progress',
    },
    schema: {
      summary: 'Places an order: answers 202 at once; the order then reserves, charges and confirms',
      description:
        "The order is the calling customer's: a customer credential places orders for itself (a `customerId` naming anyone else is refused with 403). An operator names the customer in `customerId`.",
      tags: ['orders'],
      body: orderBody,
      response: {
        202: {
          type: 'object',
          required: ['orderId', 'status'],
          properties: { orderId: { type: 'string' }, status: { type: 'string', const: 'pending' } },
        },
      },
    },
    handler: async (request, reply) => {
      const customerId = customerOf(principalOf(request)!, request.body.customerId);
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
        customerId,
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

  gateway.route({
    method: 'GET',
    url: '/orders/:orderId',
    access: ordersRead,
    schema: {
      summary: 'An order: status (pending, confirmed, cancelled), reason, payment, and its history',
      description: `With \`Prefer: wait=N\` (RFC 7240) a pending order is answered once it is confirmed or cancelled, or after N seconds (at most ${maxOrderWaitSeconds}) as it stands then: a long poll instead of polling. The answer then carries \`Preference-Applied: wait=N\`.`,
      tags: ['orders'],
      params: Type.Object({ orderId }),
      headers: Type.Object({
        prefer: Type.Optional(
          Type.String({
            maxLength: 256,
            description: 'wait=<seconds>: hold the answer until the order ends',
          }),
        ),
      }),
      response: { 200: orderSchema },
    },
    handler: async (request, reply) => {
      const { orderId } = request.params;
      const principal = principalOf(request)!;
      // Checked before a long poll: a customer cannot hold a wait open on another's order.
      await checkOrderReadable(principal, orderId);
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
      if (found === null) throw orderNotFound(orderId);
      if (wait !== undefined) reply.header(PREFERENCE_APPLIED_HEADER, `wait=${wait}`);
      reply.header('vary', 'prefer');
      return orderView(found.progress, found.order?.state ?? null, found.order?.updatedAt ?? null);
    },
  });

  gateway.route({
    method: 'GET',
    url: '/orders',
    access: ordersRead,
    schema: {
      summary: 'A page of orders in order-id order, optionally of one status; `next` continues it',
      description:
        'A customer sees only its own orders: its pages hold its own orders only, chosen as the orders are read (at most 10,000 per request, as with `status`), so a page may hold fewer than `limit` with `next` still continuing the listing.',
      tags: ['orders'],
      querystring: orderListQuery,
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
      const principal = principalOf(request)!;
      // A customer's pages are of its own orders, chosen while the orders are read: filtering a
      // page of everyone's afterwards gave mostly empty pages whose `next` named another
      // customer's order.
      const customerId = principal.role === 'operator' ? undefined : principal.id;
      return runtime.read((_tx, view) =>
        listOrders(view, {
          limit,
          ...(status === undefined ? {} : { status }),
          ...(customerId === undefined ? {} : { customerId }),
          ...(after === undefined ? {} : { after }),
        }),
      );
    },
  });

  gateway.route({
    method: 'GET',
    url: '/payments/charges',
    access: ordersRead,
    schema: {
      summary: 'What the simulated payment gateway recorded (charges and whether they were refunded)',
      description: `With \`orderId\`: all of that order's charges (a customer: only of its own orders). Without (operators only): a page of every charge in the order they were made, \`limit\` (default 100) from after the charge \`after\`; while more follow, the \`${NEXT_CURSOR_HEADER}\` header names the page's last charge, the \`after\` of the next page.`,
      tags: ['payments'],
      querystring: chargeQuery,
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
        await checkOrderReadable(principalOf(request)!, orderId);
        return payments.charges(orderId);
      }
      if (principalOf(request)!.role !== 'operator') {
        throw new HttpProblem({
          status: 403,
          title: 'The operator role is required',
          type: `${problemTypeBase}forbidden`,
          detail:
            "Listing every charge is open to operators only; a customer names its order with 'orderId'.",
        });
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
    access: 'operator',
    schema: {
      summary: "The simulated payment gateway's fault settings",
      tags: ['payments'],
      response: { 200: settingsSchema },
    },
    handler: async () => payments.settings(),
  });

  gateway.route({
    method: 'PUT',
    url: '/payments/settings',
    access: 'operator',
    bodyLimitBytes: 1024,
    schema: {
      summary: "Changes the simulated payment gateway's faults (any subset): break it, slow it, heal it",
      tags: ['payments'],
      body: settingsBody,
      response: { 200: settingsSchema },
    },
    handler: async (request) => payments.updateSettings(request.body),
  });

  gateway.route({
    method: 'GET',
    url: '/notifications',
    access: ordersRead,
    schema: {
      summary: 'The notifications sent to the customer about an order',
      tags: ['orders'],
      querystring: Type.Object({ orderId }),
      response: { 200: { type: 'array', items: notificationSchema } },
    },
    handler: async (request) => {
      await checkOrderReadable(principalOf(request)!, request.query.orderId);
      const found = await runtime.state(Notifications, request.query.orderId);
      return (found?.state.sent ?? []).map((notification) => ({
        ...notification,
        at: new Date(notification.at).toISOString(),
      }));
    },
  });
}

/**
 * Whose order a request places: a customer's own (a body naming another customer is refused, so
 * nobody places orders in another's name), or the customer an operator names.
 */
function customerOf(principal: Principal, named: string | undefined): string {
  if (principal.role === 'customer') {
    if (named !== undefined && named !== principal.id) {
      throw new HttpProblem({
        status: 403,
        title: 'A customer places orders only for itself',
        type: `${problemTypeBase}forbidden`,
        detail: `The credential is customer '${principal.id}', and the body names customer '${named.slice(0, 64)}'; leave 'customerId' out.`,
      });
    }
    return principal.id;
  }
  if (named === undefined) {
    throw new HttpProblem({
      status: 400,
      title: 'The request is invalid',
      type: `${problemTypeBase}validation-failed`,
      detail: "An operator names the order's customer: 'customerId' is required.",
      extensions: {
        errors: [
          {
            in: 'body',
            pointer: '/customerId',
            rule: 'required',
            message: "must have required property 'customerId'",
          },
        ],
      },
    });
  }
  return named;
}
