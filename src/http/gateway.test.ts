import { Type } from '@sinclair/typebox';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { NotFoundError, RetryableError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { createGateway, type Gateway, type GatewayOptions } from './gateway.ts';
import { MAX_IDEMPOTENCY_KEY_LENGTH, parseIdempotencyKey } from './idempotency.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
import { HttpProblem, PROBLEM_CONTENT_TYPE } from './problem.ts';
import type { GatewayRequest } from './route-types.ts';

const orderSchema = Type.Object(
  {
    customerId: Type.String({ minLength: 1 }),
    items: Type.Array(Type.Object({ sku: Type.String(), qty: Type.Integer({ minimum: 1 }) }), {
      minItems: 1,
    }),
  },
  { additionalProperties: false },
);

const opened: Gateway[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((gateway) => gateway.close()));
});

async function gatewayWithRoutes(options: Partial<GatewayOptions> = {}): Promise<Gateway> {
  const gateway = await createGateway({ auth: false, rateLimit: false, defaultMetrics: false, ...options });
  opened.push(gateway);
  gateway.route({
    method: 'POST',
    url: '/orders',
    schema: {
      body: orderSchema,
      response: { 202: { type: 'object', properties: { orderId: { type: 'string' } } } },
    },
    handler: async (request, reply) =>
      reply.code(202).send({ orderId: `order-of-${request.body.customerId}` }),
  });
  gateway.route({
    method: 'GET',
    url: '/things/:id',
    schema: {
      params: Type.Object({ id: Type.Integer({ minimum: 1 }) }),
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ maximum: 100 })) }),
    },
    handler: async (request) => {
      if (request.params.id === 404) throw new NotFoundError(`Thing 404 does not exist`);
      if (request.params.id === 503) throw new RetryableError('Busy', { retryAfterMs: 2500 });
      if (request.params.id === 418) {
        throw new HttpProblem({
          status: 418,
          title: 'Teapot',
          type: 'urn:test:teapot',
          extensions: { tea: 'earl grey' },
        });
      }
      if (request.params.id === 500) throw new Error('database password is hunter2');
      return { id: request.params.id, limit: request.query.limit ?? null };
    },
  });
  return gateway;
}

describe('gateway: routes declared once', () => {
  it("types a handler's request from the route's TypeBox schema, the same object that validates it and documents it", async () => {
    type Order = GatewayRequest<{ body: typeof orderSchema }>['body'];
    expectTypeOf<Order>().toEqualTypeOf<{ customerId: string; items: { sku: string; qty: number }[] }>();
    expectTypeOf<GatewayRequest<{ body: { type: 'object' } }>['body']>().toBeUnknown();
    const gateway = await gatewayWithRoutes();
    await gateway.ready();
    const document = gateway.server.swagger() as unknown as {
      paths: Record<string, { post: { requestBody: { content: Record<string, { schema: unknown }> } } }>;
    };
    expect(document.paths['/orders']!.post.requestBody.content['application/json']!.schema).toMatchObject({
      required: ['customerId', 'items'],
      additionalProperties: false,
    });
  });
});

