import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NotFoundError, RetryableError, TerminalError, ValidationError } from '../../src/index.ts';
import { ManualClock } from '../../src/testing/index.ts';
import { createPaymentGateway, type PaymentGateway, type PaymentGatewayOptions } from './payment-gateway.ts';
import { NEXT_CURSOR_HEADER, PaymentGatewayClient } from './payment-gateway-client.ts';
import { PaymentLedger } from './payment-gateway-ledger.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-payments-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function started(
  options: PaymentGatewayOptions = {},
): Promise<{ gateway: PaymentGateway; client: PaymentGatewayClient; url: string }> {
  const gateway = createPaymentGateway(options);
  cleanups.push(() => gateway.close());
  const url = await gateway.listen();
  return { gateway, url, client: new PaymentGatewayClient({ baseUrl: url, timeoutMs: 2000 }) };
}

describe('simulated payment gateway', () => {
  it('charges once per idempotency key: the same key returns the same charge, never a second one', async () => {
    const { client, gateway } = await started();
    const first = await client.charge({ orderId: 'o-1', amount: 42.5, idempotencyKey: 'order:o-1:charge' });
    expect(first).toEqual({ chargeId: 'ch_00000001', orderId: 'o-1', amount: 42.5, status: 'charged' });
    const again = await client.charge({ orderId: 'o-1', amount: 42.5, idempotencyKey: 'order:o-1:charge' });
    expect(again).toEqual(first);
    expect(await client.charges('o-1')).toEqual([first]);
    expect(gateway.ledger.charges()).toHaveLength(1);
  });

  it('refuses every route to a caller without its API key with 401, and serves the client that sends it', async () => {
    const apiKey = 'k'.repeat(43);
    const { url, gateway } = await started({ apiKey });
    const requests: Array<[method: string, path: string, body?: unknown]> = [
      ['POST', '/charges', { orderId: 'o-1', amount: 5, idempotencyKey: 'order:o-1:charge' }],
      ['GET', '/charges'],
      ['GET', '/charges?orderId=o-1'],
      ['POST', '/refunds', { chargeId: 'ch_00000001', idempotencyKey: 'order:o-1:refund' }],
      ['GET', '/refunds'],
      ['GET', '/settings'],
      ['PUT', '/settings', { failureRate: 1 }],
    ];
    // No credential, another key of the same length, and the right key without its scheme.
    for (const authorization of [undefined, `Bearer ${'x'.repeat(43)}`, apiKey]) {
      for (const [method, path, body] of requests) {
        const response = await fetch(`${url}${path}`, {
          method,
          headers: {
            ...(authorization === undefined ? {} : { authorization }),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        expect(response.status, `${method} ${path} with ${authorization?.slice(0, 8)}`).toBe(401);
        expect(response.headers.get('www-authenticate')).toBe('Bearer realm="payments"');
      }
    }
    expect(gateway.ledger.charges()).toEqual([]);
    const anonymous = new PaymentGatewayClient({ baseUrl: url, timeoutMs: 2000 });
    cleanups.push(() => anonymous.close());
    await expect(
      anonymous.charge({ orderId: 'o-1', amount: 5, idempotencyKey: 'order:o-1:charge' }),
    ).rejects.toThrow(TerminalError);
    const client = new PaymentGatewayClient({ baseUrl: url, timeoutMs: 2000, apiKey });
    cleanups.push(() => client.close());
    expect(
      await client.charge({ orderId: 'o-1', amount: 5, idempotencyKey: 'order:o-1:charge' }),
    ).toMatchObject({
      status: 'charged',
    });
    expect(gateway.ledger.charges()).toHaveLength(1);
    expect(() => createPaymentGateway({ apiKey: 'too-short' })).toThrow(
      "'apiKey' must be 32 to 256 characters without spaces",
    );
  });

  it('refuses a key reused for another order or amount with a terminal error', async () => {
    const { client } = await started();
    await client.charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'k' });
    await expect(client.charge({ orderId: 'o-1', amount: 11, idempotencyKey: 'k' })).rejects.toBeInstanceOf(
      TerminalError,
    );
    await expect(client.charge({ orderId: 'o-2', amount: 10, idempotencyKey: 'k' })).rejects.toThrow(
      /answered 422: Key 'k' was used for charge ch_00000001 of order o-1/,
    );
  });

  it('refunds a charge at most once, whatever key the refund comes with, and shows it as refunded', async () => {
    const { client, url } = await started();
    const charge = await client.charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'c1' });
    const refund = await client.refund({ chargeId: charge.chargeId, idempotencyKey: 'r1' });
    expect(refund).toEqual({
      refundId: 're_00000001',
      chargeId: charge.chargeId,
      orderId: 'o-1',
      amount: 10,
      status: 'refunded',
    });
    expect(await client.refund({ chargeId: charge.chargeId, idempotencyKey: 'r1' })).toEqual(refund);
    expect(await client.refund({ chargeId: charge.chargeId, idempotencyKey: 'r2' })).toEqual(refund);
    expect(await client.charges('o-1')).toEqual([{ ...charge, status: 'refunded', refundId: 're_00000001' }]);
    const refunds = await (await fetch(`${url}/refunds?chargeId=${charge.chargeId}`)).json();
    expect(refunds).toEqual([refund]);
    await expect(client.refund({ chargeId: 'ch_nope', idempotencyKey: 'r3' })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it('answers 503 without charging at the failure rate, as a retryable error with Retry-After', async () => {
    const { client, gateway } = await started({ settings: { failureRate: 1 } });
    const failure = await client
      .charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'k' })
      .catch((error) => error);
    expect(failure).toBeInstanceOf(RetryableError);
    expect(failure.retryAfterMs).toBe(1000);
    expect(gateway.ledger.charges()).toEqual([]);
  });

  it('records the charge and then drops the connection at the lost-response rate; a retry with the key gets that charge', async () => {
    const { client, gateway } = await started({ settings: { lostResponseRate: 1 } });
    const lost = await client
      .charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'k' })
      .catch((error) => error);
    expect(lost).toBeInstanceOf(RetryableError);
    expect(lost.details).toEqual({ reason: 'connection' });
    expect(gateway.ledger.charges().map((charge) => charge.chargeId)).toEqual(['ch_00000001']);
    gateway.updateSettings({ lostResponseRate: 0 });
    const retried = await client.charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'k' });
    expect(retried.chargeId).toBe('ch_00000001');
    expect(gateway.ledger.charges()).toHaveLength(1);
  });

  it('hangs past the client timeout at the timeout rate without charging', async () => {
    const { client, gateway } = await started({ settings: { timeoutRate: 1 } });
    const timedOut = await client
      .charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'k' }, { timeoutMs: 100 })
      .catch((error) => error);
    expect(timedOut).toBeInstanceOf(RetryableError);
    expect(timedOut.details).toEqual({ reason: 'timeout', timeoutMs: 100 });
    expect(gateway.ledger.charges()).toEqual([]);
  });

  it("rejects with the caller's abort reason when the caller's signal aborts", async () => {
    const { client } = await started({ settings: { timeoutRate: 1 } });
    const controller = new AbortController();
    const call = client.charge(
      { orderId: 'o-1', amount: 10, idempotencyKey: 'k' },
      { signal: controller.signal },
    );
    controller.abort(new Error('saga shutting down'));
    await expect(call).rejects.toThrow('saga shutting down');
  });

  it('waits the configured latency (on the injected timers) before answering', async () => {
    const clock = new ManualClock(0);
    const gateway = createPaymentGateway({ clock, timers: clock, settings: { latencyMs: 250 } });
    cleanups.push(() => gateway.close());
    let answered = false;
    const pending = gateway.server
      .inject({ method: 'POST', url: '/charges', payload: { orderId: 'o', amount: 1, idempotencyKey: 'k' } })
      .then((response) => {
        answered = true;
        return response;
      });
    // Wait (bounded) until the request sits in the gateway's latency timer.
    for (let turn = 0; turn < 100 && clock.pendingTimers === 0; turn += 1) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(249);
    expect(answered).toBe(false);
    await clock.advanceAsync(1);
    expect((await pending).statusCode).toBe(201);
  });

  it('changes settings at runtime through PUT /settings and validates them', async () => {
    const { client, url } = await started();
    expect(await client.updateSettings({ failureRate: 0.25, latencyMs: 5 })).toEqual({
      failureRate: 0.25,
      latencyMs: 5,
      timeoutRate: 0,
      lostResponseRate: 0,
    });
    expect(await client.settings()).toMatchObject({ failureRate: 0.25 });
    const invalid = await fetch(`${url}/settings`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ failureRate: 2 }),
    });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { message: string }).message).toBe(
      "'failureRate' must be a number in [0, 1]: current value is 2",
    );
    await expect(client.updateSettings({ latencyMs: -1 })).rejects.toBeInstanceOf(ValidationError);
    expect(() => createPaymentGateway({ settings: { timeoutRate: -0.1 } })).toThrow(
      "'timeoutRate' must be a number in [0, 1]: current value is -0.1",
    );
  });

  it('replays the same faults for the same seed', async () => {
    const outcomes = async (seed: number) => {
      const gateway = createPaymentGateway({ seed, settings: { failureRate: 0.5 } });
      cleanups.push(() => gateway.close());
      const statuses: number[] = [];
      for (let index = 0; index < 20; index += 1) {
        const response = await gateway.server.inject({
          method: 'POST',
          url: '/charges',
          payload: { orderId: `o-${index}`, amount: 1, idempotencyKey: `k-${index}` },
        });
        statuses.push(response.statusCode);
      }
      return statuses;
    };
    const first = await outcomes(7);
    expect(await outcomes(7)).toEqual(first);
    expect(first).toContain(503);
    expect(first).toContain(201);
    expect(await outcomes(8)).not.toEqual(first);
  });
});

