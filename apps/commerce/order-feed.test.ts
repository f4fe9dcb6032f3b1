// GET /orders/events (Server-Sent Events of orders that ended) and POST /orders' backlog bound,
// against a real server on a real port.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, developmentAuth } from '../../src/http/index.ts';
import { systemTimers } from '../../src/index.ts';
import { openSqliteLog } from '../../src/log/index.ts';
import { ManualClock } from '../../src/testing/index.ts';
import { Order } from './order.ts';
import { formatCursor, parseCursor, registerOrderFeed } from './order-feed.ts';
import { openTestCommerce, type TestCommerce } from './test-fixture.ts';

interface FeedBlock {
  readonly id?: string;
  readonly event?: string;
  // biome-ignore lint/suspicious/noExplicitAny: events are inspected field by field
  readonly data?: any;
}

/** Opens the feed and reads it block by block (no timers: each read waits for the server). */
async function openFeed(shop: TestCommerce, given: Record<string, string> = {}, query = '') {
  const url = shop.url;
  const headers = { ...shop.operatorHeaders, ...given };
  const controller = new AbortController();
  const response = await fetch(`${url}/orders/events${query}`, { headers, signal: controller.signal });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  async function next(): Promise<FeedBlock | undefined> {
    for (;;) {
      const end = buffered.indexOf('\n\n');
      if (end !== -1) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const fields: Record<string, string> = {};
        for (const line of block.split('\n')) {
          const colon = line.indexOf(':');
          if (colon <= 0) continue;
          fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
        }
        return {
          ...(fields.id === undefined ? {} : { id: fields.id }),
          ...(fields.event === undefined ? {} : { event: fields.event }),
          ...(fields.data === undefined ? {} : { data: JSON.parse(fields.data) }),
        };
      }
      const chunk = await reader.read();
      if (chunk.done) return undefined;
      buffered += chunk.value;
    }
  }
  return {
    response,
    next,
    /** The next `order` event. */
    async order(): Promise<FeedBlock> {
      for (;;) {
        const block = await next();
        if (block === undefined) throw new Error('the feed ended');
        if (block.event === 'order') return block;
      }
    },
    close: () => controller.abort(),
  };
}

describe('GET /orders/events', () => {
  let shop: TestCommerce;
  let keys = 0;
  const place = (items: Array<{ sku: string; qty: number }>) =>
    shop.request('POST', '/orders', { customerId: 'grace', items }, { 'idempotency-key': `feed-${++keys}` });

  beforeAll(async () => {
    shop = await openTestCommerce();
    await shop.request('PUT', '/inventory/fig', { available: 3, price: 4 });
  });
  afterAll(async () => {
    await shop?.close();
  });

  it('streams each order that ends, confirmed or cancelled, and GET /orders/{id} agrees at once', async () => {
    const feed = await openFeed(shop);
    try {
      expect(feed.response.status).toBe(200);
      expect(feed.response.headers.get('content-type')).toContain('text/event-stream');
      // The opening block names where the stream starts: a cursor of every partition.
      const opening = await feed.next();
      expect(opening?.id).toMatch(/^\d+(\.\d+){7}$/);

      const confirmed = (await place([{ sku: 'fig', qty: 1 }])).body.orderId;
      const cancelled = (await place([{ sku: 'fig', qty: 50 }])).body.orderId;
      const events = [await feed.order(), await feed.order()];
      const byOrder = new Map(events.map((event) => [event.data.orderId, event]));
      expect(byOrder.get(confirmed)?.data).toEqual({
        orderId: confirmed,
        customerId: 'grace',
        total: 4,
        status: 'confirmed',
        chargeId: expect.any(String),
        at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      });
      expect(byOrder.get(cancelled)?.data).toMatchObject({
        orderId: cancelled,
        status: 'cancelled',
        reason: expect.stringContaining('out of stock'),
      });
      for (const event of events) {
        expect(event.id).toMatch(/^\d+(\.\d+){7}$/);
        // Read right after the event: the order already reads as ended, with its payment.
        const order = await shop.request('GET', `/orders/${event.data.orderId}`);
        expect(order.body.status).toBe(event.data.status);
      }
    } finally {
      feed.close();
    }
  });

  it('resumes after Last-Event-ID with what happened while disconnected, and from=earliest replays what the log holds', async () => {
    const first = await openFeed(shop);
    const opening = await first.next();
    const before = (await place([{ sku: 'fig', qty: 1 }])).body.orderId;
    const seen = await first.order();
    expect(seen.data.orderId).toBe(before);
    first.close();

    // Disconnected: this order ends unseen.
    const missed = (await place([{ sku: 'fig', qty: 99 }])).body.orderId;
    await shop.settle([missed]);

    const resumed = await openFeed(shop, { 'last-event-id': seen.id! });
    try {
      expect((await resumed.next())?.id).toBe(seen.id);
      expect((await resumed.order()).data).toMatchObject({ orderId: missed, status: 'cancelled' });
    } finally {
      resumed.close();
    }

    // From the opening cursor: both, each once.
    const again = await openFeed(shop, { 'last-event-id': opening!.id! });
    try {
      const ids = [(await again.order()).data.orderId, (await again.order()).data.orderId];
      expect(ids.sort()).toEqual([before, missed].sort());
    } finally {
      again.close();
    }

    const earliest = await openFeed(shop, {}, '?from=earliest');
    try {
      // Every order that ended so far, in no particular order across orders: wait for both.
      const orders = new Set<string>();
      while (!orders.has(missed) || !orders.has(before)) orders.add((await earliest.order()).data.orderId);
      expect(orders.size).toBeGreaterThanOrEqual(2);
    } finally {
      earliest.close();
    }
  });

  it('refuses a Last-Event-ID that is not one of its cursors with a problem saying what to do', async () => {
    for (const bad of ['1.2', 'a.b.c.d.e.f.g.h', '1.2.3.4.5.6.7.-8', 'x'.repeat(4000)]) {
      const response = await shop.request('GET', '/orders/events', undefined, { 'last-event-id': bad });
      expect(response.status).toBe(400);
      expect(response.headers.get('content-type')).toContain('application/problem+json');
      expect(response.body.type).toBe('urn:meridian:problem:invalid-last-event-id');
      expect(response.body.detail).toContain('Reconnect without it');
    }
    const badFrom = await shop.request('GET', '/orders/events?from=yesterday');
    expect(badFrom.status).toBe(400);
  });

  it('cursors: formatted and parsed back; wrong counts, non-digits and unsafe offsets refused', () => {
    expect(parseCursor(formatCursor([0, 17, 3]), 3)).toEqual([0, 17, 3]);
    expect(parseCursor('1.2', 3)).toContain('names 2 partition offset(s)');
    expect(parseCursor('1.x.3', 3)).toContain("'x' is not an offset");
    expect(parseCursor('1..3', 3)).toContain("'' is not an offset");
    expect(parseCursor('99999999999999999', 1)).toContain('is not an offset');
    expect(parseCursor('1.'.repeat(10_000), 2)).toContain('longer than');
  });
});

