import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { type Gateway, HttpProblem, type Principal, principalOf, Type } from '../../src/http/index.ts';
import { type Clock, systemClock, type Timers } from '../../src/index.ts';
import { decodeJson, type Log, type LogRecord } from '../../src/log/index.ts';
import { tokenBucket } from '../../src/resilience/index.ts';
import { Order, type OrderEvent } from './order.ts';

export interface OrderFeedDependencies {
  readonly log: Log;
  readonly timers: Timers;
  /** The clock of the rate limit on opening streams. @default systemClock */
  readonly clock?: Clock;
  /** Aborted when the app starts draining: open streams end, so they do not hold the drain up. */
  readonly closing: AbortSignal;
  /** A comment line this often keeps idle connections (and proxies) from timing out. @default 15000 */
  readonly heartbeatMs?: number;
  /** Streams one principal may hold open at once; more get 429. Range [1, 1000]. @default 4 */
  readonly maxStreamsPerPrincipal?: number;
  /** Streams open at once in total; more get 503. Range [1, 100000]. @default 256 */
  readonly maxStreams?: number;
}

/** What one event of the feed says: an order that reached a final status. */
export interface OrderFeedEvent {
  readonly orderId: string;
  readonly status: 'confirmed' | 'cancelled';
  readonly customerId: string;
  readonly total: number;
  readonly chargeId?: string;
  readonly reason?: string;
  /** When the order's status changed (ISO 8601). */
  readonly at: string;
}

export const ORDER_FEED_PATH = '/orders/events';

/** The longest Last-Event-ID accepted: a cursor of 1,024 partitions of 16-digit offsets fits. */
const maxCursorLength = 17 * 1024;
/** How long one poll waits for records before it looks at the connection again. */
const pollTimeoutMs = 5000;
const problemType = 'urn:meridian:problem:invalid-last-event-id';

/**
 * An event's id: for every partition of the events topic, the offset of the next record the
 * stream would send, '.'-separated. Sent back as Last-Event-ID (EventSource does so by itself on
 * reconnecting), it resumes the feed right after that event, whatever arrived since.
 */
export function formatCursor(next: readonly number[]): string {
  return next.join('.');
}

/** The offsets a Last-Event-ID names, or a message saying what is wrong with it. */
export function parseCursor(text: string, partitions: number): number[] | string {
  if (text.length > maxCursorLength) return `it is longer than ${maxCursorLength} characters`;
  const parts = text.split('.');
  if (parts.length !== partitions) {
    return `it names ${parts.length} partition offset(s), and the feed's topic has ${partitions}`;
  }
  const offsets: number[] = [];
  for (const part of parts) {
    const offset = /^\d{1,16}$/.test(part) ? Number(part) : Number.NaN;
    if (!Number.isSafeInteger(offset)) return `'${part.slice(0, 32)}' is not an offset (digits only)`;
    offsets.push(offset);
  }
  return offsets;
}

/** The feed's view of an Order event, or undefined for a record that is not one. */
function feedEventOf(record: LogRecord): OrderFeedEvent | undefined {
  let event: OrderEvent | null;
  try {
    event = decodeJson<OrderEvent>(record);
  } catch {
    return undefined;
  }
  if (event === null) return undefined;
  const at = new Date(record.timestamp).toISOString();
  const base = { orderId: event.orderId, customerId: event.customerId, total: event.total, at };
  if (event.type === 'OrderConfirmed') return { ...base, status: 'confirmed', chargeId: event.chargeId };
  if (event.type === 'OrderCancelled') return { ...base, status: 'cancelled', reason: event.reason };
  return undefined;
}

/**
 * `GET /orders/events`: orders reaching a final status (confirmed or cancelled) as a stream of
 * Server-Sent Events, read from the Order entity's events topic: a client watches every order it
 * places over one connection instead of asking about each. Each event's id is a cursor; with
 * Last-Event-ID the stream resumes right after that event and misses nothing the log still holds.
 * Without it, the stream starts with orders that end from now on (`?from=earliest`: with every
 * event the log still holds).
 *
 * Each stream is a consumer of its own on the log (a group that never commits), so it costs one
 * read per batch of events, not one per order. Ordered per order, not across orders.
 */
