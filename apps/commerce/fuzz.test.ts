// A seeded fuzz of the commerce API over loopback (issue 16): hostile paths, queries, headers,
// credentials and bodies, a bounded number of them. Whatever arrives, the server answers without
// a 5xx, every refusal is a small problem document, and no request blocks the event loop for long.
import { request as httpRequest } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestCommerce, type TestCommerce } from './test-fixture.ts';

const SEED = 1616;
const REQUESTS = 400;
/** An error answer is at most this many bytes: a few KB, whatever the request held. */
const MAX_ERROR_BYTES = 8 * 1024;
/** Any answer (a page of orders, the OpenAPI document) is at most this many bytes. */
const MAX_ANSWER_BYTES = 512 * 1024;
/** The longest the event loop may be held by one request (ms): GC and a shared machine included. */
const MAX_EVENT_LOOP_BLOCK_MS = 150;

interface RawAnswer {
  status: number;
  contentType: string;
  bytes: number;
  body: string;
}

/** Sends bytes as they are (no client-side normalisation of the path or headers). */
function send(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((done, fail) => {
    const request = httpRequest(
      {
        hostname,
        port,
        method,
        path,
        headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
      },
      (response) => {
        if (String(response.headers['content-type']).startsWith('text/event-stream')) {
          // A stream that opened: its status is the answer; it would stay open for as long as we watch.
          done({ status: response.statusCode ?? 0, contentType: 'text/event-stream', bytes: 0, body: '' });
          request.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const all = Buffer.concat(chunks);
          done({
            status: response.statusCode ?? 0,
            contentType: String(response.headers['content-type'] ?? ''),
            bytes: all.length,
            body: all.subarray(0, 16_384).toString(),
          });
        });
        response.on('error', fail);
      },
    );
    request.setTimeout(20_000, () =>
      request.destroy(new Error(`no answer to ${method} ${path.slice(0, 80)}`)),
    );
    request.on('error', fail);
    request.end(body);
  });
}

/** Real routes with their own methods: most requests reach a handler's validation, not a 404/405. */
const routes: ReadonlyArray<readonly [string, string]> = [
  ['PUT', '/inventory/fuzz-1'],
  ['GET', '/inventory/fuzz-1'],
  ['GET', '/catalog'],
  ['POST', '/orders'],
  ['POST', '/orders'],
  ['POST', '/orders'],
  ['GET', '/orders'],
  ['GET', '/orders/ord-000'],
  ['GET', '/orders/events'],
  ['GET', '/payments/charges'],
  ['GET', '/payments/settings'],
  ['PUT', '/payments/settings'],
  ['GET', '/notifications'],
  ['GET', '/healthz'],
  ['GET', '/readyz'],
  ['GET', '/metrics'],
  ['GET', '/policies'],
  ['GET', '/nowhere'],
];
const paths = [...new Set(routes.map(([, path]) => path))];

const segment = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('%00', '%2e%2e', '..', '%ff%fe', '__proto__', 'constructor', '%E2%80%AE', 'a'.repeat(300)),
  fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/),
);

const jsonBody = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record({ available: fc.jsonValue({ maxDepth: 1 }), price: fc.jsonValue({ maxDepth: 1 }) }),
  fc.record({
    customerId: fc.oneof(fc.string({ maxLength: 200 }), fc.integer()),
    items: fc.array(
      fc.record({ sku: fc.string({ maxLength: 80 }), qty: fc.oneof(fc.integer(), fc.string()) }),
      {
        maxLength: 150,
      },
    ),
  }),
);

