// The gateway's authentication and authorization: API keys and bearer tokens prove a principal,
// each route's access decides, refusals are 401/403 problems with WWW-Authenticate, the Host
// check refuses names the server does not serve, and the default rate limit is per principal.
import { get } from 'node:http';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { generateApiKey, issueToken } from './auth.ts';
import { createGateway, type Gateway, type GatewayOptions, principalOf } from './gateway.ts';

const secret = 'a-test-signing-secret-of-at-least-32-bytes';
const opened: Gateway[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((gateway) => gateway.close()));
});

async function gateway(options: Partial<GatewayOptions> = {}): Promise<Gateway> {
  const created = await createGateway({ auth: { jwt: { secret } }, defaultMetrics: false, ...options });
  opened.push(created);
  created.route({
    method: 'GET',
    url: '/mine',
    access: { scopes: ['things:read'] },
    handler: async (request) => principalOf(request),
  });
  created.route({ method: 'PUT', url: '/settings', handler: async () => ({ changed: true }) });
  created.route({ method: 'GET', url: '/open', access: 'public', handler: async () => ({ open: true }) });
  return created;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('gateway authentication', () => {
  it('refuses a gateway without an auth decision: auth is required, false is explicit', async () => {
    await expect(createGateway({} as GatewayOptions)).rejects.toThrow(/'auth' is required/);
    await expect(createGateway({ auth: {} })).rejects.toThrow(/needs 'apiKeys' or 'jwt'/);
    await expect(createGateway({ auth: { jwt: { secret: 'short' } } })).rejects.toThrow(/at least 32 bytes/);
  });

  it('answers 401 with WWW-Authenticate to a request without credentials, and serves public routes to anyone', async () => {
    const g = await gateway();
    const refused = await g.server.inject({ url: '/mine' });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.headers['www-authenticate']).toBe('Bearer realm="meridian"');
    expect(refused.json()).toMatchObject({ type: 'urn:meridian:problem:unauthenticated', status: 401 });
    expect((await g.server.inject({ url: '/open' })).statusCode).toBe(200);
  });

  it('takes a signed token: its subject, role and scopes make the principal', async () => {
    const g = await gateway();
    const token = await issueToken({ secret, subject: 'ada', role: 'customer', scopes: ['things:read'] });
    const answer = await g.server.inject({ url: '/mine', headers: bearer(token) });
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toMatchObject({ id: 'ada', role: 'customer', via: 'jwt' });
  });

  it('refuses expired, forged, unsigned and malformed tokens with invalid_token', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const g = await gateway({ clock });
    const expired = await issueToken({
      secret,
      subject: 'ada',
      role: 'customer',
      expiresInSeconds: 60,
      clock,
    });
    clock.advance(120_000);
    const forged = await issueToken({
      secret: 'another-secret-that-is-32-bytes-long!!',
      subject: 'ada',
      role: 'operator',
      clock,
    });
    const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({ sub: 'ada', role: 'operator', exp: 9_999_999_999 }),
    ).toString('base64url')}.`;
    const hs512 = await new SignJWT({ role: 'operator' })
      .setProtectedHeader({ alg: 'HS512' })
      .setSubject('mallory')
      .setExpirationTime(9_999_999_999)
      .sign(new TextEncoder().encode(secret));
    for (const [token, detail] of [
      [expired, 'expired'],
      [forged, 'not valid'],
      [unsigned, 'not valid'],
      [hs512, 'not valid'],
      ['not-a-token', 'not valid'],
    ] as const) {
      const answer = await g.server.inject({ url: '/mine', headers: bearer(token) });
      expect(answer.statusCode, token).toBe(401);
      expect(answer.headers['www-authenticate']).toContain('error="invalid_token"');
      expect(answer.json().detail).toContain(detail);
    }
    const wrongScheme = await g.server.inject({ url: '/mine', headers: { authorization: 'Basic YTpi' } });
    expect(wrongScheme.headers['www-authenticate']).toContain('error="invalid_request"');
  });

  it('remembers a verified token only until it expires', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const g = await gateway({ clock });
    const token = await issueToken({
      secret,
      subject: 'ada',
      role: 'customer',
      scopes: ['things:read'],
      expiresInSeconds: 60,
      clock,
    });
    expect((await g.server.inject({ url: '/mine', headers: bearer(token) })).statusCode).toBe(200);
    clock.advance(59_000);
    expect((await g.server.inject({ url: '/mine', headers: bearer(token) })).statusCode).toBe(200);
    clock.advance(120_000);
    const late = await g.server.inject({ url: '/mine', headers: bearer(token) });
    expect(late.statusCode).toBe(401);
    expect(late.json().detail).toContain('expired');
  });

  it('takes API keys in X-API-Key or as a bearer token, compared by hash; an unknown or altered key is refused', async () => {
    const operator = generateApiKey({ subject: 'ops', role: 'operator' });
    const customer = generateApiKey({ subject: 'ada', role: 'customer', scopes: ['things:read'] });
    expect(operator.record).not.toHaveProperty('key');
    // The secret is everything after `mk_<hex id>_` (base64url: it may hold '_' itself).
    const secret = operator.key.slice(operator.key.indexOf('_', 3) + 1);
    expect(secret).toHaveLength(32);
    expect(JSON.stringify(operator.record)).not.toContain(secret);
    const g = await gateway({ auth: { apiKeys: [operator.record, customer.record] } });
    expect(
      (await g.server.inject({ method: 'PUT', url: '/settings', headers: { 'x-api-key': operator.key } }))
        .statusCode,
    ).toBe(200);
    const asCustomer = await g.server.inject({ url: '/mine', headers: bearer(customer.key) });
    expect(asCustomer.json()).toMatchObject({ id: 'ada', role: 'customer', via: 'api-key' });
    const altered = `${operator.key.slice(0, -1)}${operator.key.endsWith('A') ? 'B' : 'A'}`;
    expect((await g.server.inject({ url: '/mine', headers: { 'x-api-key': altered } })).statusCode).toBe(401);
    const unknown = generateApiKey({ subject: 'eve', role: 'operator' }).key;
    expect((await g.server.inject({ url: '/mine', headers: { 'x-api-key': unknown } })).statusCode).toBe(401);
  });

  it('answers 403 to a customer on an operator route, and to a token without the scope, naming it', async () => {
    const g = await gateway();
    const noScope = await issueToken({ secret, subject: 'ada', role: 'customer', scopes: [] });
    const settings = await g.server.inject({ method: 'PUT', url: '/settings', headers: bearer(noScope) });
    expect(settings.statusCode).toBe(403);
    expect(settings.json().title).toBe('The operator role is required');
    const mine = await g.server.inject({ url: '/mine', headers: bearer(noScope) });
    expect(mine.statusCode).toBe(403);
    expect(mine.headers['www-authenticate']).toContain('error="insufficient_scope", scope="things:read"');
    expect(mine.json().detail).toContain("'things:read'");
  });

  it('makes a route without access operator-only, and documents the schemes and 401/403 in OpenAPI', async () => {
    const g = await gateway();
    await g.ready();
    expect(g.routes().find((route) => route.url === '/settings')?.access).toBe('operator');
    const document = g.server.swagger() as unknown as {
      components: { securitySchemes: Record<string, unknown> };
      paths: Record<string, Record<string, { security?: unknown; responses: Record<string, unknown> }>>;
    };
    expect(Object.keys(document.components.securitySchemes).sort()).toEqual(['apiKey', 'bearer']);
    expect(document.paths['/settings']!.put!.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
    expect(Object.keys(document.paths['/settings']!.put!.responses)).toEqual(
      expect.arrayContaining(['401', '403']),
    );
    expect(document.paths['/open']!.get!.security).toBeUndefined();
  });
});

describe('gateway Host check', () => {
  it('answers 421 to a Host it does not serve (DNS rebinding), on every route, 404s included', async () => {
    const g = await gateway({ allowedHosts: ['localhost', '127.0.0.1'] });
    const rebound = await g.server.inject({ url: '/open', headers: { host: 'attacker.example:7070' } });
    expect(rebound.statusCode).toBe(421);
    expect(rebound.headers['content-type']).toContain('application/problem+json');
    expect(
      (await g.server.inject({ url: '/nowhere', headers: { host: 'attacker.example' } })).statusCode,
    ).toBe(421);
    expect((await g.server.inject({ url: '/open', headers: { host: 'localhost:7070' } })).statusCode).toBe(
      200,
    );
    expect((await g.server.inject({ url: '/open', headers: { host: '127.0.0.1' } })).statusCode).toBe(200);
  });

  it('serves only loopback names by default when it listens on loopback', async () => {
    const g = await gateway();
    const url = await g.listen();
    const port = new URL(url).port;
    // fetch() may not set Host: a raw request does, as a rebinding page's browser would.
    const foreign = await new Promise<number>((done, fail) => {
      const request = get(`${url}/open`, { headers: { host: `rebind.example:${port}` } }, (response) => {
        response.resume();
        done(response.statusCode ?? 0);
      });
      request.on('error', fail);
    });
    expect(foreign).toBe(421);
    expect((await fetch(`${url}/open`)).status).toBe(200);
    expect((await fetch(`http://localhost:${port}/open`)).status).toBe(200);
  });
});

describe('gateway default rate limit', () => {
  it('limits each customer on its own (100/s, burst 200) and leaves operators to limits set on purpose', async () => {
    const clock = new ManualClock();
    const g = await gateway({ clock });
    const ada = bearer(
      await issueToken({ secret, subject: 'ada', role: 'customer', scopes: ['things:read'], clock }),
    );
    const bob = bearer(
      await issueToken({ secret, subject: 'bob', role: 'customer', scopes: ['things:read'], clock }),
    );
    const ops = bearer(await issueToken({ secret, subject: 'ops', role: 'operator', clock }));
    const statuses = async (headers: Record<string, string>, count: number) => {
      const seen = new Map<number, number>();
      for (let i = 0; i < count; i++) {
        const status = (await g.server.inject({ url: '/mine', headers })).statusCode;
        seen.set(status, (seen.get(status) ?? 0) + 1);
      }
      return Object.fromEntries(seen);
    };
    expect(await statuses(ada, 201)).toEqual({ 200: 200, 429: 1 });
    expect(await statuses(bob, 10)).toEqual({ 200: 10 });
    expect(await statuses(ops, 300)).toEqual({ 200: 300 });
  });
});