export function registerOrderFeed(gateway: Gateway, deps: OrderFeedDependencies): void {
  const { log, timers, closing } = deps;
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const topic = Order.eventsTopic;
  const limits = new StreamLimits(
    integerOption('maxStreamsPerPrincipal', deps.maxStreamsPerPrincipal, 4, 1, 1000),
    integerOption('maxStreams', deps.maxStreams, 256, 1, 100_000),
  );

  gateway.route({
    method: 'GET',
    url: ORDER_FEED_PATH,
    access: { scopes: ['orders:read'] },
    // Opening a stream (and so replaying history from a cursor) is rate-limited per principal:
    // a reconnect loop cannot turn into a replay of the whole log many times a second.
    rateLimit: {
      limiter: tokenBucket({ ratePerSecond: 1, burst: 10, clock: deps.clock ?? systemClock }),
      per: 'client',
    },
    // A stream stays open for as long as its client watches: it would hold a shedder's permit
    // all that time. Its cost is per batch of events, not per connection.
    loadShedder: false,
    schema: {
      summary: 'Orders as they are confirmed or cancelled: a stream of Server-Sent Events',
      description:
        "`text/event-stream`: one `order` event per order that reached a final status (a customer sees its own orders only), its data `{orderId, status, customerId, total, chargeId | reason, at}`. Each event's `id` is a cursor: send it back as `Last-Event-ID` (EventSource does so when it reconnects) to resume right after it. Without one, the stream starts from now (`from=latest`) or from the oldest event the log holds (`from=earliest`). A `gap` event (data `{partition, from, to}`) says the log's retention removed events between the cursor and the next one before they were read: ask about the orders you wait for (`GET /orders/{id}`).",
      tags: ['orders'],
      querystring: Type.Object({
        from: Type.Optional(
          Type.Union([Type.Literal('latest'), Type.Literal('earliest')], { default: 'latest' }),
        ),
      }),
      headers: Type.Object({
        'last-event-id': Type.Optional(
          Type.String({ maxLength: maxCursorLength, description: 'The id of the last event received' }),
        ),
      }),
    },
    handler: async (request, reply) => {
      // HEAD (Fastify serves it for every GET): the stream's headers, and no stream.
      if (request.method === 'HEAD') {
        return reply
          .header('content-type', 'text/event-stream; charset=utf-8')
          .header('cache-control', 'no-store')
          .send();
      }
      const { partitions } = await log.describeTopic(topic);
      const lastEventId = request.headers['last-event-id'];
      let cursor: number[];
      if (lastEventId !== undefined && lastEventId !== '') {
        const parsed = parseCursor(lastEventId, partitions);
        if (typeof parsed === 'string') {
          throw new HttpProblem({
            status: 400,
            title: 'The Last-Event-ID is not a cursor of this feed',
            type: problemType,
            detail: `Last-Event-ID must be the id of an event of ${ORDER_FEED_PATH}: ${parsed}. Reconnect without it to start from now.`,
          });
        }
        cursor = parsed;
      } else {
        const ranges = await Promise.all(
          Array.from({ length: partitions }, (_, partition) => log.offsets(topic, partition)),
        );
        cursor = ranges.map((range) => (request.query.from === 'earliest' ? range.start : range.end));
      }
      if (closing.aborted) {
        throw new HttpProblem({
          status: 503,
          title: 'The server is shutting down',
          type: 'urn:meridian:problem:draining',
          detail: 'The order feed is closing: reconnect (with Last-Event-ID) once the server is back.',
        });
      }
      const principal = principalOf(request)!;
      const release = limits.open(principal);
      reply.hijack();
      try {
        await stream(reply.raw, cursor, principal);
      } finally {
        release();
      }
    },
  });

  /**
   * The `gap` event of a partition whose events from the cursor up to `record` the log no longer
   * holds (its retention passed them while the reader was behind), or '' for a jump over offsets
   * the log never used. A client then asks about the orders it waits for instead of waiting on.
   */
  async function gapEvent(record: LogRecord, cursor: readonly number[]): Promise<string> {
    const from = cursor[record.partition]!;
    const { start } = await log.offsets(topic, record.partition).catch(() => ({ start: from }));
    if (start <= from) return '';
    const data = { partition: record.partition, from, to: Math.min(start, record.offset) };
    return `event: gap\ndata: ${JSON.stringify(data)}\n\n`;
  }

  async function stream(response: ServerResponse, cursor: number[], principal: Principal): Promise<void> {
    const stop = new AbortController();
    const abort = () => stop.abort();
    response.once('close', abort);
    closing.addEventListener('abort', abort, { once: true });
    // A group of its own that never commits: a reader of the topic, not a member of the app's groups.
    const consumer = log.consumer({
      group: `commerce-order-feed-${randomUUID()}`,
      topics: [topic],
      // The cursor decides where to start; `earliest` only makes sure nothing after it is skipped.
      autoOffsetReset: 'earliest',
      // History is replayed a page at a time, each written (and drained by a slow reader) before the next.
      maxPollRecords: 500,
    });
    const positioned = new Set<number>();
    let heartbeat = timers.setTimeout(function beat() {
      if (!response.writableEnded) response.write(': keep-alive\n\n');
      heartbeat = timers.setTimeout(beat, heartbeatMs);
    }, heartbeatMs);
    try {
      response.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      });
      // The first event id lets a client that sees no order yet resume from here.
      response.write(`retry: 1000\nid: ${formatCursor(cursor)}\n\n`);
      while (!stop.signal.aborted) {
        for (const { partition } of consumer.assignment()) {
          if (positioned.has(partition)) continue;
          consumer.seek(topic, partition, cursor[partition]!);
          positioned.add(partition);
        }
        const records = await consumer.poll({ timeoutMs: pollTimeoutMs, signal: stop.signal });
        let text = '';
        for (const record of records) {
          // Before the cursor: a partition polled before it was positioned (a rebalance).
          if (record.offset < cursor[record.partition]!) continue;
          if (record.offset > cursor[record.partition]!) text += await gapEvent(record, cursor);
          cursor[record.partition] = record.offset + 1;
          const event = feedEventOf(record);
          if (event === undefined) continue;
          if (principal.role !== 'operator' && event.customerId !== principal.id) continue;
          text += `id: ${formatCursor(cursor)}\nevent: order\ndata: ${JSON.stringify(event)}\n\n`;
        }
        if (text === '' || stop.signal.aborted) continue;
        // A slow reader holds the stream back (the log keeps the events), not the server's memory.
        if (!response.write(text))
          await once(response, 'drain', { signal: stop.signal }).catch(() => undefined);
      }
    } catch (error) {
      // The log closed under the stream (the app stopping) or the client went away: end it; the
      // client resumes with the last id it got.
      if (!stop.signal.aborted)
        response.write(`: ended: ${(error as Error).message.replace(/\n/g, ' ')}\n\n`);
    } finally {
      heartbeat.cancel();
      response.off('close', abort);
      closing.removeEventListener('abort', abort);
      await consumer.close().catch(() => undefined);
      response.end();
    }
  }
}

