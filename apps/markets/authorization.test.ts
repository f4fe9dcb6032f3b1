// Who may call each markets route, on the embedded app over real HTTP: nobody without a
// credential; a reader (`markets:read`) every reading route and no write; a writer
// (`markets:write`) the writes and no read; an operator everything. A request naming a foreign
// Host (a DNS-rebinding page) is refused whatever its credential, and /openapi.json says that
// every markets route needs a credential.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../src/children.fixture.ts';
import { issueToken, type Role } from '../../src/http/index.ts';
import { MARKETS_READ_SCOPE, MARKETS_WRITE_SCOPE } from './http-api.ts';
import { type RunningMarkets, startMarkets } from './markets.ts';

const directory = mkdtempSync(join(tmpdir(), 'meridian-markets-auth-'));
const secret = randomBytes(32).toString('base64url');
let markets: RunningMarkets;

type Caller = 'anonymous' | 'reader' | 'writer' | 'unscoped' | 'operator';
const credentials: Record<Caller, Record<string, string>> = {
  anonymous: {},
  reader: {},
  writer: {},
  unscoped: {},
  operator: {},
};

async function bearer(subject: string, role: Role, scopes?: string[]): Promise<Record<string, string>> {
  const token = await issueToken({ secret, subject, role, ...(scopes === undefined ? {} : { scopes }) });
  return { authorization: `Bearer ${token}` };
}

beforeAll(async () => {
  credentials.reader = await bearer('reader', 'customer', [MARKETS_READ_SCOPE]);
  credentials.writer = await bearer('writer', 'customer', [MARKETS_WRITE_SCOPE]);
  // A customer credential naming scopes of another app: neither reads nor writes.
  credentials.unscoped = await bearer('shopper', 'customer', ['orders:read']);
  credentials.operator = await bearer('ops', 'operator');
  markets = await startMarkets({
    path: join(directory, 'markets.db'),
    auth: { jwt: { secret } },
    port: 0,
    ratePerSecond: 0,
    seed: 1,
    symbols: 10,
    disorderMs: 0,
    idleTimeoutMs: 1,
  });
});
afterAll(async () => {
  await markets?.stop();
  rmSync(directory, { recursive: true, force: true });
});

interface Row {
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly path: string;
  readonly body?: unknown;
  readonly kind: 'read' | 'write';
}

const trade = { timestampMs: 1000, symbol: 'AAA', price: '10.00', qty: 1 };
const routes: readonly Row[] = [
  { method: 'POST', path: '/markets/trades', body: { trades: [trade] }, kind: 'write' },
  {
    method: 'PUT',
    path: '/markets/reference/AAA',
    body: { sector: 'Technology', tickSize: '0.01', validFromMs: 0 },
    kind: 'write',
  },
  { method: 'GET', path: '/markets/symbols/AAA/latest', kind: 'read' },
  { method: 'GET', path: '/markets/symbols/AAA/windows?fromMs=0&toMs=10000', kind: 'read' },
  { method: 'GET', path: '/markets/symbols/AAA/moving', kind: 'read' },
  { method: 'GET', path: '/markets/movers', kind: 'read' },
  { method: 'GET', path: '/markets/alerts?fromMs=0&toMs=10000', kind: 'read' },
  { method: 'GET', path: '/markets/job', kind: 'read' },
  { method: 'GET', path: '/markets/stream', kind: 'read' },
];

/** The status of one call (a live feed that opened is closed at once). */
async function call(row: Row, caller: Caller): Promise<Response> {
  const response = await fetch(`${markets.url}${row.path}`, {
    method: row.method,
    headers: {
      ...credentials[caller],
      ...(row.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(row.body === undefined ? {} : { body: JSON.stringify(row.body) }),
  });
  await response.body?.cancel();
  return response;
}

const allowed: Record<Caller, ReadonlyArray<Row['kind']>> = {
  anonymous: [],
  reader: ['read'],
  writer: ['write'],
  unscoped: [],
  operator: ['read', 'write'],
};

describe('markets authorization', () => {
  for (const caller of Object.keys(allowed) as Caller[]) {
    it(`lets ${caller} call ${allowed[caller].join(' and ') || 'nothing'}`, async () => {
      for (const row of routes) {
        const { status, headers } = await call(row, caller);
        const where = `${caller} ${row.method} ${row.path}`;
        if (allowed[caller].includes(row.kind)) {
          // 404: no window closed yet for AAA (the route ran, past its access check).
          expect([200, 202, 404], where).toContain(status);
        } else if (caller === 'anonymous') {
          expect(status, where).toBe(401);
          expect(headers.get('www-authenticate'), where).toMatch(/^Bearer realm="meridian"/);
        } else {
          expect(status, where).toBe(403);
          expect(headers.get('content-type'), where).toContain('application/problem+json');
        }
      }
    });
  }

  it('gives a customer credential naming no scopes markets:read only', async () => {
    const headers = await bearer('plain', 'customer');
    expect((await fetch(`${markets.url}/markets/movers`, { headers })).status).toBe(200);
    const put = await fetch(`${markets.url}/markets/reference/AAA`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ sector: 'Energy', tickSize: '0.01' }),
    });
    expect(put.status).toBe(403);
  });

  it('refuses a foreign Host (DNS rebinding) even with an operator credential', async () => {
    const { port } = new URL(markets.url);
    // fetch() may not set Host: a raw request does, as a rebinding page's browser would.
    const status = (host: string) =>
      new Promise<number>((done, fail) => {
        const request = httpRequest(
          `${markets.url}/markets/trades`,
          {
            method: 'POST',
            headers: { ...credentials.operator, host, 'content-type': 'application/json' },
          },
          (response) => {
            response.resume();
            done(response.statusCode ?? 0);
          },
        );
        request.on('error', fail);
        request.end(JSON.stringify({ trades: [trade] }));
      });
    expect(await status(`rebind.example:${port}`)).toBe(421);
    expect(await status(`localhost:${port}`)).toBe(202);
  });

  it('documents every markets route in /openapi.json as needing a credential', async () => {
    const document = (await (await fetch(`${markets.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    const marketsPaths = Object.entries(document.paths).filter(([path]) => path.startsWith('/markets/'));
    expect(marketsPaths.map(([path]) => path).sort()).toEqual([
      '/markets/alerts',
      '/markets/job',
      '/markets/movers',
      '/markets/reference/{symbol}',
      '/markets/stream',
      '/markets/symbols/{symbol}/latest',
      '/markets/symbols/{symbol}/moving',
      '/markets/symbols/{symbol}/windows',
      '/markets/trades',
    ]);
    for (const [path, operations] of marketsPaths) {
      for (const [method, operation] of Object.entries(operations)) {
        expect(operation.security, `${method} ${path}`).toEqual([{ bearer: [] }, { apiKey: [] }]);
      }
    }
  });
});

describe('markets cluster node', () => {
  it('refuses to start without its token signing secret, unless --auth off', async () => {
    const child = spawnNode(
      join(import.meta.dirname, 'cluster-node.ts'),
      ['--brokers', '127.0.0.1:1', '--pg', 'postgres://nowhere', '--schema', 's', '--node', 'n'],
      { env: { ...process.env, MERIDIAN_AUTH_SECRET: 'too-short' } },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/MERIDIAN_AUTH_SECRET must be set .* current length is 9\. Pass --auth off/);
  });
});
