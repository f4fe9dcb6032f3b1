// The markets HTTP API, declared on the platform gateway (src/http): batch trade ingestion with
// validation, the latest window per symbol (through the cache), a time range of windows, top
// movers, the moving minute and a time range of alerts (from the read model), a Server-Sent
// Events stream of windows as they close, and per-symbol reference data (sector, tick size)
// written to the table the windows are enriched from. The gateway authenticates every route,
// checks its access (reads need `markets:read`, writes `markets:write`; an operator may do
// both), rate-limits per principal, refuses foreign Host headers (DNS rebinding), validates each
// request against its TypeBox schema and documents it in /openapi.json. The same routes serve
// both shapes: every answer but the live feed comes from the store (and the cache in front of
// it), which every node of the cluster shares.

import type { ServerResponse } from 'node:http';
import type { Cache } from '../../src/cache/index.ts';
import { type AuthOptions, createGateway, type Gateway, HttpProblem, Type } from '../../src/http/index.ts';
import { systemClock, ValidationError } from '../../src/index.ts';
import type { Log } from '../../src/log/index.ts';
import type { Store } from '../../src/store/index.ts';
import {
  alertRowId,
  topics as defaultTopics,
  type MarketsTopics,
  readModels,
  type WindowView,
  windowMs,
  windowRowId,
} from './analytics.ts';
import { parseTradeLine } from './csv.ts';
import { encodeSymbolInfo, parseSymbolInfo } from './reference.ts';
import { encodeTrade, symbolPattern, type Trade } from './trade.ts';

/** Reading market data: windows, latest, range, movers, moving minute, alerts, the live feed, job status. */
export const MARKETS_READ_SCOPE = 'markets:read';
/** Writing it: trades (POST /markets/trades) and reference data (PUT /markets/reference/{symbol}). */
export const MARKETS_WRITE_SCOPE = 'markets:write';

const maxTradesPerBatch = 10_000;
const maxBodyBytes = 2 * 1024 * 1024;
const maxRangeWindows = 1000;
const maxRangeAlerts = 1000;
const maxSseClients = 100;
/** A live-feed client this far behind (bytes unsent) is dropped rather than buffered without bound. */
const maxSseBacklogBytes = 1024 * 1024;
const problemTypeBase = 'urn:meridian:problem:';
const read = { scopes: [MARKETS_READ_SCOPE] } as const;
const write = { scopes: [MARKETS_WRITE_SCOPE] } as const;

// ---------------------------------------------------------------------------------------------
// Schemas: they validate requests, type the handlers and make the OpenAPI document.

const maxTimeMs = 8_640_000_000_000;
const timeMs = Type.Integer({
  minimum: 0,
  maximum: maxTimeMs,
  description: 'Event time (ms since the epoch)',
});
const symbolParams = Type.Object(
  {
    symbol: Type.String({ pattern: symbolPattern.source, description: 'A symbol: A-Z, 0-9, ".", "_", "-"' }),
  },
  { additionalProperties: false },
);
const rangeQuery = Type.Object({ fromMs: timeMs, toMs: timeMs });
/** One field of a trade: text or a number, checked as a line of the trades CSV is. */
const tradeField = Type.Union([Type.String({ maxLength: 64 }), Type.Number()]);
const tradesBody = Type.Object(
  {
    trades: Type.Array(
      Type.Object(
        { timestampMs: tradeField, symbol: tradeField, price: tradeField, qty: tradeField },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: maxTradesPerBatch },
    ),
  },
  { additionalProperties: false },
);
const referenceBody = Type.Object(
  {
    sector: Type.String({ maxLength: 64, description: '1-32 letters, spaces, "&" or "-"' }),
    tickSize: Type.String({ maxLength: 16, description: 'Dollars with two decimals: "0.01" to "1000.00"' }),
    validFromMs: Type.Optional(
      Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Default: now' }),
    ),
  },
  { additionalProperties: false },
);
/** Answers are the read models' rows as they are: documented, not reshaped. */
const anyObject = { type: 'object', additionalProperties: true } as const;
const windowList = (key: string) =>
  ({
    type: 'object',
    required: [key],
    properties: { [key]: { type: 'array', items: anyObject } },
    additionalProperties: true,
  }) as const;

