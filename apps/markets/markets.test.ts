// The markets HTTP contract on the embedded shape: trades posted in a batch are validated (a bad
// one refuses the whole batch, naming it), flow through the 5 s windows, and come back as the
// latest window per symbol (through the cache), a time range of windows, top movers, the moving
// minute, alerts and a Server-Sent Events message as each window closes. Also: the replay CLI's canonical output.
// Every request carries an operator's bearer token (authorization.test.ts checks who may call what).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueToken } from '../../src/http/index.ts';
import type { WindowView } from './analytics.ts';
import { type RunningMarkets, startMarkets } from './markets.ts';
import { replay } from './replay.ts';
import { vwapText } from './trade.ts';

const directory = mkdtempSync(join(tmpdir(), 'meridian-markets-'));
let markets: RunningMarkets;
const closed: WindowView[] = [];
const secret = randomBytes(32).toString('base64url');
let headers: Record<string, string>;

/** fetch with the operator's token (and a JSON content type when there is a body). */
function fetch(url: string, init: RequestInit = {}): Promise<Response> {
  return globalThis.fetch(url, {
    ...init,
    headers: { ...headers, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
  });
}

beforeAll(async () => {
  headers = {
    authorization: `Bearer ${await issueToken({ secret, subject: 'markets-test', role: 'operator' })}`,
  };
  markets = await startMarkets({
    path: join(directory, 'markets.db'),
    auth: { jwt: { secret } },
    port: 0,
    ratePerSecond: 0,
    seed: 1,
    symbols: 10,
    disorderMs: 0,
    idleTimeoutMs: 1,
    onWindows: (windows) => void closed.push(...windows),
  });
});
afterAll(async () => {
  await markets?.stop();
  rmSync(directory, { recursive: true, force: true });
});

async function post(trades: unknown[]): Promise<Response> {
  return fetch(`${markets.url}/markets/trades`, { method: 'POST', body: JSON.stringify({ trades }) });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let attempt = 0; attempt < 400; attempt++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('markets HTTP API', () => {
  it('refuses a batch with one bad trade, naming it, and appends none of it', async () => {
    const response = await post([
      { timestampMs: 1000, symbol: 'AAA', price: '10.00', qty: 5 },
      { timestampMs: 1000, symbol: 'AAA', price: '10.001', qty: 5 },
    ]);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { detail: string }).detail).toMatch(
      /^trades\[1\]: price must be dollars with at most two decimals/,
    );
    expect((await post([])).status).toBe(400);
    const tooMany = Array.from({ length: 10_001 }, () => ({
      timestampMs: 1,
      symbol: 'A',
      price: '1.00',
      qty: 1,
    }));
    const refused = await post(tooMany);
    expect(refused.status).toBe(400);
    // The validation problem names the first invalid field only: bounded, however large the batch.
    expect(((await refused.json()) as { errors: unknown[] }).errors).toHaveLength(1);
    expect((await fetch(`${markets.url}/markets/trades`, { method: 'POST', body: '{' })).status).toBe(400);
  });

  it('takes reference data per symbol, validated, into the table windows are enriched from', async () => {
    const put = (symbol: string, body: unknown) =>
      fetch(`${markets.url}/markets/reference/${symbol}`, { method: 'PUT', body: JSON.stringify(body) });
    expect((await put('AAA', { sector: 'Technology', tickSize: '0.01', validFromMs: 0 })).status).toBe(202);
    // BBB's row is valid only from 6 s on: its first window (ending before) meets none.
    expect((await put('BBB', { sector: 'Energy', tickSize: '0.05', validFromMs: 6000 })).status).toBe(202);
    const bad = await put('BBB', { sector: 'Energy', tickSize: '0.001' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { detail: string }).detail).toMatch(/^'tickSize' must be dollars/);
    expect((await put('bad%20symbol', { sector: 'Energy', tickSize: '0.01' })).status).toBe(400);
    expect((await put('AAA', { sector: 'Energy', tickSize: '0.01', validFromMs: -1 })).status).toBe(400);
  });

  it('serves closed windows: latest (cached), a range, movers, and the live feed', async () => {
    const feed = await fetch(`${markets.url}/markets/stream`);
    const reader = feed.body!.getReader();
    const accepted = await post([
      { timestampMs: 1000, symbol: 'AAA', price: '10.00', qty: 100 },
      { timestampMs: 2000, symbol: 'AAA', price: '11.00', qty: 300 },
      { timestampMs: 3000, symbol: 'BBB', price: '20.00', qty: 1 },
      { timestampMs: 6000, symbol: 'AAA', price: '12.00', qty: 1 },
      { timestampMs: 7000, symbol: 'BBB', price: '19.00', qty: 1 },
      { timestampMs: 12_000, symbol: 'AAA', price: '12.00', qty: 1 },
      { timestampMs: 12_000, symbol: 'BBB', price: '19.00', qty: 1 },
    ]);
    expect(accepted.status).toBe(202);
    const latest = await until('the latest AAA window', async () => {
      const response = await fetch(`${markets.url}/markets/symbols/AAA/latest`);
      const body = response.status === 200 ? ((await response.json()) as WindowView) : undefined;
      return body?.startMs === 5000 ? body : undefined;
    });
    expect(latest).toMatchObject({
      symbol: 'AAA',
      count: 1,
      volume: 1,
      vwap: '12.0000',
      sector: 'Technology',
      tickSizeCents: 1,
    });
    const range = (await (
      await fetch(`${markets.url}/markets/symbols/AAA/windows?fromMs=0&toMs=10000`)
    ).json()) as { windows: WindowView[] };
    expect(
      range.windows.map((w: WindowView) => [w.startMs, w.count, w.vwap, w.openCents, w.closeCents]),
    ).toEqual([
      [0, 2, vwapText(100 * 1000 + 300 * 1100, 400), 1000, 1100],
      [5000, 1, '12.0000', 1200, 1200],
    ]);
    const movers = (await (await fetch(`${markets.url}/markets/movers?limit=1`)).json()) as {
      movers: unknown[];
    };
    expect(movers.movers).toHaveLength(1);
    // The moving minute: the last sliding window that closed, [-50 s, 10 s), carries AAA's sector.
    const moving = await fetch(`${markets.url}/markets/symbols/AAA/moving`);
    expect(moving.status).toBe(200);
    expect(await moving.json()).toMatchObject({ symbol: 'AAA', endMs: 10_000, sector: 'Technology' });
    expect((await fetch(`${markets.url}/markets/symbols/ZZZ/moving`)).status).toBe(404);
    // Too few slices for a z-score: no alerts.
    expect(await (await fetch(`${markets.url}/markets/alerts?fromMs=0&toMs=100000`)).json()).toEqual({
      alerts: [],
    });
    expect((await fetch(`${markets.url}/markets/alerts?fromMs=0&toMs=99999999`)).status).toBe(400);
    let feedText = '';
    for (let chunk = 0; chunk < 20 && !feedText.includes('"startMs":5000'); chunk++) {
      feedText += new TextDecoder().decode((await reader.read()).value);
    }
    await reader.cancel();
    expect(feedText).toContain(': markets windows as they close');
    expect(feedText).toMatch(/event: window\ndata: \{"symbol":"AAA","startMs":0,/);
    expect(closed.map((w) => `${w.symbol}@${w.startMs}:${w.sector}`).sort()).toEqual([
      'AAA@0:Technology',
      'AAA@5000:Technology',
      'BBB@0:null',
      'BBB@5000:Energy',
    ]);
    expect((await fetch(`${markets.url}/markets/symbols/ZZZ/latest`)).status).toBe(404);
    const status = (await (await fetch(`${markets.url}/markets/job`)).json()) as {
      recordsIn: number;
      lag: number[];
    };
    expect(status.recordsIn).toBe(7);
    expect(status.lag).toEqual([0, 0, 0, 0]);
    expect((await fetch(`${markets.url}/markets/symbols/AAA/windows?fromMs=x&toMs=1`)).status).toBe(400);
  });
  it('serves at most 100 live-feed clients at once', async () => {
    const feeds = await Promise.all(
      Array.from({ length: 100 }, () => fetch(`${markets.url}/markets/stream`)),
    );
    expect(feeds.map((feed) => feed.status)).toEqual(feeds.map(() => 200));
    const refused = await fetch(`${markets.url}/markets/stream`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    for (const feed of feeds) await feed.body!.cancel();
  });
});

describe('markets replay', () => {
  it('writes canonical windows and late trades per the issue semantics', async () => {
    const input = join(directory, 'in.csv');
    writeFileSync(
      input,
      'ts_ms,symbol,price,qty\n1000,B,1.50,2\n1000,A,2.00,1\n4000,A,3.00,1\n9000,A,1.00,1\n4999,A,9.00,1\n12000,A,1.00,1\n',
    );
    const output = join(directory, 'out.csv');
    const lateOutput = join(directory, 'late.csv');
    const summary = await replay({ input, output, lateOutput, disorderMs: 2000, allowedLatenessMs: 0 });
    expect(summary).toEqual({ trades: 6, windows: 4, late: 1 });
    expect(readFileSync(output, 'utf8')).toBe(
      'window_start_ms,symbol,count,volume,vwap,open,high,low,close\n0,A,2,2,2.5000,2.00,3.00,2.00,3.00\n0,B,1,2,1.5000,1.50,1.50,1.50,1.50\n5000,A,1,1,1.0000,1.00,1.00,1.00,1.00\n10000,A,1,1,1.0000,1.00,1.00,1.00,1.00\n',
    );
    // 4999 arrives after 9000: its window [0, 5000) ends at 5000 and 5000 + 2000 <= 9000.
    expect(readFileSync(lateOutput, 'utf8')).toBe('ts_ms,symbol,price,qty\n4999,A,9.00,1\n');
  });

  it('refuses a malformed line with its number', async () => {
    const input = join(directory, 'bad.csv');
    writeFileSync(input, 'ts_ms,symbol,price,qty\n1000,A,1.00,1\n1000,A,abc,1\n');
    await expect(
      replay({
        input,
        output: join(directory, 'o.csv'),
        lateOutput: join(directory, 'l.csv'),
        disorderMs: 0,
        allowedLatenessMs: 0,
      }),
    ).rejects.toThrow(/line 3: price/);
  });
});
