// The console's nodes view on the cluster shape, against two real nodes in this process (each
// with its own gateway, on one PostgreSQL schema and one Kafka group): the live snapshots every
// node pushes over Server-Sent Events say which node owns which work partition, with the fencing
// epoch of its claim, and when one node leaves, the other's snapshots show it take the
// partitions over at higher epochs. With MERIDIAN_TEST_CHROMIUM, the same is watched in a real
// browser: node a's console shows both nodes' partitions, then a alone holding all of them, and
// the view's layout is checked. Runs when MERIDIAN_TEST_PG_URL and MERIDIAN_TEST_KAFKA_BROKERS
// name a PostgreSQL and a Kafka broker (CI sets both).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { defineApp } from '../app/app.ts';
import { type RunningApp, startApp } from '../app/host.ts';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import { parseBrokerList } from '../log/kafka/options.ts';
import { openPostgresStore, type PostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import { checkLayout } from './browser.fixture.ts';
import type { ConsoleSnapshot } from './events.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const workPartitions = 4;
const chromiumPath = process.env.MERIDIAN_TEST_CHROMIUM;

/** Node `url`'s console in a real browser, on its nodes view (undefined without a browser). */
async function openNodesView(url: string): Promise<{ browser: Browser; page: Page } | undefined> {
  if (chromiumPath === undefined) return undefined;
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  await page.getByTestId('nav-nodes').click();
  return { browser, page };
}

/** Waits (bounded) until the view shows `nodes` node rows and every partition's row. */
async function shown(page: Page, nodes: number): Promise<string[]> {
  const count = (testId: string) => `document.querySelectorAll('[data-testid="${testId}"]').length`;
  await page.waitForFunction(
    `${count('node-row')} === ${nodes} && ${count('partition-row')} === ${workPartitions}`,
    undefined,
    { timeout: 30_000 },
  );
  return page.getByTestId('node-row').allInnerTexts();
}

type Claims = NonNullable<ConsoleSnapshot['partitions']>;

/** Reads `url`'s console events until a snapshot satisfies `wanted` (bounded); returns it. */
async function snapshotWhere(url: string, wanted: (claims: Claims) => boolean): Promise<Claims> {
  const response = await fetch(`${url}/console/api/events`, { signal: AbortSignal.timeout(30_000) });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the event stream ended');
      buffered += decoder.decode(value, { stream: true });
      const frames = buffered.split('\n\n');
      buffered = frames.pop()!;
      for (const frame of frames) {
        if (!frame.startsWith('event: snapshot\n')) continue;
        const snapshot = JSON.parse(frame.slice(frame.indexOf('data: ') + 6)) as ConsoleSnapshot;
        if (snapshot.partitions !== null && wanted(snapshot.partitions)) return snapshot.partitions;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

describe.skipIf(!pgUrl || !brokersText)('the console’s nodes view on two real nodes', () => {
  const schemas = testSchemas(pgUrl ?? '', 'console_nodes');
  const schema = schemas.next();
  const suffix = randomUUID().slice(0, 8);
  const opened: Array<{ app: RunningApp; store: PostgresStore; log: KafkaLog }> = [];

  afterAll(async () => {
    for (const node of opened.splice(0).reverse()) {
      await node.app.close();
      await node.log.close();
      await node.store.close();
    }
    await schemas.drop(schema);
    await schemas.end();
  });

  async function node(name: string): Promise<RunningApp> {
    const store = await openPostgresStore({ connectionString: pgUrl!, schema });
    const log = new KafkaLog({ brokers: parseBrokerList(brokersText!), clientId: `meridian-nodes-${name}` });
    const app = await startApp(defineApp({ name: `nodes-${name}`, definitions: [] }), {
      store,
      log,
      auth: false,
      runtime: {
        deadLetterTopic: `meridian.dead-letters.${suffix}`,
        drainTimeoutMs: 1000,
        cluster: {
          node: name,
          workPartitions,
          workTopic: `meridian.work.${suffix}`,
          group: `meridian.nodes.${suffix}`,
        },
      },
    });
    opened.push({ app, store, log });
    return app;
  }

  it('shows each node’s partitions with their epochs, live, and the takeover when a node leaves', async () => {
    const a = await node('a');
    const b = await node('b');
    const split = (claims: Claims) =>
      claims.length === workPartitions && new Set(claims.map((claim) => claim.owner)).size === 2;
    // Whichever node is asked, it tells the whole cluster's ownership, not only its own.
    const fromB = await snapshotWhere(b.url, split);
    const claims = await snapshotWhere(a.url, split);
    expect(claims.map((claim) => claim.partition)).toEqual([0, 1, 2, 3]);
    expect(claims.every((claim) => claim.epoch >= 1)).toBe(true);
    for (const runtime of [a.runtime, b.runtime]) {
      const node = runtime.cluster!.node;
      const shown = claims.filter((claim) => claim.owner === node).map((claim) => claim.partition);
      expect(shown, `node ${node}'s partitions`).toEqual(runtime.cluster!.owned());
    }
    expect(fromB.map(({ partition, owner }) => ({ partition, owner }))).toEqual(
      claims.map(({ partition, owner }) => ({ partition, owner })),
    );
    const viewed = await openNodesView(a.url);
    const shots = mkdtempSync(join(tmpdir(), 'meridian-nodes-shots-'));
    try {
      if (viewed !== undefined) {
        const rows = await shown(viewed.page, 2);
        expect(rows.some((row) => row.includes('a (this node)'))).toBe(true);
        expect(rows.some((row) => row.startsWith('b'))).toBe(true);
        await checkLayout(viewed.page, 'nodes-two', shots);
      }
      // b leaves: a's next snapshots show it holding every partition, b's at a newer epoch.
      const leftB = claims.filter((claim) => claim.owner === 'b');
      await opened[1]!.app.close();
      const after = await snapshotWhere(a.url, (now) => now.every((claim) => claim.owner === 'a'));
      for (const claim of leftB) {
        expect(after[claim.partition]!.epoch, `partition ${claim.partition}`).toBeGreaterThan(claim.epoch);
      }
      if (viewed !== undefined) {
        // The page learns it from its own live stream, with no reload.
        const [row] = await shown(viewed.page, 1);
        for (const claim of after) expect(row).toContain(`${claim.partition} (${claim.epoch})`);
        await checkLayout(viewed.page, 'nodes-one', shots);
      }
    } finally {
      await viewed?.browser.close();
      rmSync(shots, { recursive: true, force: true });
    }
  }, 120_000);
});