function invalid(detail: string): HttpProblem {
  return new HttpProblem({
    status: 400,
    title: 'The request is invalid',
    type: `${problemTypeBase}validation-failed`,
    detail,
  });
}

function notFound(detail: string): HttpProblem {
  return new HttpProblem({ status: 404, title: 'Not found', type: `${problemTypeBase}not-found`, detail });
}

/** A range of at most maxRangeWindows windows, `toMs` not before `fromMs`. */
function checkRange(fromMs: number, toMs: number): void {
  if (toMs < fromMs)
    throw invalid(`'toMs' must not be before 'fromMs' (${fromMs}): current value is ${toMs}`);
  if ((toMs - fromMs) / windowMs > maxRangeWindows) {
    throw invalid(
      `A range may span at most ${maxRangeWindows} windows (${(maxRangeWindows * windowMs) / 1000} s)`,
    );
  }
}

/** Checks each trade of a (schema-valid) batch as a CSV line: every trade or none (a bad one names its index). */
function parseTradeBatch(body: { trades: ReadonlyArray<Record<string, string | number>> }): Trade[] {
  return body.trades.map((trade, index) => {
    const fields = [trade.timestampMs, trade.symbol, trade.price, trade.qty];
    try {
      return parseTradeLine(fields.map(String).join(','), index);
    } catch (error) {
      if (error instanceof ValidationError)
        throw invalid(`trades[${index}]: ${error.message.replace(/^Trades CSV line \d+: /, '')}`);
      throw error;
    }
  });
}

export interface MarketsApiOptions {
  readonly store: Store;
  readonly log: Log;
  readonly latest: Cache<WindowView | null>;
  /** @default topics */
  readonly topics?: MarketsTopics;
  /** The analytics job's metrics and per-partition lag, for GET /markets/job. */
  readonly jobStatus: () => Promise<unknown>;
}

export interface MarketsHttpOptions extends MarketsApiOptions {
  /**
   * Who may call the API (docs/security.md): API keys or bearer tokens; a customer credential
   * naming no scopes gets `markets:read`. `false` turns authentication off (every caller an
   * operator), for local experiments only. Required: no default is safe.
   */
  readonly auth: AuthOptions | false;
}

export interface MarketsApi {
  readonly gateway: Gateway;
  /** Sends closed windows to every live-feed client. */
  broadcast(windows: readonly WindowView[]): void;
  /** Listens on 127.0.0.1 (loopback Host names only); returns the base URL. */
  listen(port: number): Promise<string>;
  /** Ends the live feeds, then drains the gateway. */
  close(): Promise<void>;
}

/** The markets API on a gateway of its own. */
export async function createMarketsApi(options: MarketsHttpOptions): Promise<MarketsApi> {
  const gateway = await createGateway({
    title: 'Meridian markets',
    version: '1.0.0',
    description:
      'Real-time market analytics: trades in, 5 s windows per symbol, the moving minute, alerts and a live feed of closed windows out.',
    auth: options.auth === false ? false : { defaultCustomerScopes: [MARKETS_READ_SCOPE], ...options.auth },
  });
  registerWriteRoutes(gateway, options);
  registerSymbolRoutes(gateway, options);
  registerSummaryRoutes(gateway, options);
  const feed = registerLiveFeed(gateway);
  return {
    gateway,
    broadcast: feed.broadcast,
    listen: (port) => gateway.listen({ host: '127.0.0.1', port }),
    async close() {
      feed.close();
      await gateway.close();
    },
  };
}

