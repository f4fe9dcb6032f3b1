// The markets HTTP API: batch trade ingestion with validation, the latest window per symbol
// (through the cache), a time range of windows, top movers, the moving minute and a time range
// of alerts (from the read model), a Server-Sent Events stream of windows as they close, and
// per-symbol reference data (sector, tick size) written to the table the windows are enriched
// from. The same API serves both shapes: every answer but the live feed comes from the store (and
// the cache in front of it), which every node of the cluster shares.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Cache } from '../../src/cache/index.ts';
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
import { encodeSymbolInfo, parseSymbolInfo, type SymbolInfo } from './reference.ts';
import { encodeTrade, type Trade } from './trade.ts';

export const maxTradesPerBatch = 10_000;
const maxBodyBytes = 2 * 1024 * 1024;
const maxRangeWindows = 1000;
const maxRangeAlerts = 1000;
const maxSseClients = 100;
/** A live-feed client this far behind (bytes unsent) is dropped rather than buffered without bound. */
const maxSseBacklogBytes = 1024 * 1024;

export interface MarketsApi {
  readonly server: Server;
  /** Sends closed windows to every live-feed client. */
  broadcast(windows: readonly WindowView[]): void;
  close(): Promise<void>;
}

class HttpProblem extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': status >= 400 ? 'application/problem+json' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function integerParam(
  url: URL,
  name: string,
  fallback: number | undefined,
  min: number,
  max: number,
): number {
  const text = url.searchParams.get(name);
  if (text === null) {
    if (fallback === undefined) throw new HttpProblem(400, `Query parameter '${name}' is required`);
    return fallback;
  }
  if (!/^\d{1,15}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new HttpProblem(
      400,
      `Query parameter '${name}' must be an integer in [${min}, ${max}]: current value is '${text.slice(0, 32)}'`,
    );
  }
  return Number(text);
}

/** `fromMs` and `toMs` (required): a range of at most maxRangeWindows windows. */
function timeRange(url: URL): { fromMs: number; toMs: number } {
  const fromMs = integerParam(url, 'fromMs', undefined, 0, 8_640_000_000_000);
  const toMs = integerParam(url, 'toMs', undefined, fromMs, 8_640_000_000_000);
  if ((toMs - fromMs) / windowMs > maxRangeWindows) {
    throw new HttpProblem(
      400,
      `A range may span at most ${maxRangeWindows} windows (${(maxRangeWindows * windowMs) / 1000} s)`,
    );
  }
  return { fromMs, toMs };
}

const tradesExample =
  '{"trades": [{"timestampMs": 1767623400000, "symbol": "AAPL", "price": "187.25", "qty": 100}]}';