describe('gateway: validation and problem details', () => {
  it('answers an invalid body with a 400 problem listing every invalid field with its rule and value', async () => {
    const gateway = await gatewayWithRoutes();
    const response = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      payload: { customerId: '', items: [{ sku: 'a', qty: 0 }, { qty: 2 }] },
    });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    const problem = response.json();
    expect(problem).toMatchObject({
      type: 'urn:meridian:problem:validation-failed',
      title: 'The request is invalid',
      status: 400,
      instance: '/orders',
    });
    expect(problem.detail).toContain('3 invalid fields');
    expect(problem.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ in: 'body', pointer: '/customerId', rule: 'minLength', value: '' }),
        expect.objectContaining({ in: 'body', pointer: '/items/0/qty', rule: 'minimum', value: 0 }),
        expect.objectContaining({ in: 'body', pointer: '/items/1/sku', rule: 'required' }),
      ]),
    );
    expect(problem.errors).toHaveLength(3);
  });

  it('names path and query parameters by name in the problem', async () => {
    const gateway = await gatewayWithRoutes();
    const response = await gateway.server.inject({ method: 'GET', url: '/things/0?limit=1000' });
    expect(response.statusCode).toBe(400);
    const { errors } = response.json();
    expect(errors).toEqual([
      expect.objectContaining({ in: 'path', pointer: 'id', rule: 'minimum', value: 0 }),
    ]);
    const query = await gateway.server.inject({ method: 'GET', url: '/things/3?limit=1000' });
    expect(query.json().errors).toEqual([
      expect.objectContaining({ in: 'query', pointer: 'limit', rule: 'maximum', value: 1000 }),
    ]);
  });

  it('answers malformed JSON, an empty JSON body and a foreign media type with problems', async () => {
    const gateway = await gatewayWithRoutes();
    const malformed = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/json' },
      payload: '{"customerId":',
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().type).toBe('urn:meridian:problem:malformed-body');
    const empty = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expect(empty.json().type).toBe('urn:meridian:problem:malformed-body');
    const xml = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/xml' },
      payload: '<order/>',
    });
    expect(xml.statusCode).toBe(415);
    expect(xml.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(xml.json()).toMatchObject({ type: 'about:blank', title: 'Unsupported Media Type', status: 415 });
  });

  it('refuses a body over the limit with 413', async () => {
    const gateway = await gatewayWithRoutes({ bodyLimitBytes: 1024 });
    const response = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      payload: { customerId: 'x'.repeat(2000), items: [{ sku: 'a', qty: 1 }] },
    });
    expect(response.statusCode).toBe(413);
    expect(response.json().detail).toBe('The request body exceeds the limit of 1024 bytes.');
  });

  it('answers a 1 MB body of junk under the body limit with one small problem, for bounded work', async () => {
    // The default body limit (1 MiB) lets this body through to validation: the route's schema sets
    // no maxItems, so only the validator's own bounds keep the work and the answer small.
    const gateway = await gatewayWithRoutes();
    // Warm up (plugins loaded, schemas compiled, code optimised) so that the request alone is measured.
    for (let i = 0; i < 3; i++)
      await gateway.server.inject({ method: 'POST', url: '/orders', payload: { customerId: '', items: [] } });
    const junk = JSON.stringify({
      customerId: 'c'.repeat(200_000),
      items: Array.from({ length: 22_000 }, (_, i) => ({ sku: i, qty: 'x', extra: true })),
      unknown: 'u',
    });
    expect(junk.length).toBeGreaterThan(1_000_000);
    expect(junk.length).toBeLessThan(1_048_576);
    const parse = process.cpuUsage();
    JSON.parse(junk);
    const parseMs = (process.cpuUsage(parse).user + process.cpuUsage(parse).system) / 1000;
    const before = process.cpuUsage();
    const response = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/json' },
      payload: junk,
    });
    const used = process.cpuUsage(before);
    const workMs = (used.user + used.system) / 1000;
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(response.rawPayload.length).toBeLessThan(4096);
    const { errors } = response.json() as {
      errors: Array<{ pointer: string; rule: string; value?: unknown }>;
    };
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.length).toBeLessThanOrEqual(10);
    expect(new Set(errors.map((error) => `${error.pointer} ${error.rule}`)).size).toBe(errors.length);
    for (const error of errors) expect(JSON.stringify(error.value ?? null).length).toBeLessThan(300);
    // The work is one parse of the body and a check that stops at its first error: CPU time,
    // not wall time, so a busy machine does not count (checking all 22,000 items took ~70 ms).
    console.log(
      `1 MB junk body: ${workMs.toFixed(1)} ms of CPU for the request, ${parseMs.toFixed(1)} ms to parse it alone`,
    );
    expect(workMs).toBeLessThan(parseMs * 2 + 30);
  });

  it('rejects __proto__ in a body rather than letting it poison objects', async () => {
    const gateway = await gatewayWithRoutes();
    const response = await gateway.server.inject({
      method: 'POST',
      url: '/orders',
      headers: { 'content-type': 'application/json' },
      payload: '{"customerId":"c","items":[{"sku":"a","qty":1}],"__proto__":{"admin":true}}',
    });
    expect(response.statusCode).toBe(400);
    expect(response.json().type).toBe('urn:meridian:problem:malformed-body');
  });

  it("maps Meridian's typed errors and HttpProblem to their statuses, and hides unknown errors' messages", async () => {
    const gateway = await gatewayWithRoutes();
    const notFound = await gateway.server.inject({ method: 'GET', url: '/things/404' });
    expect(notFound.statusCode).toBe(404);
    expect(notFound.json()).toMatchObject({
      type: 'about:blank',
      title: 'Not Found',
      detail: 'Thing 404 does not exist',
    });
    const busy = await gateway.server.inject({ method: 'GET', url: '/things/503' });
    expect(busy.statusCode).toBe(503);
    expect(busy.headers['retry-after']).toBe('3');
    const teapot = await gateway.server.inject({ method: 'GET', url: '/things/418' });
    expect(teapot.statusCode).toBe(418);
    expect(teapot.json()).toEqual({
      type: 'urn:test:teapot',
      title: 'Teapot',
      status: 418,
      tea: 'earl grey',
      instance: '/things/418',
    });
    const crash = await gateway.server.inject({ method: 'GET', url: '/things/500' });
    expect(crash.statusCode).toBe(500);
    expect(crash.body).not.toContain('hunter2');
    expect(crash.json()).toMatchObject({ type: 'about:blank', title: 'Internal Server Error', status: 500 });
  });

  it('answers an unknown path with a 404 problem and a known path under the wrong method with 405 and Allow', async () => {
    const gateway = await gatewayWithRoutes();
    const missing = await gateway.server.inject({ method: 'GET', url: '/nothing/here?x=1' });
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(missing.json()).toMatchObject({
      status: 404,
      title: 'Not Found',
      detail: 'No route matches GET /nothing/here.',
    });
    const wrongMethod = await gateway.server.inject({ method: 'DELETE', url: '/things/7' });
    expect(wrongMethod.statusCode).toBe(405);
    expect(wrongMethod.headers.allow).toBe('GET, HEAD');
    expect(wrongMethod.json()).toMatchObject({ status: 405, title: 'Method Not Allowed' });
    const getOrders = await gateway.server.inject({ method: 'GET', url: '/orders' });
    expect(getOrders.statusCode).toBe(405);
    expect(getOrders.headers.allow).toBe('POST');
  });

  it('rejects out-of-range options with a message naming the option, the rule and the value', async () => {
    await expect(createGateway({ auth: false, bodyLimitBytes: 10 })).rejects.toThrow(
      "'bodyLimitBytes' must be >= 1024: current value is 10",
    );
    await expect(createGateway({ auth: false, idempotencyKeyTtlMs: 1.5 })).rejects.toThrow(
      "'idempotencyKeyTtlMs' must be an integer: current value is 1.5",
    );
  });
});