function registerWriteRoutes(gateway: Gateway, options: MarketsApiOptions): void {
  const { store, log } = options;
  const topics = options.topics ?? defaultTopics;
  gateway.route({
    method: 'POST',
    url: '/markets/trades',
    access: write,
    bodyLimitBytes: maxBodyBytes,
    schema: {
      summary: 'Appends a batch of 1 to 10,000 trades, validated all or nothing',
      description:
        'A bad trade refuses the whole batch; the 400 names its index and field. Prices are dollars with at most two decimals ("187.25").',
      tags: ['trades'],
      body: tradesBody,
      response: { 202: { type: 'object', properties: { accepted: { type: 'integer' } } } },
    },
    handler: async (request, reply) => {
      const records = parseTradeBatch(request.body).map(encodeTrade);
      // Embedded, the log shares the store's database: one transaction appends all or none. On
      // Kafka the log places and checks every record before it sends any.
      if (log.backend === 'sqlite') await store.transaction(() => log.append(topics.trades, records));
      else await log.append(topics.trades, records);
      return reply.code(202).send({ accepted: records.length });
    },
  });

  gateway.route({
    method: 'PUT',
    url: '/markets/reference/:symbol',
    access: write,
    bodyLimitBytes: 1024,
    schema: {
      summary: "Sets a symbol's reference data (sector, tick size), valid from an event time on",
      tags: ['reference'],
      params: Type.Object({ symbol: Type.String({ minLength: 1, maxLength: 64 }) }),
      body: referenceBody,
      response: { 202: anyObject },
    },
    handler: async (request, reply) => {
      const { symbol } = request.params;
      const validFromMs = request.body.validFromMs ?? systemClock.now();
      let info: ReturnType<typeof parseSymbolInfo>;
      try {
        info = parseSymbolInfo(symbol, request.body);
      } catch (error) {
        if (error instanceof ValidationError) throw invalid(error.message);
        throw error;
      }
      await log.append(topics.reference, [encodeSymbolInfo(symbol, info, validFromMs)]);
      return reply.code(202).send({ symbol, ...info, validFromMs });
    },
  });
}

/** A symbol's latest window, moving minute and range of windows. */
function registerSymbolRoutes(gateway: Gateway, options: MarketsApiOptions): void {
  const { store, latest } = options;
  gateway.route({
    method: 'GET',
    url: '/markets/symbols/:symbol/latest',
    access: read,
    schema: {
      summary: "A symbol's last closed window, through the cache",
      tags: ['windows'],
      params: symbolParams,
      response: { 200: anyObject },
    },
    handler: async (request) => {
      const window = await latest.get(request.params.symbol);
      if (window === null) throw notFound(`No closed window for symbol '${request.params.symbol}' yet`);
      return window;
    },
  });

  gateway.route({
    method: 'GET',
    url: '/markets/symbols/:symbol/moving',
    access: read,
    schema: {
      summary: "A symbol's last moving minute: movingVwap, lastVwap, z, sector",
      tags: ['windows'],
      params: symbolParams,
      response: { 200: anyObject },
    },
    handler: async (request) => {
      const { symbol } = request.params;
      const row = await store.read((tx) => tx.entities.get(readModels.moving, symbol));
      if (row === null) throw notFound(`No moving minute for symbol '${symbol}' yet`);
      return row.state;
    },
  });

  gateway.route({
    method: 'GET',
    url: '/markets/symbols/:symbol/windows',
    access: read,
    schema: {
      summary: `A symbol's closed windows starting in [fromMs, toMs), at most ${maxRangeWindows}`,
      tags: ['windows'],
      params: symbolParams,
      querystring: rangeQuery,
      response: { 200: windowList('windows') },
    },
    handler: async (request) => {
      const { symbol } = request.params;
      const { fromMs, toMs } = request.query;
      checkRange(fromMs, toMs);
      const rows = await store.read((tx) =>
        tx.entities.list(readModels.windows, {
          afterId: windowRowId(symbol, fromMs - 1),
          limit: maxRangeWindows,
        }),
      );
      const last = windowRowId(symbol, toMs);
      return { symbol, windows: rows.filter((row) => row.id < last).map((row) => row.state) };
    },
  });
}

