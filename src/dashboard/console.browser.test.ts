// The console in a real browser (Debian's Chromium driven by playwright-core): an operator opens
// it with the token in the URL, sees a new saga appear live, opens its timeline, watches a
// consumer group's lag rise and fall, cancels a waiting saga and sees it end cancelled, and
// retries a dead letter, which its subscription then handles; each main view's screenshot is checked for layout (its panels neither overlap nor
// are empty). Runs when MERIDIAN_TEST_CHROMIUM names the browser (CI installs it).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineApp } from '../app/app.ts';
import { TerminalError } from '../errors.ts';
import { Type } from '../http/index.ts';
import { entity, saga, subscription } from '../runtime/definitions.ts';
import { startTestApp, type TestApp } from '../testing/index.ts';
import { checkLayout } from './browser.fixture.ts';

const chromiumPath = process.env.MERIDIAN_TEST_CHROMIUM;

const Stock = entity('ConsoleStock', {
  initial: { available: 100 },
  commands: {
    reserve: (state: { available: number }) => ({
      state: { available: state.available - 1 },
      events: [{ n: 1 }],
    }),
  },
});

/** Waits on a signal, so the test can see it running before it completes. */
const Checkout = saga('ConsoleCheckout', async (ctx, input: { sku: string }) => {
  await ctx.send(Stock, input.sku, 'reserve', {});
  await ctx.waitForSignal('confirm', { timeoutMs: 60_000 });
  return ctx.step('finish', async () => 'done');
});

/** The audit subscription refuses (retryably) while `holding`, and dead-letters poison at once while `poisonFails`. */
const control = { holding: false, poisonFails: true, handled: [] as string[] };

const auditTopic = 'console-audit';
const Audit = subscription('console-audit', {
  topic: auditTopic,
  group: 'console-audit-group',
  partitions: 1,
  retry: { maxAttempts: 1000, initialDelayMs: 50, maxDelayMs: 100, jitter: 'none' },
  handler: async (record) => {
    const text = Buffer.from(record.value ?? new Uint8Array()).toString();
    if (text.includes('poison') && control.poisonFails) throw new TerminalError('poison record refused');
    if (control.holding) throw new Error('held by the test');
    control.handled.push(text);
  },
});

/** Emits records to the audit topic (the test's way to feed the subscription). */
const Feed = saga('ConsoleFeed', async (ctx, input: { values: string[] }) => {
  for (const value of input.values) await ctx.emit(auditTopic, { key: 'k', value: { value } });
});

const app = defineApp({
  name: 'console-shop',
  definitions: [Stock, Checkout, Audit, Feed],
  routes(gateway, { runtime }) {
    gateway.route({
      method: 'POST',
      url: '/checkouts/:id',
      access: 'public',
      schema: { params: Type.Object({ id: Type.String({ maxLength: 64 }) }) },
      handler: async (request) => {
        await runtime.startSaga(Checkout, request.params.id, { sku: 'sku-1' });
        return { started: request.params.id };
      },
    });
  },
});

