// The authorization matrix of issue 16: every route of the commerce API, called as anonymous, as
// the customer who owns the data, as another customer and as an operator, answers as the model
// says (docs/security.md). A route added without a row here fails the suite.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestCommerce, type TestCommerce, type TestResponse } from './test-fixture.ts';

type Caller = 'anonymous' | 'owner' | 'other' | 'operator';
const callers: readonly Caller[] = ['anonymous', 'owner', 'other', 'operator'];

interface Row {
  /** The request: built once the order of the owner (ada) exists. */
  request: (context: Context) => {
    method: string;
    path: string;
    body?: unknown;
    headers?: Record<string, string>;
  };
  /** The status each caller gets. */
  expected: Record<Caller, number>;
}

interface Context {
  orderId: string;
  keys: () => string;
}

const open = { anonymous: 200, owner: 200, other: 200, operator: 200 };
const operatorOnly = { anonymous: 401, owner: 403, other: 403, operator: 200 };
const anyCustomer = { anonymous: 401, owner: 200, other: 200, operator: 200 };
const ownerOnly = { anonymous: 401, owner: 200, other: 404, operator: 200 };

/** Rows by route (`METHOD url` as registered); a route may have several rows. */
const matrix: Record<string, Row[]> = {
  'GET /healthz': [{ request: () => ({ method: 'GET', path: '/healthz' }), expected: open }],
  'GET /readyz': [{ request: () => ({ method: 'GET', path: '/readyz' }), expected: open }],
  'GET /openapi.json': [{ request: () => ({ method: 'GET', path: '/openapi.json' }), expected: open }],
  'GET /metrics': [{ request: () => ({ method: 'GET', path: '/metrics' }), expected: operatorOnly }],
  'GET /policies': [{ request: () => ({ method: 'GET', path: '/policies' }), expected: operatorOnly }],
  'PUT /inventory/:sku': [
    {
      request: () => ({ method: 'PUT', path: '/inventory/matrix-1', body: { available: 100, price: 2 } }),
      expected: operatorOnly,
    },
  ],
  'GET /inventory/:sku': [
    { request: () => ({ method: 'GET', path: '/inventory/matrix-1' }), expected: anyCustomer },
  ],
  'GET /catalog': [{ request: () => ({ method: 'GET', path: '/catalog' }), expected: anyCustomer }],
  'POST /orders': [
    {
      // Customers place orders for themselves; the operator names the customer.
      request: ({ keys }) => ({
        method: 'POST',
        path: '/orders',
        body: { items: [{ sku: 'matrix-1', qty: 1 }] },
        headers: { 'idempotency-key': keys() },
      }),
      expected: { anonymous: 401, owner: 202, other: 202, operator: 400 },
    },
    {
      // Nobody places an order in another customer's name, except an operator.
      request: ({ keys }) => ({
        method: 'POST',
        path: '/orders',
        body: { customerId: 'carol', items: [{ sku: 'matrix-1', qty: 1 }] },
        headers: { 'idempotency-key': keys() },
      }),
      expected: { anonymous: 401, owner: 403, other: 403, operator: 202 },
    },
  ],
  'GET /orders/:orderId': [
    { request: ({ orderId }) => ({ method: 'GET', path: `/orders/${orderId}` }), expected: ownerOnly },
    {
      // A long poll on another's order is refused before it waits.
      request: ({ orderId }) => ({
        method: 'GET',
        path: `/orders/${orderId}`,
        headers: { prefer: 'wait=5' },
      }),
      expected: ownerOnly,
    },
  ],
  'GET /orders': [{ request: () => ({ method: 'GET', path: '/orders?limit=1000' }), expected: anyCustomer }],
  // The web console: its page and files are public (they hold no data); what it shows is the
  // operator's, through its API.
  'GET /': [{ request: () => ({ method: 'GET', path: '/' }), expected: open }],
  'GET /console': [{ request: () => ({ method: 'GET', path: '/console' }), expected: open }],
  'GET /console/assets/:name': [
    { request: () => ({ method: 'GET', path: '/console/assets/app.js' }), expected: open },
  ],
  'GET /console/api/sagas': [
    { request: () => ({ method: 'GET', path: '/console/api/sagas' }), expected: operatorOnly },
  ],
  'GET /console/api/sagas/:id': [
    {
      request: ({ orderId }) => ({ method: 'GET', path: `/console/api/sagas/${orderId}` }),
      expected: operatorOnly,
    },
  ],
  'GET /console/api/topics': [
    { request: () => ({ method: 'GET', path: '/console/api/topics' }), expected: operatorOnly },
  ],
  'GET /console/api/dead-letters': [
    { request: () => ({ method: 'GET', path: '/console/api/dead-letters' }), expected: operatorOnly },
  ],
  'POST /console/api/dead-letters/retry': [
    {
      request: () => ({
        method: 'POST',
        path: '/console/api/dead-letters/retry',
        body: { letters: [{ partition: 0, offset: 0 }] },
      }),
      expected: operatorOnly,
    },
  ],
  'POST /console/api/sagas/:id/cancel': [
    {
      // The order's saga has ended (the matrix settles it first): the operator passes the check
      // and is answered 409, an ended saga cannot be cancelled; everyone else is refused before.
      request: ({ orderId }) => ({
        method: 'POST',
        path: `/console/api/sagas/${orderId}/cancel`,
        body: { reason: 'matrix' },
      }),
      expected: { ...operatorOnly, operator: 409 },
    },
  ],
  'GET /console/api/events': [
    { request: () => ({ method: 'GET', path: '/console/api/events' }), expected: operatorOnly },
  ],
  'GET /orders/events': [
    { request: () => ({ method: 'GET', path: '/orders/events' }), expected: anyCustomer },
  ],
  'GET /payments/charges': [
    {
      request: ({ orderId }) => ({ method: 'GET', path: `/payments/charges?orderId=${orderId}` }),
      expected: ownerOnly,
    },
    { request: () => ({ method: 'GET', path: '/payments/charges?limit=10' }), expected: operatorOnly },
  ],
  'GET /payments/settings': [
    { request: () => ({ method: 'GET', path: '/payments/settings' }), expected: operatorOnly },
  ],
  'PUT /payments/settings': [
    {
      request: () => ({ method: 'PUT', path: '/payments/settings', body: { failureRate: 0 } }),
      expected: operatorOnly,
    },
  ],
  'GET /customers/:customerId/profile': [
    { request: () => ({ method: 'GET', path: '/customers/ada/profile' }), expected: ownerOnly },
  ],
  'PUT /customers/:customerId/profile': [
    {
      // A customer writes its own profile; another customer naming it is refused.
      request: () => ({
        method: 'PUT',
        path: '/customers/ada/profile',
        body: { name: 'Ada Lovelace', email: 'ada@example.com' },
      }),
      expected: { anonymous: 401, owner: 200, other: 403, operator: 200 },
    },
  ],
  'GET /notifications': [
    {
      request: ({ orderId }) => ({ method: 'GET', path: `/notifications?orderId=${orderId}` }),
      expected: ownerOnly,
    },
  ],
};