describe('listing charges', () => {
  /** `count` more charges made in-process, for orders o-0, o-1, o-2, o-0, ... in turn. */
  function charged(gateway: PaymentGateway, count: number): void {
    const made = gateway.ledger.charges().length;
    for (let index = made; index < made + count; index += 1) {
      gateway.ledger.charge(
        { orderId: `o-${index % 3}`, amount: index + 1, idempotencyKey: `k-${index}` },
        0,
      );
    }
  }
  const id = (n: number) => `ch_${String(n).padStart(8, '0')}`;
  const ids = (charges: Array<{ chargeId: string }>) => charges.map((charge) => charge.chargeId);

  it('pages every charge in the order it was made: limit, after, and a cursor header while more follow', async () => {
    const { gateway, client, url } = await started();
    charged(gateway, 7);
    const first = await client.chargePage({ limit: 3 });
    expect(ids(first.charges)).toEqual([id(1), id(2), id(3)]);
    expect(first.charges[0]).toEqual({ chargeId: id(1), orderId: 'o-0', amount: 1, status: 'charged' });
    expect(first.next).toBe(id(3));
    const second = await client.chargePage({ limit: 3, after: first.next! });
    expect(ids(second.charges)).toEqual([id(4), id(5), id(6)]);
    expect(second.next).toBe(id(6));
    const last = await client.chargePage({ limit: 3, after: second.next! });
    expect(ids(last.charges)).toEqual([id(7)]);
    expect(last.next).toBeNull();
    // A page that ends exactly at the last charge says so: no cursor to an empty page.
    expect(await client.chargePage({ limit: 1, after: id(6) })).toMatchObject({ next: null });
    expect(await client.chargePage({ after: id(7) })).toEqual({ charges: [], next: null });
    expect(ids(await client.charges(undefined, { limit: 2, after: id(1) }))).toEqual([id(2), id(3)]);

    // Without limit: 100 at most.
    charged(gateway, 200);
    const response = await fetch(`${url}/charges`);
    expect(((await response.json()) as unknown[]).length).toBe(100);
    expect(response.headers.get(NEXT_CURSOR_HEADER)).toBe(id(100));
    const full = await client.chargePage({ limit: 1000 });
    expect(ids(full.charges)).toEqual(Array.from({ length: 207 }, (_, index) => id(index + 1)));
    expect(full.next).toBeNull();
  });

  it("answers one order's charges whole, as an array, from its index", async () => {
    const { gateway, client, url } = await started();
    charged(gateway, 250);
    const ofOrder = await client.charges('o-1');
    expect(ofOrder).toHaveLength(83);
    expect(ofOrder.every((charge) => charge.orderId === 'o-1')).toBe(true);
    expect(ids(ofOrder).slice(0, 3)).toEqual([id(2), id(5), id(8)]);
    const response = await fetch(`${url}/charges?orderId=o-1`);
    expect(response.headers.get(NEXT_CURSOR_HEADER)).toBeNull();
    expect(await client.charges('never-charged')).toEqual([]);
  });

  it('refuses a bad limit or after, and paging with an orderId, with a 400 naming the field', async () => {
    const { gateway, client, url } = await started();
    charged(gateway, 2);
    const refused = async (query: string) => {
      const response = await fetch(`${url}/charges?${query}`);
      expect(response.status).toBe(400);
      return ((await response.json()) as { error: string; message: string }).message;
    };
    expect(await refused('limit=0')).toMatch(/limit/);
    expect(await refused('limit=1001')).toMatch(/limit/);
    expect(await refused('limit=ten')).toMatch(/limit/);
    expect(await refused('limit=2.5')).toMatch(/limit/);
    expect(await refused('after=')).toMatch(/after/);
    expect(await refused('after=ch_99999999')).toBe(
      "'after' must name a charge: no charge 'ch_99999999' exists",
    );
    expect(await refused('orderId=o-0&limit=5')).toBe(
      "'limit' pages the listing of every charge and cannot be combined with 'orderId'",
    );
    expect(await refused('orderId=o-0&after=ch_00000001')).toMatch(/^'after' pages/);
    await expect(client.chargePage({ after: 'nope' })).rejects.toBeInstanceOf(ValidationError);
    await expect(client.charges('o-0', { limit: 1 })).rejects.toBeInstanceOf(ValidationError);
    expect(() => gateway.ledger.page({ limit: 0 })).toThrow(
      "'limit' must be an integer in [1, 1000]: current value is 0",
    );
  });
});

