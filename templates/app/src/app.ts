import { defineApp, NotFoundError, SagaNotCompletedError } from 'meridian';
import { Checkout, type CheckoutInput } from './checkout.ts';
import { SalesLedger } from './sales.ts';
import { Sales, Stock } from './stock.ts';

const sku = { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } as const;
const quantity = { type: 'integer', minimum: 1, maximum: 1000 } as const;

/**
 * The app: what `meridian dev src/app.ts` runs and what the tests start. Its routes are served
 * beside /healthz, /readyz, /metrics and /openapi.json.
 */
export default defineApp({
  name: '{{name}}',
  description: 'Orders placed as sagas: reserve stock, charge, tally the sale.',
  definitions: [Stock, Sales, Checkout, SalesLedger],
  routes(gateway, { runtime }) {
    gateway.route<{ Params: { sku: string }; Body: { qty: number } }>({
      method: 'POST',
      url: '/stock/:sku/restock',
      schema: {
        params: { type: 'object', required: ['sku'], properties: { sku } },
        body: { type: 'object', required: ['qty'], properties: { qty: quantity } },
      },
      handler: async (request) => {
        await runtime.send(Stock, request.params.sku, 'restock', { qty: request.body.qty });
        return (await runtime.state(Stock, request.params.sku))?.state;
      },
    });

    gateway.route<{ Params: { sku: string } }>({
      method: 'GET',
      url: '/stock/:sku',
      schema: { params: { type: 'object', required: ['sku'], properties: { sku } } },
      handler: async (request) => ({
        stock:
          (await runtime.state(Stock, request.params.sku))?.state ?? Stock.initialState(request.params.sku),
        sales:
          (await runtime.state(Sales, request.params.sku))?.state ?? Sales.initialState(request.params.sku),
      }),
    });

    // PUT: placing the same order id again is safe; it returns the order that already exists.
    gateway.route<{ Params: { orderId: string }; Body: CheckoutInput }>({
      method: 'PUT',
      url: '/orders/:orderId',
      schema: {
        params: { type: 'object', required: ['orderId'], properties: { orderId: sku } },
        body: {
          type: 'object',
          required: ['sku', 'qty', 'amountCents'],
          additionalProperties: false,
          properties: { sku, qty: quantity, amountCents: { type: 'integer', minimum: 1 } },
        },
      },
      handler: async (request, reply) => {
        await runtime.startSaga(Checkout, request.params.orderId, request.body);
        reply.code(202);
        return { orderId: request.params.orderId, status: 'running' };
      },
    });

    // `?waitMs=5000` answers once the order has ended, or after that long.
    gateway.route<{ Params: { orderId: string }; Querystring: { waitMs?: number } }>({
      method: 'GET',
      url: '/orders/:orderId',
      schema: {
        params: { type: 'object', required: ['orderId'], properties: { orderId: sku } },
        querystring: {
          type: 'object',
          properties: { waitMs: { type: 'integer', minimum: 0, maximum: 30_000 } },
        },
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
