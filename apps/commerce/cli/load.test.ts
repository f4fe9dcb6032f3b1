import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { captureOutput } from '../../../src/cli/output.fixture.ts';
import { run } from './load.ts';
import type { LoadSummary } from './load-generator.ts';

interface FakeOptions {
  /** Answer every n-th POST /orders with 503. */
  failEvery?: number;
  /** Hold each POST /orders this long before answering (ms). */
  holdPostMs?: number;
  /** Answer PUT /inventory with this status. */
  inventoryStatus?: number;
  /**
   * Serve GET /orders/events: each order's terminal status as a Server-Sent Event, sent as soon
   * as the order is placed (`before-answer`: before its 202, so the event arrives first).
   */
  feed?: 'after-answer' | 'before-answer';
  /** End the first feed connection after this many events (the client must resume). */
  dropFeedAfter?: number;
}

interface FakeOrder {
  orderId: string;
  customerId: string;
  items: Array<{ sku: string; qty: number }>;
  outcome: 'confirmed' | 'cancelled';
  status: 'pending' | 'confirmed' | 'cancelled';
}

/**
 * A small real HTTP server that follows the commerce contract (issue 5, item 3) for inventory
 * and orders: stock is sold at POST time when every item is available, and an order shows
 * `pending` until its first poll, then its terminal status, so polling is exercised.
 */