describe('listing refunds', () => {
  it("pages every refund in the order it was made, and answers one charge's refund whole", async () => {
    const { gateway, url } = await started();
    for (let index = 0; index < 150; index += 1) {
      const { charge } = gateway.ledger.charge(
        { orderId: `o-${index}`, amount: 5, idempotencyKey: `c-${index}` },
        0,
      );
      // Refunded in reverse pairs, so refund order differs from charge order.
      if (index % 2 === 1) {
        gateway.ledger.refund({ chargeId: charge.chargeId, idempotencyKey: `r-${index}` }, 0);
        gateway.ledger.refund(
          { chargeId: `ch_${String(index).padStart(8, '0')}`, idempotencyKey: `r-${index - 1}` },
          0,
        );
      }
    }
    const refundId = (n: number) => `re_${String(n).padStart(8, '0')}`;
    const list = async (query: string) => {
      const response = await fetch(`${url}/refunds${query}`);
      expect(response.status).toBe(200);
      const refunds = (await response.json()) as Array<{ refundId: string; chargeId: string }>;
      return { refunds, next: response.headers.get(NEXT_CURSOR_HEADER) };
    };
    // Without limit: 100 at most, and a cursor.
    const first = await list('');
    expect(first.refunds.map((refund) => refund.refundId)).toEqual(
      Array.from({ length: 100 }, (_, index) => refundId(index + 1)),
    );
    expect(first.refunds[0]).toMatchObject({ refundId: refundId(1), chargeId: 'ch_00000002', amount: 5 });
    expect(first.next).toBe(refundId(100));
    const rest = await list(`?after=${first.next}&limit=1000`);
    expect(rest.refunds.map((refund) => refund.refundId)).toEqual(
      Array.from({ length: 50 }, (_, index) => refundId(index + 101)),
    );
    expect(rest.next).toBeNull();
    const ofCharge = await list('?chargeId=ch_00000001');
    expect(ofCharge.refunds).toMatchObject([{ refundId: refundId(2), chargeId: 'ch_00000001' }]);
    expect(ofCharge.next).toBeNull();
    expect((await list('?chargeId=ch_99999999')).refunds).toEqual([]);

    const refused = async (query: string) => {
      const response = await fetch(`${url}/refunds?${query}`);
      expect(response.status).toBe(400);
      return ((await response.json()) as { message: string }).message;
    };
    expect(await refused('limit=0')).toMatch(/limit/);
    expect(await refused('after=re_99999999')).toBe(
      "'after' must name a refund: no refund 're_99999999' exists",
    );
    expect(await refused('chargeId=ch_00000001&limit=5')).toBe(
      "'limit' pages the listing of every refund and cannot be combined with 'chargeId'",
    );
  });
});