async function readBody(req: IncomingMessage, example: string): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw new HttpProblem(413, `The body must be at most ${maxBodyBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpProblem(400, `The body must be JSON: ${example}`);
  }
}

/** Validates a batch: every trade or none (a bad one names its index and field). */
export function parseTradeBatch(body: unknown): Trade[] {
  const list = (body as { trades?: unknown } | null)?.trades;
  if (!Array.isArray(list) || list.length === 0 || list.length > maxTradesPerBatch) {
    throw new HttpProblem(400, `'trades' must be an array of 1 to ${maxTradesPerBatch} trades`);
  }
  return list.map((item, index) => {
    const trade = item as { timestampMs?: unknown; symbol?: unknown; price?: unknown; qty?: unknown } | null;
    const fields = [trade?.timestampMs, trade?.symbol, trade?.price, trade?.qty];
    if (
      trade === null ||
      typeof trade !== 'object' ||
      fields.some((f) => typeof f !== 'string' && typeof f !== 'number')
    ) {
      throw new HttpProblem(
        400,
        `trades[${index}] must be an object with timestampMs, symbol, price (string "187.25") and qty`,
      );
    }
    try {
      return parseTradeLine(fields.map(String).join(','), index);
    } catch (error) {
      if (error instanceof ValidationError)
        throw new HttpProblem(
          400,
          `trades[${index}]: ${error.message.replace(/^Trades CSV line \d+: /, '')}`,
        );
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

export function createMarketsApi(options: MarketsApiOptions): MarketsApi {
  const { store, log, latest } = options;
  const topics = options.topics ?? defaultTopics;
  const clients = new Set<ServerResponse>();

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
    if (req.method === 'POST' && path === '/markets/trades') {
      const trades = parseTradeBatch(await readBody(req, tradesExample));
      const records = trades.map(encodeTrade);
      // Embedded, the log shares the store's database: one transaction appends all or none. On
      // Kafka the log places and checks every record before it sends any.
      if (log.backend === 'sqlite') await store.transaction(() => log.append(topics.trades, records));
      else await log.append(topics.trades, records);
      return send(res, 202, { accepted: trades.length });
    }
    const referenceRoute = /^\/markets\/reference\/([^/]{1,64})$/.exec(path);
    if (req.method === 'PUT' && referenceRoute !== null) {
      const symbol = decodeURIComponent(referenceRoute[1]!);
      const body = await readBody(req, '{"sector": "Technology", "tickSize": "0.01", "validFromMs": 0}');
      const validFromMs = (body as { validFromMs?: unknown } | null)?.validFromMs ?? systemClock.now();
      if (!Number.isSafeInteger(validFromMs) || (validFromMs as number) < 0) {
        throw new HttpProblem(
          400,
          `'validFromMs' must be a non-negative integer (ms): current value is ${JSON.stringify(validFromMs).slice(0, 32)}`,
        );
      }
      let info: SymbolInfo;
      try {
        info = parseSymbolInfo(symbol, body);
      } catch (error) {
        if (error instanceof ValidationError) throw new HttpProblem(400, error.message);
        throw error;
      }
      await log.append(topics.reference, [encodeSymbolInfo(symbol, info, validFromMs as number)]);
      return send(res, 202, { symbol, ...info, validFromMs });
    }
    if (req.method !== 'GET') throw new HttpProblem(405, `${req.method} is not allowed on ${path}`);
    const symbolRoute = /^\/markets\/symbols\/([A-Z0-9._-]{1,16})\/(latest|windows|moving)$/.exec(path);
    if (symbolRoute !== null) {
      const symbol = symbolRoute[1]!;
      if (symbolRoute[2] === 'latest') {
        const window = await latest.get(symbol);
        if (window === null) throw new HttpProblem(404, `No closed window for symbol '${symbol}' yet`);
        return send(res, 200, window);
      }
      if (symbolRoute[2] === 'moving') {
        const row = await store.read((tx) => tx.entities.get(readModels.moving, symbol));
        if (row === null) throw new HttpProblem(404, `No moving minute for symbol '${symbol}' yet`);
        return send(res, 200, row.state);
      }
      const { fromMs, toMs } = timeRange(url);
      const rows = await store.read((tx) =>
        tx.entities.list(readModels.windows, {
          afterId: windowRowId(symbol, fromMs - 1),
          limit: maxRangeWindows,
        }),
      );
      const last = windowRowId(symbol, toMs);
      return send(res, 200, { symbol, windows: rows.filter((row) => row.id < last).map((row) => row.state) });
    }
    if (path === '/markets/alerts') {
      const { fromMs, toMs } = timeRange(url);
      const rows = await store.read((tx) =>
        tx.entities.list(readModels.alerts, { afterId: alertRowId(fromMs - 1, '~'), limit: maxRangeAlerts }),
      );
      const last = alertRowId(toMs, '');
      return send(res, 200, { alerts: rows.filter((row) => row.id < last).map((row) => row.state) });
    }
    if (path === '/markets/movers') {
      const limit = integerParam(url, 'limit', 10, 1, 100);
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
      return send(res, 200, { movers: movers.slice(0, limit) });
    }
    if (path === '/markets/stream') return openFeed(req, res);
    if (path === '/markets/job') return send(res, 200, await options.jobStatus());
    throw new HttpProblem(404, `No route ${path}: see docs/markets.md`);
  }

  function openFeed(req: IncomingMessage, res: ServerResponse): void {
    if (clients.size >= maxSseClients)
      throw new HttpProblem(503, `At most ${maxSseClients} live-feed clients`);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write(': markets windows as they close\n\n');
    clients.add(res);
    req.once('close', () => clients.delete(res));
  }

  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      const status = error instanceof HttpProblem ? error.status : 500;
      const detail = error instanceof HttpProblem ? error.message : 'Internal error';
      if (!res.headersSent)
        send(res, status, {
          type: 'about:blank',
          title: status === 500 ? 'Internal Server Error' : 'Bad Request',
          status,
          detail,
        });
      else res.end();
    });
  });

  return {
    server,
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
    async close() {
      for (const client of clients) client.end();
      clients.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