describe('gateway: health, readiness, metrics and OpenAPI', () => {
  it('answers /healthz while the process runs', async () => {
    const gateway = await gatewayWithRoutes();
    const response = await gateway.server.inject({ method: 'GET', url: '/healthz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });

  it('reports each readiness check and answers 503 when any fails, throws or times out', async () => {
    const clock = new ManualClock(1_000);
    const gateway = await gatewayWithRoutes({ clock, timers: clock, readinessCheckTimeoutMs: 500 });
    let storeOpen = true;
    gateway.addReadinessCheck('store', () => ({ ok: storeOpen, detail: storeOpen ? 'open' : 'closed' }));
    gateway.addReadinessCheck('processors', async () => true);
    const ready = await gateway.server.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({
      status: 'ready',
      checks: {
        accepting: { status: 'pass', detail: 'accepting requests', durationMs: 0 },
        store: { status: 'pass', detail: 'open', durationMs: 0 },
        processors: { status: 'pass', durationMs: 0 },
      },
    });

    storeOpen = false;
    const notReady = await gateway.server.inject({ method: 'GET', url: '/readyz' });
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json().checks.store).toEqual({ status: 'fail', detail: 'closed', durationMs: 0 });

    storeOpen = true;
    gateway.addReadinessCheck('broker', () => {
      throw new Error('connection refused');
    });
    gateway.addReadinessCheck('slow', () => new Promise<boolean>(() => {}));
    const pending = gateway.readiness();
    await new Promise((resolve) => setImmediate(resolve));
    clock.advance(500);
    const report = await pending;
    expect(report.status).toBe('not_ready');
    expect(report.checks.broker).toEqual({ status: 'fail', detail: 'connection refused', durationMs: 0 });
    expect(report.checks.slow).toEqual({ status: 'fail', detail: 'timed out after 500 ms', durationMs: 500 });
  });

  it('counts requests by method, route pattern and status and serves app metrics from the same registry', async () => {
    const gateway = await gatewayWithRoutes();
    const { Counter } = await import('prom-client');
    const placed = new Counter({
      name: 'app_orders_placed_total',
      help: 'Orders placed.',
      registers: [gateway.metrics],
    });
    placed.inc(3);
    await gateway.server.inject({ method: 'GET', url: '/things/1' });
    await gateway.server.inject({ method: 'GET', url: '/things/2' });
    await gateway.server.inject({ method: 'GET', url: '/things/0' });
    await gateway.server.inject({ method: 'GET', url: '/nope' });
    const response = await gateway.server.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/plain');
    expect(response.body).toContain(
      'meridian_http_requests_total{method="GET",route="/things/:id",status="200"} 2',
    );
    expect(response.body).toContain(
      'meridian_http_requests_total{method="GET",route="/things/:id",status="400"} 1',
    );
    expect(response.body).toContain(
      'meridian_http_requests_total{method="GET",route="(unmatched)",status="404"} 1',
    );
    expect(response.body).toContain(
      'meridian_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/things/:id",status="200"}',
    );
    expect(response.body).toContain('app_orders_placed_total 3');
  });

  it('publishes an OpenAPI 3.1 document generated from the route schemas', async () => {
    const gateway = await gatewayWithRoutes({ title: 'Shop', version: '2.0.0' });
    const response = await gateway.server.inject({ method: 'GET', url: '/openapi.json' });
    expect(response.statusCode).toBe(200);
    const document = response.json();
    expect(document.openapi).toBe('3.1.0');
    expect(document.info).toEqual({ title: 'Shop', version: '2.0.0' });
    const post = document.paths['/orders'].post;
    expect(post.requestBody.content['application/json'].schema.required).toEqual(['customerId', 'items']);
    expect(Object.keys(post.responses)).toEqual(expect.arrayContaining(['202', '4XX', '5XX']));
    expect(document.paths['/things/{id}'].get.parameters).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'id', in: 'path' })]),
    );
    expect(document.paths['/healthz']).toBeDefined();
    expect(document.paths['/openapi.json']).toBeUndefined();
  });

  it('describes its error answers as they are sent: problem documents, 404s, the URL and key limits', async () => {
    const gateway = await createGateway({
      auth: false,
      rateLimit: false,
      defaultMetrics: false,
      maxUrlLength: 300,
      idempotencyStore: new MemoryIdempotencyStore(),
    });
    opened.push(gateway);
    gateway.route({
      method: 'POST',
      url: '/payments',
      idempotent: true,
      schema: { body: Type.Object({ amount: Type.Integer() }, { additionalProperties: false }) },
      handler: async (request, reply) => reply.code(201).send({ amount: request.body.amount }),
    });
    gateway.route({
      method: 'GET',
      url: '/things/:id',
      schema: { params: Type.Object({ id: Type.Integer({ minimum: 1 }) }) },
      handler: async (request) => {
        throw new NotFoundError(`Thing ${request.params.id} does not exist`);
      },
    });
    const document = (await gateway.server.inject({ method: 'GET', url: '/openapi.json' })).json();
    type Operation = {
      responses: Record<string, { description?: string; content?: Record<string, unknown> }>;
    };
    const operations = Object.entries(document.paths as Record<string, Record<string, Operation>>).flatMap(
      ([path, methods]) =>
        Object.entries(methods).map(([method, operation]) => [`${method} ${path}`, operation] as const),
    );
    expect(operations.length).toBeGreaterThan(2);
    const notProblems = operations.flatMap(([name, operation]) =>
      Object.entries(operation.responses)
        .filter(([status]) => /^[45]/.test(status))
        .filter(([, answer]) => Object.keys(answer.content ?? {}).join() !== PROBLEM_CONTENT_TYPE)
        .map(([status, answer]) => `${name} ${status}: ${Object.keys(answer.content ?? {}).join()}`),
    );
    // Every error is sent as application/problem+json and documented as that alone, but for
    // /readyz's 503: the readiness report itself (its checks), which probes and operators read.
    expect(notProblems).toEqual(['get /readyz 503: application/json']);
    gateway.addReadinessCheck('store', () => ({ ok: false, detail: 'closed' }));
    const notReady = await gateway.server.inject({ method: 'GET', url: '/readyz' });
    expect(notReady.statusCode).toBe(503);
    expect(notReady.headers['content-type']).toBe('application/json; charset=utf-8');

    // A path with a parameter documents its 404, and answers it as a problem document.
    const things = document.paths['/things/{id}'].get as Operation;
    expect(things.responses['404']).toBeDefined();
    const missing = await gateway.server.inject({ method: 'GET', url: '/things/7' });
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['content-type']).toBe('application/problem+json; charset=utf-8');

    // The URL limit documented with 414 is the one enforced.
    expect(String(things.responses['414']!.description ?? '')).toContain('300 bytes');
    const atLimit = await gateway.server.inject({
      method: 'GET',
      url: `/things/1?${'a'.repeat(290)}`.slice(0, 300),
    });
    expect(atLimit.statusCode).toBe(404);
    const overLimit = await gateway.server.inject({ method: 'GET', url: `/things/1?${'a'.repeat(300)}` });
    expect(overLimit.statusCode).toBe(414);
    expect(overLimit.headers['content-type']).toBe('application/problem+json; charset=utf-8');

    // The Idempotency-Key's documented schema takes exactly the keys the gateway takes.
    const keyParameter = (
      document.paths['/payments'].post.parameters as Array<{
        name: string;
        in: string;
        schema: { maxLength: number; pattern: string };
      }>
    ).find((parameter) => parameter.in === 'header' && parameter.name === 'idempotency-key')!;
    const documented = new RegExp(keyParameter.schema.pattern);
    for (const key of [
      'k'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH),
      `"${'k'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH)}"`,
      'a b',
      'k'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH + 1),
      'é',
    ]) {
      const accepted = parseIdempotencyKey(key).ok;
      expect(documented.test(key) && key.length <= keyParameter.schema.maxLength, key.slice(0, 12)).toBe(
        accepted,
      );
      const answer = await gateway.server.inject({
        method: 'POST',
        url: '/payments',
        headers: { 'idempotency-key': key },
        payload: { amount: 1 },
      });
      expect(answer.statusCode, key.slice(0, 12)).toBe(accepted ? 201 : 400);
    }
  });
});

describe('gateway: on a real socket', () => {
  it('serves requests over TCP with keep-alive, then drains: not ready, then closed', async () => {
    const gateway = await gatewayWithRoutes();
    const url = await gateway.listen({ port: 0 });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const accepted = await fetch(`${url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customerId: 'ada', items: [{ sku: 'a', qty: 1 }] }),
    });
    expect(accepted.status).toBe(202);
    expect(await accepted.json()).toEqual({ orderId: 'order-of-ada' });
    const invalid = await fetch(`${url}/things/abc`);
    expect(invalid.status).toBe(400);
    expect(invalid.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');

    // Readiness fails as soon as the drain starts, before the listener goes away.
    const closed = gateway.close();
    const report = await gateway.readiness();
    expect(report.checks.accepting).toMatchObject({ status: 'fail', detail: 'the gateway is draining' });
    await closed;
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});