describe('order feed limits', () => {
  it('holds at most 4 open streams per principal (429 beyond), and another principal still gets one', async () => {
    const shop = await openTestCommerce();
    try {
      const ada = { authorization: `Bearer ${await shop.token('ada', 'customer')}` };
      const bob = { authorization: `Bearer ${await shop.token('bob', 'customer')}` };
      const open = await Promise.all(Array.from({ length: 4 }, () => openFeed(shop, ada)));
      for (const feed of open) await feed.next();
      const refused = await fetch(`${shop.url}/orders/events`, { headers: ada });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('content-type')).toContain('application/problem+json');
      expect(((await refused.json()) as { detail: string }).detail).toContain('limit 4');
      const other = await openFeed(shop, bob);
      await other.next();
      other.close();
      open[0]!.close();
      // A closed stream gives its slot back (once the server has seen the connection go).
      let again: Response | undefined;
      for (let attempt = 0; attempt < 50; attempt++) {
        again = await fetch(`${shop.url}/orders/events`, {
          headers: ada,
          signal: AbortSignal.timeout(2000),
        }).catch(() => undefined);
        if (again?.status === 200) break;
        await again?.body?.cancel();
        await new Promise((done) => setTimeout(done, 20));
      }
      expect(again?.status).toBe(200);
      await again?.body?.cancel();
      for (const feed of open.slice(1)) feed.close();
    } finally {
      await shop.close();
    }
  });
});

describe('the app draining with feeds open', () => {
  it('ends open streams, so that they do not hold the drain up', async () => {
    const shop = await openTestCommerce();
    const feed = await openFeed(shop);
    await feed.next();
    await shop.close();
    expect(await feed.next()).toBeUndefined();
  });
});

describe('POST /orders beyond maxOrdersInProgress', () => {
  it('answers 503 with Retry-After, reserving nothing: the same key is accepted once there is room', async () => {
    const shop = await openTestCommerce({
      payment: { latencyMs: 300 },
      app: { maxOrdersInProgress: 1, orders: { paymentCallTimeoutMs: 2000 } },
    });
    try {
      await shop.request('PUT', '/inventory/kiwi', { available: 10, price: 1 });
      const order = { customerId: 'lin', items: [{ sku: 'kiwi', qty: 1 }] };
      const first = await shop.request('POST', '/orders', order, { 'idempotency-key': 'backlog-1' });
      expect(first.status).toBe(202);
      // The first order waits on the slow payment gateway: the backlog is full.
      const refused = await shop.request('POST', '/orders', order, { 'idempotency-key': 'backlog-2' });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body).toMatchObject({
        type: 'urn:meridian:problem:backlog-full',
        depth: 1,
        limit: 1,
      });
      expect(refused.body.detail).toContain('POST /orders is refused while 1 orders');
      await shop.settle([first.body.orderId]);
      const retried = await shop.request('POST', '/orders', order, { 'idempotency-key': 'backlog-2' });
      expect(retried.status).toBe(202);
      expect(retried.headers.get('idempotent-replayed')).toBeNull();
    } finally {
      await shop.close();
    }
  });
});