describe('payment ledger persistence', () => {
  it('keeps charges and refunds across a restart, and never hands out an id reserved before it', async () => {
    const path = join(tempDir(), 'ledger.jsonl');
    const first = await started({ ledgerPath: path });
    const charge = await first.client.charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'c1' });
    await first.client.refund({ chargeId: charge.chargeId, idempotencyKey: 'r1' });
    await first.gateway.close();

    const second = await started({ ledgerPath: path });
    expect(await second.client.charges()).toEqual([
      { ...charge, status: 'refunded', refundId: 're_00000001' },
    ]);
    expect((await second.client.charge({ orderId: 'o-1', amount: 10, idempotencyKey: 'c1' })).chargeId).toBe(
      charge.chargeId,
    );
    // Ids come from blocks reserved (fsynced) before use: after a restart, from the next block,
    // so an id whose entry an OS crash lost is never given to another charge.
    expect((await second.client.charge({ orderId: 'o-2', amount: 5, idempotencyKey: 'c2' })).chargeId).toBe(
      'ch_00001001',
    );
  });

  it('rebuilds the by-order index and the listing order when it replays its file, and keeps them up to date', async () => {
    const path = join(tempDir(), 'ledger.jsonl');
    const first = await started({ ledgerPath: path });
    const a1 = await first.client.charge({ orderId: 'a', amount: 1, idempotencyKey: 'a1' });
    const b1 = await first.client.charge({ orderId: 'b', amount: 2, idempotencyKey: 'b1' });
    const a2 = await first.client.charge({ orderId: 'a', amount: 3, idempotencyKey: 'a2' });
    await first.client.refund({ chargeId: a1.chargeId, idempotencyKey: 'r1' });
    await first.gateway.close();

    const second = await started({ ledgerPath: path });
    const refundedA1 = { ...a1, status: 'refunded', refundId: 're_00000001' };
    expect(await second.client.charges('a')).toEqual([refundedA1, a2]);
    expect(await second.client.charges('b')).toEqual([b1]);
    const b2 = await second.client.charge({ orderId: 'b', amount: 4, idempotencyKey: 'b2' });
    // The restart moved on to the next reserved block of ids.
    expect(b2.chargeId).toBe('ch_00001001');
    expect(await second.client.charges('b')).toEqual([b1, b2]);
    await second.client.refund({ chargeId: b1.chargeId, idempotencyKey: 'r2' });
    expect((await second.client.charges('b'))[0]).toMatchObject({
      status: 'refunded',
      refundId: 're_00001001',
    });
    expect(await second.client.chargePage({ limit: 2, after: b1.chargeId })).toEqual({
      charges: [a2, b2],
      next: null,
    });
    expect(second.gateway.ledger.refunds(a1.chargeId)).toMatchObject([{ refundId: 're_00000001' }]);
    expect(second.gateway.ledger.refunds(a2.chargeId)).toEqual([]);
  });

  it('forgets charges and refunds after forgetAfterMs, a refund never before its charge', () => {
    expect(() => new PaymentLedger({ forgetAfterMs: 999 })).toThrow(/'forgetAfterMs' must be an integer/);
    const ledger = new PaymentLedger({ forgetAfterMs: 1000 });
    const first = ledger.charge({ orderId: 'o-1', amount: 1, idempotencyKey: 'k1' }, 0);
    ledger.refund({ chargeId: first.charge.chargeId, idempotencyKey: 'r1' }, 900);
    ledger.charge({ orderId: 'o-2', amount: 2, idempotencyKey: 'k2' }, 500);
    // At 1000 the first charge is due; its refund (made at 900) is not yet.
    expect(ledger.charge({ orderId: 'o-2', amount: 2, idempotencyKey: 'k2' }, 1000).outcome).toBe('replayed');
    expect(ledger.charges().map((charge) => charge.orderId)).toEqual(['o-2']);
    expect(ledger.charges('o-1')).toEqual([]);
    expect(ledger.refunds()).toHaveLength(1);
    expect(ledger.refund({ chargeId: first.charge.chargeId, idempotencyKey: 'r2' }, 1000)).toEqual({
      outcome: 'unknown_charge',
    });
    // A forgotten key charges anew, as a provider's expired idempotency key does.
    const again = ledger.charge({ orderId: 'o-1', amount: 1, idempotencyKey: 'k1' }, 1900);
    expect(again.outcome).toBe('created');
    expect(ledger.refunds()).toEqual([]);
    expect(ledger.page({ limit: 10 }).items.map((charge) => charge.orderId)).toEqual(['o-1']);
    expect(() => ledger.page({ limit: 10, after: first.charge.chargeId })).toThrow(/or it was forgotten/);
  });

  it('pages what it remembers while it forgets thousands, in bounded batches per call', () => {
    const ledger = new PaymentLedger({ forgetAfterMs: 100_000 });
    for (let index = 0; index < 5000; index += 1)
      ledger.charge({ orderId: `o-${index}`, amount: 1, idempotencyKey: `k-${index}` }, index);
    // At 103,999 the charges made at 0..3999 are due; one call forgets at most 64 of them.
    const now = 103_999;
    ledger.charge({ orderId: 'o-last', amount: 1, idempotencyKey: 'k-last' }, now);
    expect(ledger.charges()).toHaveLength(5001 - 64);
    for (let call = 0; call < 100; call += 1)
      ledger.charge({ orderId: 'o-last', amount: 1, idempotencyKey: 'k-last' }, now);
    const remembered: string[] = [];
    let after: string | undefined;
    do {
      const page = ledger.page({ limit: 1000, ...(after === undefined ? {} : { after }) });
      remembered.push(...page.items.map((charge) => charge.orderId));
      after = page.next ?? undefined;
    } while (after !== undefined);
    expect(remembered).toEqual([
      ...Array.from({ length: 1000 }, (_, index) => `o-${4000 + index}`),
      'o-last',
    ]);
  });

  it('cuts off a half-written last line (a kill mid-write) and refuses a corrupt line elsewhere', () => {
    const dir = tempDir();
    const path = join(dir, 'ledger.jsonl');
    const ledger = new PaymentLedger({ path });
    ledger.charge({ orderId: 'o-1', amount: 1, idempotencyKey: 'k1' }, 0);
    ledger.close();
    appendFileSync(path, '{"kind":"charge","chargeId":"ch_0000');
    const reopened = new PaymentLedger({ path });
    expect(reopened.charges()).toHaveLength(1);
    reopened.charge({ orderId: 'o-2', amount: 2, idempotencyKey: 'k2' }, 1);
    reopened.close();
    const entries = readFileSync(path, 'utf8').trim().split('\n');
    // Two charges (and the id blocks reserved for them), every line whole.
    expect(entries.filter((line) => !line.includes('"kind":"reserve"'))).toHaveLength(2);
    expect(entries.every((line) => JSON.parse(line) !== null)).toBe(true);

    const corrupt = join(dir, 'corrupt.jsonl');
    appendFileSync(corrupt, 'not json\n{"kind":"charge"}\n');
    expect(() => new PaymentLedger({ path: corrupt })).toThrow(/corrupt at character 0/);
  });

  it('has every charge it answered on disk when its process is killed with SIGKILL', async () => {
    const path = join(tempDir(), 'ledger.jsonl');
    const moduleUrl = new URL('./payment-gateway.ts', import.meta.url).href;
    const script = `
      const { createPaymentGateway } = await import(${JSON.stringify(moduleUrl)});
      const gateway = createPaymentGateway({ ledgerPath: ${JSON.stringify(path)} });
      console.log(await gateway.listen());
    `;
    const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const client = new PaymentGatewayClient({ baseUrl: line.toString().trim() });
    const answered = [];
    for (let index = 0; index < 20; index += 1) {
      answered.push(
        await client.charge({ orderId: `o-${index}`, amount: index + 1, idempotencyKey: `k-${index}` }),
      );
    }
    child.kill('SIGKILL');
    await once(child, 'exit');
    const ledger = new PaymentLedger({ path });
    cleanups.push(() => ledger.close());
    expect(ledger.charges().map((charge) => charge.chargeId)).toEqual(
      answered.map((charge) => charge.chargeId),
    );
  });
});