const hostile = fc.constantFrom(
  // A megabyte of items, each wrong: one pass, one error.
  () => JSON.stringify({ items: Array.from({ length: 120_000 }, () => ({ sku: 1, qty: 'x' })) }),
  // Fifty thousand unknown fields.
  () => JSON.stringify(Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`field-${i}`, i]))),
  // One field name as long as the body.
  () => JSON.stringify({ ['k'.repeat(900_000)]: 1, items: [] }),
  // Deep nesting.
  () => `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
  // Prototype poisoning.
  () => '{"__proto__":{"admin":true},"items":[{"sku":"a","qty":1}]}',
  // Not JSON.
  () => `{"items": [${'1,'.repeat(300_000)}`,
  // Larger than the body limit.
  () => 'x'.repeat(1_100_000),
);

interface FuzzCase {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: (() => string) | string | undefined;
  contentType: string;
}

function cases(tokens: Record<string, string>): FuzzCase[] {
  const credential = fc.constantFrom<Record<string, string>>(
    {},
    { authorization: tokens.customer! },
    { authorization: tokens.operator! },
    { authorization: 'Bearer x.y.z' },
    { authorization: `Bearer ${'a'.repeat(5000)}` },
    { 'x-api-key': 'mk_abc_0123456789abcdef0123' },
  );
  const fuzzCase = fc.record({
    route: fc.constantFrom(...routes),
    method: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 4 },
      { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'), weight: 1 },
    ),
    path: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 6 },
      { arbitrary: fc.constantFrom(...paths), weight: 3 },
      {
        arbitrary: fc
          .tuple(fc.constantFrom(...paths), segment)
          .map(([base, extra]) => `${base}/${encodeURIComponent(extra)}`),
        weight: 1,
      },
    ),
    query: fc.oneof(
      { arbitrary: fc.constant(''), weight: 4 },
      fc.constantFrom(
        '?limit=2',
        '?limit="2"',
        '?limit=-1',
        '?limit=1e9',
        '?status=pending&after=',
        '?orderId=ord-000',
        '?from=earliest',
      ),
      fc.string({ maxLength: 60 }).map((text) => `?${encodeURIComponent(text)}=${encodeURIComponent(text)}`),
      { arbitrary: fc.constant(`?after=${'z'.repeat(9000)}`), weight: 1 },
    ),
    credential: fc.oneof(
      { arbitrary: fc.constant({ authorization: tokens.customer! }), weight: 3 },
      { arbitrary: fc.constant({ authorization: tokens.operator! }), weight: 3 },
      { arbitrary: credential, weight: 2 },
    ),
    headers: fc.dictionary(
      fc.constantFrom('idempotency-key', 'prefer', 'last-event-id', 'x-client-id', 'accept', 'traceparent'),
      fc.oneof(
        fc.stringMatching(/^[\x21-\x7e]{0,300}$/),
        fc.constant('"quoted-key"'),
        fc.constant('wait=99999'),
      ),
      { maxKeys: 3 },
    ),
    body: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 1 },
      { arbitrary: jsonBody.map((value) => JSON.stringify(value)), weight: 3 },
      { arbitrary: hostile, weight: 1 },
    ),
    contentType: fc.oneof(
      { arbitrary: fc.constant('application/json'), weight: 4 },
      {
        arbitrary: fc.constantFrom('application/json; charset=utf-8', 'text/plain', 'application/xml'),
        weight: 1,
      },
    ),
  });
  return fc.sample(fuzzCase, { seed: SEED, numRuns: REQUESTS }).map((sample) => ({
    method: sample.method ?? sample.route[0],
    path: `${sample.path ?? sample.route[1]}${sample.query}`,
    headers: { ...sample.credential, ...sample.headers },
    body: sample.body,
    contentType: sample.contentType,
  }));
}

describe('commerce API under a seeded fuzz', () => {
  let shop: TestCommerce;
  let tokens: Record<string, string>;

  beforeAll(async () => {
    shop = await openTestCommerce();
    tokens = {
      customer: `Bearer ${await shop.token('fuzzer', 'customer')}`,
      operator: `Bearer ${await shop.token('fuzz-operator', 'operator')}`,
    };
    await shop.request('PUT', '/inventory/fuzz-1', { available: 1000, price: 1 });
  });
  afterAll(async () => {
    await shop?.close();
  });

  it(`answers ${REQUESTS} hostile requests without a 5xx, each refusal a small problem document, the event loop never held long`, async () => {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    const failures: string[] = [];
    let worstBlockMs = 0;
    const statuses: Record<number, number> = {};
    for (const fuzz of cases(tokens)) {
      const body =
        fuzz.body === undefined
          ? undefined
          : Buffer.from(typeof fuzz.body === 'function' ? fuzz.body() : fuzz.body);
      const headers =
        body === undefined ? fuzz.headers : { ...fuzz.headers, 'content-type': fuzz.contentType };
      delay.reset();
      delay.enable();
      const cpuBefore = process.cpuUsage();
      let answer: RawAnswer;
      try {
        answer = await send(shop.url, fuzz.method, fuzz.path, headers, body);
      } finally {
        delay.disable();
      }
      const cpu = process.cpuUsage(cpuBefore);
      // A stall the process spent waiting for a core (the suite's other workers, other users of
      // the machine) is not work of this request: a block of the loop by synchronous work costs
      // at least as much CPU time as it lasts, so the smaller of the two is what the request did.
      const blockMs = Math.min(delay.max / 1e6, (cpu.user + cpu.system) / 1000);
      worstBlockMs = Math.max(worstBlockMs, blockMs);
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      const what = `${fuzz.method} ${fuzz.path.slice(0, 80)} (${body?.length ?? 0} bytes) -> ${answer.status}`;
      if (answer.status >= 500) failures.push(`${what}: ${answer.body.slice(0, 300)}`);
      if (answer.status >= 400 && fuzz.method !== 'HEAD') {
        if (!answer.contentType.includes('application/problem+json'))
          failures.push(`${what}: not a problem (${answer.contentType})`);
        if (answer.bytes > MAX_ERROR_BYTES) failures.push(`${what}: ${answer.bytes} bytes of error`);
      }
      if (answer.bytes > MAX_ANSWER_BYTES) failures.push(`${what}: ${answer.bytes} bytes`);
      if (blockMs > MAX_EVENT_LOOP_BLOCK_MS)
        failures.push(`${what}: event loop held ${Math.round(blockMs)} ms`);
    }
    console.log(`fuzz: worst event-loop block ${worstBlockMs.toFixed(1)} ms`, JSON.stringify(statuses));
    expect(failures).toEqual([]);
    expect(worstBlockMs).toBeLessThan(MAX_EVENT_LOOP_BLOCK_MS);
  }, 120_000);

  it('answers a 1 MB hostile body with one small error, quickly', async () => {
    const body = Buffer.from(
      JSON.stringify({ items: Array.from({ length: 120_000 }, () => ({ sku: 1, qty: 'x' })) }),
    );
    expect(body.length).toBeGreaterThan(1_000_000);
    const started = performance.now();
    const answer = await send(
      shop.url,
      'POST',
      '/orders',
      { authorization: tokens.customer!, 'idempotency-key': 'fuzz-huge', 'content-type': 'application/json' },
      body,
    );
    const elapsedMs = performance.now() - started;
    // Over the route's body limit: refused before a byte of it is parsed.
    expect(answer.status).toBe(413);
    expect(answer.bytes).toBeLessThan(2048);
    expect(elapsedMs).toBeLessThan(500);
    // Under the route's body limit (16 KiB) but far over maxItems: the size is checked before the items.
    const small = Buffer.from(
      JSON.stringify({ items: Array.from({ length: 700 }, () => ({ sku: 1, qty: 'x' })) }),
    );
    expect(small.length).toBeLessThan(16_384);
    const listed = await send(
      shop.url,
      'POST',
      '/orders',
      { authorization: tokens.customer!, 'idempotency-key': 'fuzz-big', 'content-type': 'application/json' },
      small,
    );
    expect(listed.status).toBe(400);
    expect(JSON.parse(listed.body).errors).toEqual([
      expect.objectContaining({ pointer: '/items', rule: 'maxItems' }),
    ]);
  });

  it('refuses unknown fields and uncoerced types, and lists at most 10 errors, each once', async () => {
    const headers = { authorization: tokens.customer!, 'content-type': 'application/json' };
    const coerced = await send(
      shop.url,
      'POST',
      '/orders',
      { ...headers, 'idempotency-key': 'fuzz-coerce' },
      Buffer.from('{"items":[{"sku":"fuzz-1","qty":"2"}]}'),
    );
    expect(coerced.status).toBe(400);
    expect(JSON.parse(coerced.body).errors).toEqual([
      expect.objectContaining({ pointer: '/items/0/qty', rule: 'type' }),
    ]);
    const unknown = await send(
      shop.url,
      'POST',
      '/orders',
      { ...headers, 'idempotency-key': 'fuzz-unknown' },
      Buffer.from('{"items":[{"sku":"fuzz-1","qty":1}],"discount":50}'),
    );
    expect(unknown.status).toBe(400);
    expect(JSON.parse(unknown.body).errors).toEqual([
      expect.objectContaining({ pointer: '/discount', rule: 'additionalProperties' }),
    ]);
    const many = Array.from({ length: 40 }, () => ({ sku: '', qty: 0 }));
    const listed = await send(
      shop.url,
      'POST',
      '/orders',
      { ...headers, 'idempotency-key': 'fuzz-many' },
      Buffer.from(JSON.stringify({ items: many })),
    );
    const errors = JSON.parse(listed.body).errors as Array<{ pointer: string; rule: string }>;
    expect(errors).toHaveLength(10);
    expect(new Set(errors.map((error) => `${error.pointer} ${error.rule}`)).size).toBe(10);
  });

  it('answers 414 and 431 with problem documents', async () => {
    const long = await send(shop.url, 'GET', `/catalog?after=${'a'.repeat(9000)}`, {
      authorization: tokens.customer!,
    });
    expect(long.status).toBe(414);
    expect(long.contentType).toContain('application/problem+json');
    const heavy = await send(shop.url, 'GET', '/catalog', {
      authorization: tokens.customer!,
      'x-padding': 'p'.repeat(20_000),
    });
    expect(heavy.status).toBe(431);
    expect(heavy.contentType).toContain('application/problem+json');
    expect(JSON.parse(heavy.body)).toMatchObject({ status: 431, title: 'Request Header Fields Too Large' });
  });
});