/** Open streams per principal and in total: each holds a connection and a log consumer. */
class StreamLimits {
  readonly #perPrincipal = new Map<string, number>();
  #total = 0;
  readonly #maxPerPrincipal: number;
  readonly #maxTotal: number;

  constructor(maxPerPrincipal: number, maxTotal: number) {
    this.#maxPerPrincipal = maxPerPrincipal;
    this.#maxTotal = maxTotal;
  }

  /** Takes a slot for the principal, or throws 429 (its own limit) or 503 (the total); returns its release. */
  open(principal: Principal): () => void {
    const key = `${principal.role}:${principal.id}`;
    const held = this.#perPrincipal.get(key) ?? 0;
    if (held >= this.#maxPerPrincipal) {
      throw new HttpProblem({
        status: 429,
        title: 'Too many open streams',
        type: 'urn:meridian:problem:too-many-streams',
        detail: `This principal already holds ${held} open stream(s) of ${ORDER_FEED_PATH} (limit ${this.#maxPerPrincipal}); close one first.`,
        headers: { 'retry-after': '5' },
      });
    }
    if (this.#total >= this.#maxTotal) {
      throw new HttpProblem({
        status: 503,
        title: 'The service is overloaded',
        type: 'urn:meridian:problem:too-many-streams',
        detail: `${this.#total} streams of ${ORDER_FEED_PATH} are open (limit ${this.#maxTotal}); retry later.`,
        headers: { 'retry-after': '5' },
      });
    }
    this.#perPrincipal.set(key, held + 1);
    this.#total += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total -= 1;
      const now = (this.#perPrincipal.get(key) ?? 1) - 1;
      if (now === 0) this.#perPrincipal.delete(key);
      else this.#perPrincipal.set(key, now);
    };
  }
}

function integerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const actual = value ?? fallback;
  if (!Number.isInteger(actual) || actual < min || actual > max) {
    throw new RangeError(
      `'${name}' must be an integer in [${min}, ${max}]: current value is ${String(actual)}`,
    );
  }
  return actual;
}