describe('commerce authorization matrix', () => {
  let shop: TestCommerce;
  let credentials: Record<Caller, Record<string, string>>;
  let context: Context;

  beforeAll(async () => {
    shop = await openTestCommerce();
    credentials = {
      anonymous: { authorization: '' },
      owner: { authorization: `Bearer ${await shop.token('ada', 'customer')}` },
      other: { authorization: `Bearer ${await shop.token('bob', 'customer')}` },
      operator: shop.operatorHeaders,
    };
    expect((await shop.request('PUT', '/inventory/matrix-1', { available: 100, price: 2 })).status).toBe(200);
    const placed = await shop.request(
      'POST',
      '/orders',
      { items: [{ sku: 'matrix-1', qty: 1 }] },
      { 'idempotency-key': 'matrix-owner', ...credentials.owner },
    );
    expect(placed.status).toBe(202);
    const others = await shop.request(
      'POST',
      '/orders',
      { items: [{ sku: 'matrix-1', qty: 1 }] },
      { 'idempotency-key': 'matrix-other', ...credentials.other },
    );
    expect(others.status).toBe(202);
    const profile = await shop.request(
      'PUT',
      '/customers/ada/profile',
      { name: 'Ada', email: 'ada@example.com' },
      credentials.owner,
    );
    expect(profile.status).toBe(200);
    let key = 0;
    context = { orderId: placed.body.orderId, keys: () => `matrix-${++key}` };
    await shop.settle([context.orderId, others.body.orderId]);
  });
  afterAll(async () => {
    await shop?.close();
  });

  /** Sends one request; a stream (the order feed, the console's figures) is read up to its status and then dropped. */
  async function send(caller: Caller, request: ReturnType<Row['request']>): Promise<number> {
    if (request.path.startsWith('/orders/events') || request.path === '/console/api/events') {
      const headers = { ...credentials[caller] };
      if (headers.authorization === '') delete headers.authorization;
      const abort = new AbortController();
      const response = await fetch(`${shop.url}${request.path}`, { headers, signal: abort.signal });
      abort.abort();
      return response.status;
    }
    const response: TestResponse = await shop.request(request.method, request.path, request.body, {
      ...request.headers,
      ...credentials[caller],
    });
    if (response.status >= 400) {
      // Every refusal is a problem document.
      expect(response.headers.get('content-type'), `${request.method} ${request.path}`).toContain(
        'application/problem+json',
      );
    }
    if (response.status === 401) expect(response.headers.get('www-authenticate')).toContain('Bearer');
    return response.status;
  }

  it('has a row for every route the gateway serves, and no row for a route it does not', () => {
    const served = shop.server.app.gateway
      .routes()
      .map((route) => `${route.method} ${route.url}`)
      .sort();
    expect(Object.keys(matrix).sort()).toEqual(served);
  });

  it.each(Object.keys(matrix))('%s answers each caller as the model says', async (route) => {
    for (const row of matrix[route]!) {
      const request = row.request(context);
      const actual: Partial<Record<Caller, number>> = {};
      for (const caller of callers) actual[caller] = await send(caller, request);
      expect(actual, `${request.method} ${request.path}`).toEqual(row.expected);
    }
  });

  it('answers HEAD (served for every GET) to anonymous callers as it answers GET', async () => {
    for (const [route, rows] of Object.entries(matrix)) {
      if (!route.startsWith('GET ')) continue;
      const request = rows[0]!.request(context);
      const response = await fetch(`${shop.url}${request.path}`, { method: 'HEAD' });
      expect(response.status, `HEAD ${request.path}`).toBe(rows[0]!.expected.anonymous);
    }
  });

  it("lists only the caller's own orders to a customer, every order to an operator", async () => {
    const list = async (caller: Caller) =>
      (await shop.request('GET', '/orders?limit=1000', undefined, credentials[caller])).body.orders.map(
        (order: { customerId: string }) => order.customerId,
      ) as string[];
    expect(new Set(await list('owner'))).toEqual(new Set(['ada']));
    expect(await list('other')).not.toContain('ada');
    expect(await list('operator')).toContain('ada');
  });

  it("pages a customer through its own orders: a page of one is the caller's next order, and no cursor names another's", async () => {
    // ada's order was placed first, so the first order of all is hers: bob's first page of one
    // must still be bob's own order, and its cursor his.
    const all = (await shop.request('GET', '/orders?limit=1000', undefined, credentials.operator)).body
      .orders as Array<{ orderId: string; customerId: string }>;
    expect(all[0]!.customerId).toBe('ada');
    const bobs = all.filter((order) => order.customerId === 'bob').map((order) => order.orderId);
    expect(bobs.length).toBeGreaterThan(0);
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page <= bobs.length; page++) {
      const query: string = after === null ? '' : `&after=${after}`;
      const answer = await shop.request('GET', `/orders?limit=1${query}`, undefined, credentials.other);
      const orders = answer.body.orders as Array<{ orderId: string; customerId: string }>;
      seen.push(...orders.map((order) => order.orderId));
      after = answer.body.next as string | null;
      if (after === null) break;
      expect(bobs, 'a cursor handed to bob names one of his orders').toContain(after);
    }
    expect(seen).toEqual(bobs);
  });

  it("scopes Idempotency-Keys per principal: another customer's key is a new key, never their response or a 422", async () => {
    const body = { items: [{ sku: 'matrix-1', qty: 2 }] };
    const mine = await shop.request('POST', '/orders', body, {
      'idempotency-key': 'shared-key',
      ...credentials.owner,
    });
    const theirs = await shop.request(
      'POST',
      '/orders',
      { items: [{ sku: 'matrix-1', qty: 3 }] },
      { 'idempotency-key': 'shared-key', ...credentials.other },
    );
    expect(mine.status).toBe(202);
    expect(theirs.status).toBe(202);
    expect(theirs.headers.get('idempotent-replayed')).toBeNull();
    expect(theirs.body.orderId).not.toBe(mine.body.orderId);
    await shop.settle([mine.body.orderId, theirs.body.orderId]);
    const order = await shop.request('GET', `/orders/${theirs.body.orderId}`, undefined, credentials.other);
    expect(order.body.customerId).toBe('bob');
  });

  it("does not stream another customer's orders on the order feed", async () => {
    const headers = { ...credentials.other, accept: 'text/event-stream' };
    const abort = new AbortController();
    const response = await fetch(`${shop.url}/orders/events?from=earliest`, {
      headers,
      signal: abort.signal,
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    // Reads what the log holds (bounded), then stops: the earliest events are already there.
    const deadline = Date.now() + 2000;
    while (!text.includes('"customerId":"bob"') && Date.now() < deadline) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<{ done: true; value: undefined }>((done) =>
          setTimeout(() => done({ done: true, value: undefined }), 200),
        ),
      ]);
      if (chunk.done) break;
      text += chunk.value;
    }
    abort.abort();
    expect(text).toContain('"customerId":"bob"');
    expect(text).not.toContain('"customerId":"ada"');
  });
});
