import { defineApp, NotFoundError, SagaNotCompletedError } from 'meridian';
import { Type } from 'meridian/http';
import { Checkout, type CheckoutInput } from './checkout.ts';
import { SalesLedger } from './sales.ts';
import { Sales, Stock } from './stock.ts';

// Each route's schema is declared once: it validates the request, documents it in
// /openapi.json and types the handler's `request` (TypeBox is JSON Schema).
const sku = Type.String({ pattern: '^[a-z0-9-]{1,64}$' });
const quantity = Type.Integer({ minimum: 1, maximum: 1000 });
const skuParams = Type.Object({ sku });
const orderParams = Type.Object({ orderId: sku });

/**
 * The app: what `meridian dev src/app.ts` runs and what the tests start. Its routes are served
 * beside /healthz, /readyz, /metrics and /openapi.json. Every caller authenticates (a bearer
 * token; `meridian dev` prints one): restocking is the operator's (the default), reading stock
 * and placing or reading orders need the scopes a customer's token carries.
 */
export default defineApp({
  name: '{{name}}',
  description: 'Orders placed as sagas: reserve stock, charge, tally the sale.',
  definitions: [Stock, Sales, Checkout, SalesLedger],
  routes(gateway, { runtime }) {
    gateway.route({
      method: 'POST',
      url: '/stock/:sku/restock',
      schema: {
        params: skuParams,
        body: Type.Object({ qty: quantity }, { additionalProperties: false }),
      },
      handler: async (request) => {
        await runtime.send(Stock, request.params.sku, 'restock', { qty: request.body.qty });
        return (await runtime.state(Stock, request.params.sku))?.state;
      },
    });

    gateway.route({
      method: 'GET',
      url: '/stock/:sku',
      access: { scopes: ['stock:read'] },
      schema: { params: skuParams },
      handler: async (request) => ({
        stock:
          (await runtime.state(Stock, request.params.sku))?.state ?? Stock.initialState(request.params.sku),
        sales:
          (await runtime.state(Sales, request.params.sku))?.state ?? Sales.initialState(request.params.sku),
      }),
    });

    // PUT: placing the same order id again is safe; it returns the order that already exists.
    gateway.route({
      method: 'PUT',
      url: '/orders/:orderId',
      access: { scopes: ['orders:write'] },
      schema: {
        params: orderParams,
        body: Type.Object(
          { sku, qty: quantity, amountCents: Type.Integer({ minimum: 1 }) },
          { additionalProperties: false },
        ),
      },
      handler: async (request, reply) => {
        const input: CheckoutInput = request.body;
        await runtime.startSaga(Checkout, request.params.orderId, input);
        reply.code(202);
        return { orderId: request.params.orderId, status: 'running' };
      },
    });

    // `?waitMs=5000` answers once the order has ended, or after that long.
    gateway.route({
      method: 'GET',
      url: '/orders/:orderId',
      access: { scopes: ['orders:read'] },
      schema: {
        params: orderParams,
        querystring: Type.Object({ waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000 })) }),
      },
      handler: async (request) => {
        const { orderId } = request.params;
        if ((await runtime.saga(orderId)) === null) throw new NotFoundError(`No order '${orderId}'`);
        const waitMs = request.query.waitMs ?? 0;
        if (waitMs > 0) {
          await runtime
            .handle(orderId)
            .result({ signal: AbortSignal.timeout(waitMs) })
            .catch((error: unknown) => {
              // An order that compensated has ended too; only a timeout means "still running".
              if (!(error instanceof SagaNotCompletedError) && !(error instanceof DOMException)) throw error;
            });
        }
        const order = (await runtime.saga(orderId))!;
        return { orderId, status: order.status, output: order.output, reason: order.reason };
      },
    });
  },
});