describe("the order feed's limits, on a gateway of its own", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** The feed alone on a gateway (its own log, clock and development tokens), listening. */
  async function feed(
    limits: { maxStreams: number; maxStreamsPerPrincipal: number },
    topic: { retentionMs?: number } = {},
  ) {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-feed-limits-'));
    cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
    const clock = new ManualClock(Date.now());
    const log = openSqliteLog({ path: join(directory, 'feed.db'), clock, retentionCheckIntervalMs: null });
    cleanups.push(() => log.close());
    await log.createTopic(Order.eventsTopic, { partitions: 2, ...topic });
    const auth = developmentAuth(directory);
    const gateway = await createGateway({
      auth: { ...auth.auth, defaultCustomerScopes: ['orders:read'] },
      clock,
      defaultMetrics: false,
    });
    const closing = new AbortController();
    registerOrderFeed(gateway, { log, timers: systemTimers, clock, closing: closing.signal, ...limits });
    const url = await gateway.listen();
    cleanups.push(async () => {
      closing.abort();
      await gateway.close();
    });
    const aborts: AbortController[] = [];
    cleanups.push(() => {
      for (const abort of aborts) abort.abort();
    });
    /** Opens the feed as `customer`; a stream that opened stays open until the test ends. */
    const open = async (customer: string, headers: Record<string, string> = {}) => {
      const abort = new AbortController();
      aborts.push(abort);
      const token = await auth.issue(customer, 'customer');
      const response = await fetch(`${url}/orders/events`, {
        headers: { authorization: `Bearer ${token}`, ...headers },
        signal: abort.signal,
      });
      const problem =
        response.status === 200 ? undefined : ((await response.json()) as { type: string; detail: string });
      return { status: response.status, retryAfter: response.headers.get('retry-after'), problem, response };
    };
    return { open, clock, log };
  }

  it("says when the log's retention removed events the reader had not reached: a gap event, then the next order", async () => {
    const { open, clock, log } = await feed(
      { maxStreams: 10, maxStreamsPerPrincipal: 10 },
      { retentionMs: 1000 },
    );
    const confirmed = (orderId: string) => ({
      key: orderId,
      value: new TextEncoder().encode(
        JSON.stringify({
          type: 'OrderConfirmed',
          orderId,
          customerId: 'ada',
          total: 4,
          chargeId: `ch-${orderId}`,
        }),
      ),
    });
    // Partition 0 only: the records name it.
    const append = (orderId: string) =>
      log.append(Order.eventsTopic, [{ ...confirmed(orderId), partition: 0 }]);
    await append('gone-1');
    await append('gone-2');
    clock.advance(5000);
    await append('kept');
    expect((await log.enforceRetention()).recordsRemoved).toBe(2);
    // A reader that stopped right after 'gone-1' (partition 0 at offset 1) comes back.
    const { response } = await open('ada', { 'last-event-id': formatCursor([1, 0]) });
    expect(response.status).toBe(200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('event: order')) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += chunk.value;
    }
    const blocks = text.split('\n\n').filter((block) => block.includes('event: '));
    expect(blocks[0]).toBe('event: gap\ndata: {"partition":0,"from":1,"to":2}');
    expect(blocks[1]).toContain('"orderId":"kept"');
    await reader.cancel();
  });

  it('holds at most maxStreams open in total: beyond, 503 with Retry-After, whoever asks', async () => {
    const { open } = await feed({ maxStreams: 2, maxStreamsPerPrincipal: 4 });
    expect((await open('ada')).status).toBe(200);
    expect((await open('bob')).status).toBe(200);
    const refused = await open('carol');
    expect(refused.status).toBe(503);
    expect(refused.retryAfter).toBe('5');
    expect(refused.problem).toMatchObject({ type: 'urn:meridian:problem:too-many-streams' });
    expect(refused.problem!.detail).toContain('limit 2');
  });

  it('rate-limits opening streams per principal (each open may replay history): a burst of 10, then 1 a second', async () => {
    const { open, clock } = await feed({ maxStreams: 100, maxStreamsPerPrincipal: 100 });
    for (let i = 0; i < 10; i++) expect((await open('dan')).status).toBe(200);
    const refused = await open('dan');
    expect(refused.status).toBe(429);
    expect(refused.problem).toMatchObject({ type: 'urn:meridian:problem:rate-limited' });
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    // Another principal has a bucket of its own; dan gets one more a second later.
    expect((await open('eve')).status).toBe(200);
    clock.advance(1000);
    expect((await open('dan')).status).toBe(200);
    expect((await open('dan')).status).toBe(429);
  });
});