/** Alerts, movers and the job's status. */
function registerSummaryRoutes(gateway: Gateway, options: MarketsApiOptions): void {
  const { store } = options;
  gateway.route({
    method: 'GET',
    url: '/markets/alerts',
    access: read,
    schema: {
      summary: `Alerts whose minute ends in [fromMs, toMs), by time then symbol, at most ${maxRangeAlerts}`,
      tags: ['alerts'],
      querystring: rangeQuery,
      response: { 200: windowList('alerts') },
    },
    handler: async (request) => {
      const { fromMs, toMs } = request.query;
      checkRange(fromMs, toMs);
      const rows = await store.read((tx) =>
        tx.entities.list(readModels.alerts, { afterId: alertRowId(fromMs - 1, '~'), limit: maxRangeAlerts }),
      );
      const last = alertRowId(toMs, '');
      return { alerts: rows.filter((row) => row.id < last).map((row) => row.state) };
    },
  });

  gateway.route({
    method: 'GET',
    url: '/markets/movers',
    access: read,
    schema: {
      summary: 'The latest windows by |close - open| / open',
      tags: ['windows'],
      querystring: Type.Object({
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
      }),
      response: { 200: windowList('movers') },
    },
    handler: async (request) => {
      const rows = await store.read((tx) => tx.entities.list(readModels.latest, { limit: 1000 }));
      const movers = rows
        .map((row) => row.state as unknown as WindowView)
        .map((w) => ({
          ...w,
          changePercent: Math.round(((w.closeCents - w.openCents) / w.openCents) * 1_000_000) / 10_000,
        }))
        .sort(
          (a, b) => Math.abs(b.changePercent) - Math.abs(a.changePercent) || (a.symbol < b.symbol ? -1 : 1),
        );
      return { movers: movers.slice(0, request.query.limit ?? 10) };
    },
  });

  gateway.route({
    method: 'GET',
    url: '/markets/job',
    access: read,
    schema: {
      summary: "The analytics job's metrics and lag per partition (a cluster node: the partitions it holds)",
      tags: ['operations'],
      response: { 200: anyObject },
    },
    handler: async () => options.jobStatus(),
  });
}

/** GET /markets/stream: closed windows as Server-Sent Events, to at most maxSseClients clients. */
function registerLiveFeed(gateway: Gateway): Pick<MarketsApi, 'broadcast'> & { close(): void } {
  const clients = new Set<ServerResponse>();
  gateway.route({
    method: 'GET',
    url: '/markets/stream',
    access: read,
    // A stream stays open while its client watches: it would hold a shedder's permit all that time.
    loadShedder: false,
    schema: {
      summary: 'Closed windows as they close: a stream of Server-Sent Events',
      description: `\`text/event-stream\`: one \`event: window\` per closed window, its data the window. At most ${maxSseClients} clients (503 beyond); a client ${maxSseBacklogBytes / 1024 / 1024} MiB behind is dropped.`,
      tags: ['windows'],
    },
    handler: async (request, reply) => {
      const headers = { 'content-type': 'text/event-stream', 'cache-control': 'no-store' };
      // HEAD (Fastify serves it for every GET): the stream's headers, and no stream.
      if (request.method === 'HEAD') return reply.header('content-type', headers['content-type']).send();
      if (clients.size >= maxSseClients) {
        throw new HttpProblem({
          status: 503,
          title: 'The service is overloaded',
          type: `${problemTypeBase}too-many-streams`,
          detail: `At most ${maxSseClients} live-feed clients; retry later.`,
          headers: { 'retry-after': '5' },
        });
      }
      reply.hijack();
      const response = reply.raw;
      response.writeHead(200, { ...headers, connection: 'keep-alive', 'x-accel-buffering': 'no' });
      response.write(': markets windows as they close\n\n');
      clients.add(response);
      response.once('close', () => clients.delete(response));
    },
  });
  return {
    broadcast(windows) {
      if (clients.size === 0 || windows.length === 0) return;
      const text = windows.map((w) => `event: window\ndata: ${JSON.stringify(w)}\n\n`).join('');
      for (const client of clients) {
        if (client.writableLength > maxSseBacklogBytes) {
          client.destroy();
          clients.delete(client);
        } else {
          client.write(text);
        }
      }
    },
    close() {
      for (const client of clients) client.end();
      clients.clear();
    },
  };
}