async function eventually(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe.skipIf(chromiumPath === undefined)('the console in a real browser', () => {
  let browser: Browser;
  let running: TestApp;
  let page: Page;
  let shots: string;

  beforeAll(async () => {
    shots = mkdtempSync(join(tmpdir(), 'meridian-console-shots-'));
    running = await startTestApp(app);
    await running.runtime.startSaga(Checkout, 'warm-up', { sku: 'sku-0' });
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const token = await running.devAuth!.issue('console-operator', 'operator');
    await page.goto(`${running.url}/#token=${encodeURIComponent(token)}`);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await running?.destroy();
    rmSync(shots, { recursive: true, force: true });
  });

  it('serves its page at / to anyone, and its data only to operators', async () => {
    const root = await fetch(`${running.url}/`);
    expect(root.status).toBe(200);
    expect(root.headers.get('content-type')).toContain('text/html');
    expect((await fetch(`${running.url}/console/api/sagas`)).status).toBe(401);
    const customer = await running.devAuth!.issue('ada', 'customer');
    const refused = await fetch(`${running.url}/console/api/sagas`, {
      headers: { authorization: `Bearer ${customer}` },
    });
    expect(refused.status).toBe(403);
    expect((await fetch(`${running.url}/console/assets/..%2Fconsole.ts`)).status).toBe(404);
  });

  it('shows the overview live, with its charts', async () => {
    await page.getByTestId('live').filter({ hasText: 'live' }).waitFor({ timeout: 15_000 });
    await page.getByTestId('chart-throughput').locator('canvas').waitFor();
    await checkLayout(page, 'overview', shots);
  });

  it('a new saga appears live in the list, and its timeline opens', async () => {
    await page.getByTestId('nav-sagas').click();
    await page.getByTestId('view-sagas').waitFor();
    // The view renders before its first page of sagas arrives: wait for the row, then count it.
    await page.getByTestId('saga-row').filter({ hasText: 'warm-up' }).waitFor({ timeout: 10_000 });
    await expect(page.getByTestId('saga-row').filter({ hasText: 'warm-up' }).count()).resolves.toBe(1);
    // Started behind the page's back: it must appear without a reload.
    await fetch(`${running.url}/checkouts/order-live-1`, { method: 'POST' });
    await page.getByTestId('saga-row').filter({ hasText: 'order-live-1' }).waitFor({ timeout: 10_000 });
    await checkLayout(page, 'sagas', shots);
    await page.getByRole('link', { name: 'order-live-1' }).click();
    await page.getByTestId('view-saga').waitFor();
    await expect(page.getByTestId('saga-status-badge').textContent()).resolves.toBe('running');
    // Confirmed now: the timeline moves on to completed, live.
    await running.runtime.signal('order-live-1', 'confirm', {});
    await page.getByTestId('saga-status-badge').filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
    const calls = await page.getByTestId('timeline-call').allTextContents();
    expect(calls.some((text) => text.includes('ConsoleStock.reserve'))).toBe(true);
    expect(calls.some((text) => text.includes('finish') && text.includes('1 attempt'))).toBe(true);
    await checkLayout(page, 'saga', shots);
  });

  it('cancels a waiting saga from its timeline, and sees it end cancelled live', async () => {
    await fetch(`${running.url}/checkouts/order-cancel-1`, { method: 'POST' });
    await eventually('the saga waiting for its signal', async () =>
      (await running.runtime.journal('order-cancel-1')).some((entry) => entry.name === '$await:confirm'),
    );
    await page.goto(`${running.url}/#/sagas/order-cancel-1`);
    await page.getByTestId('saga-status-badge').filter({ hasText: 'running' }).waitFor({ timeout: 10_000 });
    await page.getByTestId('cancel-reason').fill('customer called');
    await page.getByTestId('cancel-saga').click();
    await page.getByTestId('cancel-message').filter({ hasText: 'Cancellation requested' }).waitFor();
    // The wait (a minute long) ends at once: the badge turns without the clock moving.
    await page.getByTestId('saga-status-badge').filter({ hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
    const calls = await page.getByTestId('timeline-call').allTextContents();
    expect(calls.some((text) => text.includes('cancelled') && text.includes('customer called'))).toBe(true);
    // Ended: the action is gone from the timeline.
    await expect(page.getByTestId('cancel-saga').count()).resolves.toBe(0);
    expect((await running.runtime.saga('order-cancel-1'))?.status).toBe('cancelled');
  });

  it('shows a consumer group’s lag rise while its records are held, and fall when they are handled', async () => {
    control.holding = true;
    await page.getByTestId('nav-topics').click();
    await page.getByTestId('view-topics').waitFor();
    const log = running.runtime;
    await appendAudit(running, ['a', 'b', 'c', 'd', 'e']);
    const lagOf = async () => {
      const cells = await page.getByTestId('lag-cell').allTextContents();
      return cells.map(Number).reduce((sum, value) => sum + value, 0);
    };
    await eventually('lag to show', async () => (await lagOf()) >= 4);
    await page.getByTestId('chart-lag').locator('canvas').waitFor();
    await checkLayout(page, 'topics', shots);
    control.holding = false;
    await eventually('lag to drain', async () => (await lagOf()) === 0);
    expect(log.running).toBe(true);
  });

  it('shows the nodes view, which on the embedded shape says this node owns everything', async () => {
    await page.getByTestId('nav-nodes').click();
    await page.getByTestId('view-nodes').filter({ hasText: 'Embedded shape' }).waitFor({ timeout: 10_000 });
    await checkLayout(page, 'nodes', shots);
  });

  it('retries a dead letter from the console, and its subscription handles it', async () => {
    await appendAudit(running, ['poison-1']);
    await page.getByTestId('nav-dead-letters').click();
    await page
      .getByTestId('dead-letter-row')
      .filter({ hasText: 'poison record refused' })
      .waitFor({ timeout: 10_000 });
    await checkLayout(page, 'dead-letters', shots);
    control.poisonFails = false;
    await page.getByTestId('retry-one').first().click();
    await page.getByTestId('retry-message').filter({ hasText: 'Retried 1 of 1' }).waitFor();
    await eventually('the retried record handled', () =>
      control.handled.some((text) => text.includes('poison-1')),
    );
  });
});

let feeds = 0;

async function appendAudit(running: TestApp, values: string[]): Promise<void> {
  feeds++;
  await running.runtime.startSaga(Feed, `feed-${feeds}`, { values });
  await running.runtime.handle(`feed-${feeds}`).result();
}
