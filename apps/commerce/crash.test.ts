// SIGKILL of a real `commerce demo` process while orders pour in, a restart on the same data
// directory, and the invariants afterwards: nothing oversold, nobody charged twice, every
// cancelled charge refunded, every order ended.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { developmentAuth } from '../../src/http/index.ts';
import { startDemoProcess } from './demo-process.fixture.ts';
import { auditCommerce, collectAudit, fetchOrders } from './invariants.ts';

interface Demo {
  readonly child: ChildProcess;
  readonly url: string;
  output(): string;
  exited: Promise<number | null>;
}

/** Starts `commerce demo` with payment faults and resolves once it serves (bounded). */
async function startDemo(dataDir: string): Promise<Demo> {
  const demo = startDemoProcess(dataDir, [
    '--seed',
    '3',
    '--payment-failure-rate',
    '0.1',
    '--payment-lost-response-rate',
    '0.2',
  ]);
  return { child: demo.child, url: await demo.url, output: demo.output, exited: demo.exited };
}

/** An operator's credential, signed with the secret the demo keeps in its data directory. */
let operator: Record<string, string> = {};

async function post(url: string, index: number) {
  const response = await fetch(`${url}/orders`, {
    method: 'POST',
    signal: AbortSignal.timeout(10_000),
    headers: { 'content-type': 'application/json', 'idempotency-key': `crash-${index}`, ...operator },
    body: JSON.stringify({
      customerId: `c${index % 13}`,
      items: [
        { sku: 'scarce', qty: 1 },
        { sku: 'plenty', qty: 1 + (index % 3) },
      ],
    }),
  });
  return { status: response.status, body: (await response.json()) as { orderId: string } };
}

describe('commerce after SIGKILL', () => {
  const children: ChildProcess[] = [];
  let directory: string | undefined;
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  });

  it('keeps every invariant when the demo is killed mid-load and restarted on the same data directory', async () => {
    directory = mkdtempSync(join(tmpdir(), 'meridian-commerce-crash-'));
    const first = await startDemo(directory);
    children.push(first.child);
    operator = {
      authorization: `Bearer ${await developmentAuth(directory).issue('crash-test', 'operator')}`,
    };
    const initialStock = { scarce: 40, plenty: 100_000 };
    for (const [sku, available] of Object.entries(initialStock)) {
      const put = await fetch(`${first.url}/inventory/${sku}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...operator },
        body: JSON.stringify({ available, price: sku === 'scarce' ? 9 : 1 }),
      });
      expect(put.status).toBe(200);
    }

    // Orders keep coming, 8 at a time, until the process dies under them.
    const accepted = new Map<number, string>();
    let next = 0;
    let killed = false;
    const sender = async () => {
      while (!killed && next < 2000) {
        const index = next++;
        try {
          const placed = await post(first.url, index);
          if (placed.status === 202) accepted.set(index, placed.body.orderId);
        } catch {
          // The connection died with the process: this order may or may not exist.
        }
      }
    };
    const senders = Array.from({ length: 8 }, sender);
    // Kill once enough orders are in flight that some are surely mid-saga (bounded wait).
    for (let waited = 0; accepted.size < 120 && waited < 20_000; waited += 10) {
      await new Promise((done) => setTimeout(done, 10));
    }
    first.child.kill('SIGKILL');
    killed = true;
    await first.exited;
    await Promise.all(senders);
    expect(accepted.size).toBeGreaterThanOrEqual(120);

    const second = await startDemo(directory);
    children.push(second.child);
    // Some orders were mid-saga when the process died (payment retries wait a second each).
    expect(second.output()).toMatch(/resumed [1-9]\d* orders? in flight/);
    // An answer the client saw before the crash is still the answer for its key.
    const [someIndex, someOrder] = [...accepted.entries()][0]!;
    const replayed = await post(second.url, someIndex);
    expect(replayed).toEqual({ status: 202, body: { orderId: someOrder, status: 'pending' } });

    // Every order resumes and ends (bounded poll: this waits on another process).
    let pending = Number.POSITIVE_INFINITY;
    for (const deadline = Date.now() + 60_000; pending > 0 && Date.now() < deadline; ) {
      pending = (await fetchOrders(second.url, 'pending', operator)).length;
      if (pending > 0) await new Promise((done) => setTimeout(done, 100));
    }
    const snapshot = await collectAudit(second.url, Object.keys(initialStock), operator);
    const report = auditCommerce({ ...snapshot, initialStock });
    expect(report.violations).toEqual([]);
    const ids = new Set(snapshot.orders.map((order) => order.orderId));
    for (const orderId of accepted.values()) expect(ids.has(orderId)).toBe(true);
    expect(snapshot.stock.find((stock) => stock.sku === 'scarce')!.sold).toBeLessThanOrEqual(40);

    // A drain exits cleanly.
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(second.output()).toContain('Stopped cleanly');
  }, 120_000);
});
