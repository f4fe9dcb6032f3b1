// The banking case study under a slow auth service, on fake time: without policies the balance
// route's latency follows auth down; with them it answers within its budget from the cached
// balance, the breaker opens and readiness fails, and both recover by themselves with auth.
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, seededRandom } from '../../src/testing/index.ts';
import { type BankingApp, createBankingApp } from './app.ts';

const apps: BankingApp[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function bank(policies: boolean, clock: ManualClock): Promise<BankingApp> {
  const app = await createBankingApp({
    policies,
    gatewayAuth: false,
    clock,
    timers: clock,
    random: seededRandom(7),
    auth: { latencyMs: 0 },
  });
  apps.push(app);
  await app.gateway.ready();
  return app;
}

/** Lets the request run its hooks until the condition holds (bounded: never hangs a test). */
async function until(condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < 10_000; turn++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error('the condition never held');
}

function getBalance(app: BankingApp, customer: number, account = customer) {
  return app.gateway.server.inject({
    url: `/mobile/balance/acc-${account}`,
    headers: { authorization: `token-cust-${customer}` },
  });
}

/** One request while auth is slow: advances fake time in steps until it is answered. */
async function timedRequest(app: BankingApp, clock: ManualClock, customer: number, stepMs: number) {
  const startedMs = clock.monotonicNow();
  let answered = false;
  const pending = getBalance(app, customer).finally(() => {
    answered = true;
  });
  await until(() => answered || app.auth.inFlight > 0);
  while (!answered) {
    await clock.advanceAsync(stepMs);
    await until(() => answered || clock.pendingTimers > 0);
  }
  const response = await pending;
  return { response, latencyMs: clock.monotonicNow() - startedMs };
}

describe('banking without policies', () => {
  it("follows auth down: the balance route takes as long as auth's 2 s", async () => {
    const clock = new ManualClock();
    const app = await bank(false, clock);
    expect((await getBalance(app, 1)).json()).toMatchObject({ accountId: 'acc-1', degraded: false });
    app.auth.set({ latencyMs: 2000 });
    const { response, latencyMs } = await timedRequest(app, clock, 1, 10);
    expect(response.statusCode).toBe(200);
    expect(latencyMs).toBeGreaterThanOrEqual(2000);
    // Nothing tells a load balancer this node is in trouble.
    expect((await app.gateway.server.inject({ url: '/readyz' })).statusCode).toBe(200);
  });
});

describe('banking with policies', () => {
  it('stays within budget from the cache while auth is slow, opens, and recovers by itself', async () => {
    const clock = new ManualClock();
    const app = await bank(true, clock);
    const fresh = await getBalance(app, 1);
    expect(fresh.json()).toMatchObject({ accountId: 'acc-1', degraded: false });
    const cachedMinor = fresh.json().availableMinor;

    // Auth slows to 2 s: each call times out at 50 ms and the cached balance is served, degraded.
    // With the first fresh call, nine timeouts fill the breaker's 10-call minimum at 90 % failures.
    await app.gateway.server.inject({ method: 'PUT', url: '/admin/auth', payload: { latencyMs: 2000 } });
    for (let i = 0; i < 9; i++) {
      const { response, latencyMs } = await timedRequest(app, clock, 1, 10);
      expect(latencyMs).toBeLessThanOrEqual(100);
      expect(response.json()).toMatchObject({
        availableMinor: cachedMinor,
        degraded: true,
        reason: 'auth timed out',
      });
    }
    expect(app.breaker!.state).toBe('open');
    expect(app.auth.inFlight).toBe(0);

    // Open: answered at once without calling auth; readiness fails; an unknown session gets a clear 503.
    const callsWhenOpened = app.auth.calls;
    const open = await getBalance(app, 1);
    expect(open.json()).toMatchObject({ degraded: true, reason: 'auth circuit open' });
    const unknown = await getBalance(app, 2);
    expect(unknown.statusCode).toBe(503);
    expect(unknown.headers['retry-after']).toBe('2');
    expect(unknown.json()).toMatchObject({ type: 'urn:meridian-bank:problem:auth-unavailable' });
    expect(app.auth.calls).toBe(callsWhenOpened);
    const notReady = await app.gateway.server.inject({ url: '/readyz' });
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json().checks.auth).toMatchObject({ status: 'fail', detail: 'auth circuit open' });
    const policies = (await app.gateway.server.inject({ url: '/policies' })).json();
    expect(policies.policies.auth).toMatchObject({ state: 'open' });

    // Auth recovers; after the open period three half-open probes close the breaker by themselves.
    app.auth.set({ latencyMs: 0 });
    app.balances.adjust('acc-1', 500);
    await clock.advanceAsync(2000);
    for (let probe = 0; probe < 3; probe++) {
      expect((await app.gateway.server.inject({ url: '/readyz' })).statusCode).toBe(503);
      expect((await getBalance(app, 1)).json()).toMatchObject({
        degraded: false,
        availableMinor: cachedMinor + 500,
      });
    }
    expect(app.breaker!.state).toBe('closed');
    expect((await app.gateway.server.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect((await getBalance(app, 2)).json()).toMatchObject({ accountId: 'acc-2', degraded: false });
  });

  it('opens on auth failures too, and never shows one customer another one’s account', async () => {
    const clock = new ManualClock();
    const app = await bank(true, clock);
    expect((await getBalance(app, 3, 4)).statusCode).toBe(404);
    await getBalance(app, 3);
    app.auth.set({ failureRate: 1 });
    // Two successes so far: eight failures fill the 10-call minimum at 80 % failures.
    for (let i = 0; i < 8; i++) {
      expect((await getBalance(app, 3)).json()).toMatchObject({ degraded: true, reason: 'auth failed' });
    }
    expect(app.breaker!.state).toBe('open');
    // The cache is per session and account: another account is not served from it.
    expect((await getBalance(app, 3, 4)).statusCode).toBe(503);
  });

  it('rejects auth settings out of bounds with a validation problem', async () => {
    const app = await bank(true, new ManualClock());
    const response = await app.gateway.server.inject({
      method: 'PUT',
      url: '/admin/auth',
      payload: { failureRate: 2 },
    });
    expect(response.statusCode).toBe(400);
    expect(app.auth.settings.failureRate).toBe(0);
  });
});