async function fakeOrderServer(options: FakeOptions = {}) {
  const inventory = new Map<string, { available: number; reserved: number; sold: number; price: number }>();
  const orders = new Map<string, FakeOrder>();
  const keys = new Map<string, string>();
  const events: Array<{ orderId: string; status: string }> = [];
  const streams = new Set<ServerResponse>();
  const feedConnections: Array<string | undefined> = [];
  let polls = 0;
  let posts = 0;
  const writeEvent = (stream: ServerResponse, index: number) => {
    stream.write(`id: ${index + 1}\nevent: order\ndata: ${JSON.stringify(events[index])}\n\n`);
    const sent = ((stream as { sent?: number }).sent ?? 0) + 1;
    (stream as { sent?: number }).sent = sent;
    if (feedConnections.length === 1 && sent === options.dropFeedAfter) {
      streams.delete(stream);
      stream.end();
    }
  };
  const publish = (order: FakeOrder) => {
    events.push({ orderId: order.orderId, status: order.outcome });
    for (const stream of streams) writeEvent(stream, events.length - 1);
  };
  const send = (response: ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const readBody = async (request: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return chunks.length === 0 ? undefined : JSON.parse(Buffer.concat(chunks).toString('utf8'));
  };
  const server: Server = createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://fake');
    if (request.method === 'GET' && url.pathname === '/orders/events' && options.feed !== undefined) {
      const last = request.headers['last-event-id'];
      feedConnections.push(typeof last === 'string' ? last : undefined);
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(': hello\n\n');
      for (let index = Number(last ?? 0); index < events.length; index++) writeEvent(response, index);
      if (!response.destroyed) streams.add(response);
      response.on('close', () => streams.delete(response));
      return;
    }
    const body = await readBody(request);
    const inventoryMatch = /^\/inventory\/([^/]+)$/.exec(url.pathname);
    if (request.method === 'PUT' && inventoryMatch !== null) {
      if (options.inventoryStatus !== undefined)
        return send(response, options.inventoryStatus, { title: 'nope' });
      const sku = decodeURIComponent(inventoryMatch[1]!);
      inventory.set(sku, { available: body.available, reserved: 0, sold: 0, price: body.price });
      return send(response, 200, { sku, ...inventory.get(sku) });
    }
    if (request.method === 'POST' && url.pathname === '/orders') {
      posts += 1;
      const key = request.headers['idempotency-key'];
      if (typeof key !== 'string') return send(response, 400, { title: 'Idempotency-Key required' });
      if (options.holdPostMs !== undefined)
        await new Promise((resolve) => setTimeout(resolve, options.holdPostMs));
      if (options.failEvery !== undefined && posts % options.failEvery === 0) {
        return send(response, 503, { title: 'busy' });
      }
      const existing = keys.get(key);
      if (existing !== undefined) return send(response, 202, { orderId: existing, status: 'pending' });
      const items = body.items as FakeOrder['items'];
      if (items.some((item) => !inventory.has(item.sku)))
        return send(response, 404, { title: 'unknown SKU' });
      const available = items.every((item) => inventory.get(item.sku)!.available >= item.qty);
      if (available) {
        for (const item of items) {
          const stock = inventory.get(item.sku)!;
          stock.available -= item.qty;
          stock.sold += item.qty;
        }
      }
      const orderId = `order-${orders.size + 1}`;
      keys.set(key, orderId);
      const order: FakeOrder = {
        orderId,
        customerId: body.customerId,
        items,
        outcome: available ? 'confirmed' : 'cancelled',
        status: 'pending',
      };
      orders.set(orderId, order);
      if (options.feed === 'before-answer') publish(order);
      send(response, 202, { orderId, status: 'pending' });
      if (options.feed === 'after-answer') setImmediate(() => publish(order));
      return;
    }
    const orderMatch = /^\/orders\/([^/]+)$/.exec(url.pathname);
    if (request.method === 'GET' && orderMatch !== null) {
      polls += 1;
      const order = orders.get(decodeURIComponent(orderMatch[1]!));
      if (order === undefined) return send(response, 404, { title: 'no such order' });
      const shown = { ...order };
      order.status = order.outcome;
      return send(response, 200, shown);
    }
    return send(response, 404, { title: 'not found' });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    inventory,
    orders,
    keys,
    feedConnections,
    polls: () => polls,
    close: () =>
      new Promise<void>((resolve) => {
        for (const stream of streams) stream.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Runs `commerce load --json` against `url`; its exit code and summary. */
async function runJson(url: string, args: string[]): Promise<{ code: number; summary: LoadSummary }> {
  const io = captureOutput();
  const code = await run(['--url', url, ...args, '--json'], io.output);
  return { code, summary: JSON.parse(io.out.at(-1) ?? 'null') as LoadSummary };
}

/** 100 orders over half a second, from two SKUs. */
const halfSecondOf100 = ['--rate', '200', '--duration', '0.5', '--skus', '2'];

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

describe('commerce load', () => {
  it('sets up inventory, offers every order once with its own key, follows each to its terminal status and reports the counts', async () => {
    const fake = await fakeOrderServer({ failEvery: 10 });
    closers.push(fake.close);
    const io = captureOutput();
    const code = await run(
      [
        '--url',
        fake.url,
        '--rate',
        '200',
        '--duration',
        '0.5',
        '--skus',
        '3',
        '--stock',
        '20',
        '--seed',
        '7',
        '--poll-interval-ms',
        '5',
        '--json',
      ],
      io.output,
    );
    expect(code).toBe(0);
    const summary = JSON.parse(io.out.at(-1)!) as LoadSummary;
    expect([...fake.inventory.keys()]).toEqual(['sku-00001', 'sku-00002', 'sku-00003']);
    expect(summary.offered).toBe(100);
    expect(summary.sent).toBe(100);
    expect(summary.notSentOnTime).toBe(0);
    // Every 10th POST was answered 503: counted by kind, and never accepted.
    expect(summary.errorsByKind).toEqual({ http_503: 10 });
    expect(summary.accepted).toBe(90);
    expect(fake.keys.size).toBe(90);
    expect(summary.completed).toBe(90);
    expect(summary.unfinished).toBe(0);
    const confirmed = [...fake.orders.values()].filter((order) => order.outcome === 'confirmed').length;
    expect(summary.confirmed).toBe(confirmed);
    expect(summary.cancelled).toBe(90 - confirmed);
    // 60 units for far more demand: stock ran out, so some orders were cancelled.
    expect(summary.cancelled).toBeGreaterThan(0);
    const sold = [...fake.inventory.values()].reduce((sum, stock) => sum + stock.sold, 0);
    expect(sold).toBeLessThanOrEqual(60);
    expect(summary.latencyToAccepted.count).toBe(90);
    expect(summary.latencyToTerminal.count).toBe(90);
    expect(summary.latencyToTerminal.p50Ms).toBeGreaterThanOrEqual(summary.latencyToAccepted.p50Ms);
    expect(summary.latencyToAccepted.maxMs).toBeGreaterThanOrEqual(summary.latencyToAccepted.p99Ms);
    // In JSON mode the human-readable lines go to stderr, so stdout is just the summary.
    expect(io.out).toHaveLength(1);
    expect(io.err[0]).toContain('commerce load: 200 orders/s for 0.5 s');
  });

  it('learns that orders ended from the order feed, one stream for all of them, and asks about none', async () => {
    for (const feed of ['after-answer', 'before-answer'] as const) {
      const fake = await fakeOrderServer({ feed });
      closers.push(fake.close);
      const { code, summary } = await runJson(fake.url, [...halfSecondOf100, '--stock', '20']);
      expect(code).toBe(0);
      expect(summary.watchedBy).toBe('events');
      expect(summary.accepted).toBe(100);
      expect(summary.completed).toBe(100);
      const confirmed = [...fake.orders.values()].filter((order) => order.outcome === 'confirmed').length;
      expect(summary.confirmed).toBe(confirmed);
      expect(summary.cancelled).toBe(100 - confirmed);
      expect(summary.latencyToTerminal.count).toBe(100);
      expect(summary.errorsByKind).toEqual({});
      expect(fake.polls()).toBe(0);
      expect(fake.feedConnections).toEqual([undefined]);
    }
  });

  it('resumes the feed with Last-Event-ID when it drops, missing no order', async () => {
    const fake = await fakeOrderServer({ feed: 'after-answer', dropFeedAfter: 30 });
    closers.push(fake.close);
    const { code, summary } = await runJson(fake.url, [...halfSecondOf100, '--stock', '1000']);
    expect(code).toBe(0);
    expect(summary.watchedBy).toBe('events');
    expect(summary.completed).toBe(100);
    expect(summary.confirmed).toBe(100);
    expect(fake.polls()).toBe(0);
    expect(fake.feedConnections).toEqual([undefined, '30']);
  });

  it("asks about each order when the gateway has no feed, or with '--watch orders'", async () => {
    const fake = await fakeOrderServer({ feed: 'after-answer' });
    closers.push(fake.close);
    const args = ['--rate', '100', '--duration', '0.2', '--poll-interval-ms', '5'];
    const { code, summary } = await runJson(fake.url, [...args, '--watch', 'orders']);
    expect(code).toBe(0);
    // The fake ignores Prefer: wait, so the generator polls.
    expect(summary.watchedBy).toBe('poll');
    expect(summary.completed).toBe(20);
    expect(fake.polls()).toBeGreaterThanOrEqual(20);
    expect(fake.feedConnections).toEqual([]);

    const bare = await fakeOrderServer();
    closers.push(bare.close);
    const { code: bareCode, summary: fallback } = await runJson(bare.url, args);
    expect(bareCode).toBe(0);
    expect(fallback.watchedBy).toBe('poll');
    expect(fallback.completed).toBe(20);
  });

  it('does not send orders due while the concurrency limit is reached, counts them, and prints progress and a summary', async () => {
    const fake = await fakeOrderServer({ holdPostMs: 1200 });
    closers.push(fake.close);
    const io = captureOutput();
    const code = await run(
      [
        '--url',
        fake.url,
        '--rate',
        '200',
        '--duration',
        '0.25',
        '--concurrency',
        '5',
        '--poll-interval-ms',
        '5',
      ],
      io.output,
    );
    expect(code).toBe(0);
    expect(
      io.out.some((line) => /^\[\s+1\.\ds\] {2}offered 50 .* in-flight 5 {2}not-sent 45 /.test(line)),
    ).toBe(true);
    const text = io.out.join('\n');
    expect(text).toMatch(/ {2}offered {4}50 orders \([\d.]+\/s\)/);
    expect(text).toContain('  sent       5  not sent on time (concurrency limit) 45');
    expect(text).toMatch(/completed {2}5 \([\d.]+\/s\): confirmed 5, cancelled 0, unfinished 0/);
    expect(text).toMatch(
      /latency to 202 +p50 \d+\.\d ms {2}p90 \d+\.\d ms {2}p99 \d+\.\d ms {2}max \d+\.\d ms {2}\(n=5\)/,
    );
    expect(text).toMatch(/latency to terminal +p50/);
    expect(text).toContain('  errors     none');
    // The held orders waited over a second for their 202: the latency shows it.
    const line = io.out.find((l) => l.includes('latency to 202'))!;
    expect(Number(/max (\d+\.\d) ms/.exec(line)![1])).toBeGreaterThanOrEqual(1200);
  });

  it('offers the warm-up at the same rate on one schedule and leaves its orders out of the summary', async () => {
    const fake = await fakeOrderServer({ failEvery: 10 });
    closers.push(fake.close);
    const io = captureOutput();
    const code = await run(
      ['--url', fake.url, '--rate', '100', '--warmup', '2', '--duration', '0.5', '--poll-interval-ms', '5'],
      io.output,
    );
    expect(code).toBe(0);
    // 200 warm-up orders and 50 measured ones reached the server; every 10th POST failed.
    expect(fake.keys.size).toBe(225);
    const text = io.out.join('\n');
    expect(io.out[0]).toContain('commerce load: 100 orders/s for 0.5 s after 2 s of warm-up');
    // Progress during the warm-up is marked and counts warm-up orders (about 100 by then; the
    // exact count depends on when the timer fired).
    const warming = io.out.find((line) => line.startsWith('[warm-up'));
    expect(warming).toMatch(/^\[warm-up +1\.\ds\] {2}offered \d+ /);
    expect(text).toMatch(/Summary \([\d.]+ s against .*, after 2 s of warm-up not counted\)/);
    expect(text).toMatch(/ {2}offered {4}50 orders \(\d+(\.\d)?\/s\)/);
    expect(text).toContain('  sent       50  not sent on time (concurrency limit) 0');
    // Of the 50 measured orders, those whose POST was a 10th one failed (5, when the POSTs
    // arrived in the order they were sent); the rest were accepted and completed.
    const completed = Number(/completed {2}(\d+) \(/.exec(text)![1]);
    const failed = Number(/errors {5}http_503 (\d+)/.exec(text)![1]);
    expect(completed + failed).toBe(50);
    expect(failed).toBeGreaterThanOrEqual(4);
    expect(failed).toBeLessThanOrEqual(6);
    expect(text).toMatch(new RegExp(`latency to terminal +p50 .*\\(n=${completed}\\)`));
  });

  it('reports the warm-up in its JSON summary', async () => {
    const fake = await fakeOrderServer();
    closers.push(fake.close);
    const io = captureOutput();
    const args = ['--url', fake.url, '--rate', '100', '--warmup', '1', '--duration', '0.2', '--json'];
    expect(await run([...args, '--poll-interval-ms', '5'], io.output)).toBe(0);
    const summary = JSON.parse(io.out.at(-1)!) as LoadSummary;
    expect(summary).toMatchObject({ warmupSeconds: 1, warmupAccepted: 100, offered: 20, accepted: 20 });
    expect(summary.latencyToTerminal.count).toBe(20);
  });

  it('rejects invalid options with exit code 2 and a message naming the option, the rule and the value', async () => {
    const cases: Array<[string[], string]> = [
      [['--rate', '0'], "'--rate' must be an integer in [1, 100000]: current value is '0'"],
      [['--rate', '1.5'], "'--rate' must be an integer in [1, 100000]: current value is '1.5'"],
      [['--duration', 'abc'], "'--duration' must be a number in (0, 3600]: current value is 'abc'"],
      [
        ['--url', 'ftp://example'],
        "'--url' must be an absolute http(s) URL: current value is 'ftp://example'",
      ],
      [['--warmup', '1.5'], "'--warmup' must be an integer in [0, 3600]: current value is '1.5'"],
      [
        ['--rate', '100000', '--duration', '60', '--warmup', '60'],
        "'--rate' × ('--duration' + '--warmup') must be <= 10000000 orders: current value is 12000000",
      ],
      [['--concurrency=-1'], "'--concurrency' must be an integer in [1, 100000]: current value is '-1'"],
      [['--watch', 'poll'], "'--watch' must be one of 'events', 'orders': current value is 'poll'"],
      [['--bogus'], "Unknown option '--bogus'"],
    ];
    for (const [argv, message] of cases) {
      const io = captureOutput();
      expect(await run(argv, io.output)).toBe(2);
      expect(io.err[0]).toContain(message);
    }
  });

  it('exits 1 naming the request when the inventory setup fails', async () => {
    const fake = await fakeOrderServer({ inventoryStatus: 500 });
    closers.push(fake.close);
    const io = captureOutput();
    expect(await run(['--url', fake.url, '--skus', '2', '--duration', '1'], io.output)).toBe(1);
    expect(io.err[0]).toMatch(/PUT http:\/\/127\.0\.0\.1:\d+\/inventory\/sku-0000[12] answered 500/);
  });

  it('prints its usage for --help', async () => {
    const io = captureOutput();
    expect(await run(['--help'], io.output)).toBe(0);
    expect(io.out[0]).toContain('Usage: commerce load');
  });
});
