// The markets app on the cluster shape, over real Kafka, PostgreSQL and (when configured) Redis:
// two node processes share the trades topic's partitions; reference data goes in through one
// node and trades through the other, and both nodes answer the whole HTTP API — windows, the
// latest window through the cache, the moving minute, alerts, the live feed — with the results of
// every partition, whichever node's job computed them. Needs MERIDIAN_TEST_PG_URL and
// MERIDIAN_TEST_KAFKA_BROKERS; MERIDIAN_TEST_REDIS_URL adds the shared cache. The nodes share a
// token signing secret: a reader's token reads from either node, a writer's writes through either.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../src/children.fixture.ts';
import { issueToken } from '../../src/http/index.ts';
import { KafkaLog, parseBrokerList } from '../../src/log/kafka/index.ts';
import { openPostgresStore } from '../../src/store/postgres/index.ts';
import { testSchemas } from '../../src/store/postgres/test-schema.ts';
import { type MovingView, prefixedTopics, type WindowView } from './analytics.ts';
import { marketsPartitions } from './app.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const redisUrl = process.env.MERIDIAN_TEST_REDIS_URL;
const nodeScript = join(import.meta.dirname, 'cluster-node.ts');
/** A multiple of the minute: 5 s windows and the moving minute's slices align with it. */
const t0 = 1_767_600_000_000;
const symbols = ['AAA', 'BBB', 'CCC', 'DDD', 'EEE', 'FFF', 'GGG', 'HHH'];
const authSecret = randomBytes(32).toString('base64url');
const token = (subject: string, scopes: string[]) =>
  issueToken({ secret: authSecret, subject, role: 'customer', scopes });
const reader = token('reader', ['markets:read']).then((t) => ({ authorization: `Bearer ${t}` }));
const writer = token('writer', ['markets:write']).then((t) => ({
  authorization: `Bearer ${t}`,
  'content-type': 'application/json',
}));

/** Per symbol, a trade a second for 90 s at 100.00 — AAA jumps to 130.00 in its last 5 s — then one at 100 s. */
function trades(): unknown[] {
  const list: unknown[] = [];
  for (let second = 0; second < 90; second++) {
    symbols.forEach((symbol, index) => {
      const price = symbol === 'AAA' && second >= 85 ? '130.00' : '100.00';
      list.push({ timestampMs: t0 + second * 1000, symbol, price, qty: 10 + index });
    });
  }
  for (const symbol of symbols) list.push({ timestampMs: t0 + 100_000, symbol, price: '100.00', qty: 1 });
  return list;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let attempt = 0; attempt < 600; attempt++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const response = await fetch(url, { headers: await reader });
  return { status: response.status, body: (await response.json()) as T };
}

interface NodeStatus {
  partitions?: Record<string, { recordsIn: number; lag: number }>;
  feedPartitions?: number;
}

describe.skipIf(!pgUrl || !brokersText)('markets app on a two-node cluster', () => {
  const schemas = testSchemas(pgUrl ?? '', 'mapp');
  const suffix = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const prefix = `markets-app-${suffix}-`;
  const names = prefixedTopics(prefix);
  const log = new KafkaLog({ brokers: parseBrokerList(brokersText ?? ''), clientId: 'markets-app-test' });
  const schema = schemas.next();
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    for (const topic of Object.values(names)) await log.deleteTopic(topic).catch(() => undefined);
    await log.close();
    await schemas.drop(schema);
    await schemas.end();
  });

  /** Starts a node and resolves with its base URL once it listens. */
  function startNode(node: string): Promise<string> {
    const child = spawnNode(
      nodeScript,
      [
        ...['--brokers', brokersText!, '--pg', pgUrl!, '--schema', schema, '--node', node],
        ...['--topic-prefix', prefix, '--group', `markets-app-${suffix}`, '--session-timeout-ms', '6000'],
        ...(redisUrl === undefined ? [] : ['--redis', redisUrl]),
      ],
      { env: { ...process.env, MERIDIAN_AUTH_SECRET: authSecret } },
    );
    children.push(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    return new Promise((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        const match = /^listening (\S+)$/m.exec(chunk);
        if (match !== null) resolve(match[1]!);
      });
      child.once('exit', (code) => reject(new Error(`node ${node} exited with ${code}: ${stderr}`)));
    });
  }

  it('answers windows, latest, moving minute, alerts and the live feed from either node', {
    timeout: 180_000,
  }, async () => {
    // Kept for ever: the trades carry fixed event times, which a time-based retention would expire.
    for (const topic of Object.values(names))
      await log.createTopic(topic, { partitions: marketsPartitions, retentionMs: null });
    await (await openPostgresStore({ connectionString: pgUrl!, schema })).close();
    const urls = [await startNode('a'), await startNode('b')];
    // Both nodes hold partitions, and each one's live feed follows every partition.
    await until('the group to split the partitions', async () => {
      const statuses = await Promise.all(urls.map((url) => getJson<NodeStatus>(`${url}/markets/job`)));
      const held = statuses.map((s) => Object.keys(s.body.partitions ?? {}).length);
      const ready = statuses.every((s) => s.body.feedPartitions === marketsPartitions);
      return ready && held.every((n) => n > 0) && held[0]! + held[1]! === marketsPartitions
        ? true
        : undefined;
    });
    const feed = await fetch(`${urls[0]}/markets/stream`, { headers: await reader });
    const feedReader = feed.body!.getReader();
    // Without a credential, or with a reader's, nothing is written.
    const body = JSON.stringify({ trades: trades() });
    expect((await fetch(`${urls[1]}/markets/trades`, { method: 'POST', body })).status).toBe(401);
    const asReader = { ...(await reader), 'content-type': 'application/json' };
    expect(
      (await fetch(`${urls[1]}/markets/trades`, { method: 'POST', body, headers: asReader })).status,
    ).toBe(403);

    const put = await fetch(`${urls[0]}/markets/reference/AAA`, {
      method: 'PUT',
      headers: await writer,
      body: JSON.stringify({ sector: 'Technology', tickSize: '0.01', validFromMs: 0 }),
    });
    expect(put.status).toBe(202);
    const posted = await fetch(`${urls[1]}/markets/trades`, { method: 'POST', body, headers: await writer });
    expect(posted.status).toBe(202);

    // 18 closed windows per symbol (starts 0 to 85 s), on both nodes.
    for (const url of urls) {
      for (const symbol of symbols) {
        const windows = await until(`${symbol}'s windows from ${url}`, async () => {
          const { body } = await getJson<{ windows: WindowView[] }>(
            `${url}/markets/symbols/${symbol}/windows?fromMs=${t0}&toMs=${t0 + 100_000}`,
          );
          return body.windows.length === 18 ? body.windows : undefined;
        });
        expect(windows.every((w) => w.count === 5)).toBe(true);
        expect(windows[17]!.startMs).toBe(t0 + 85_000);
      }
    }
    const statuses = await Promise.all(urls.map((url) => getJson<NodeStatus>(`${url}/markets/job`)));
    // Each node's jobs read some of the trades: both computed results the other serves.
    for (const status of statuses) {
      const read = Object.values(status.body.partitions!).reduce((total, p) => total + p.recordsIn, 0);
      expect(read).toBeGreaterThan(0);
    }

    for (const url of urls) {
      const latest = await getJson<WindowView>(`${url}/markets/symbols/AAA/latest`);
      expect(latest.status).toBe(200);
      expect(latest.body).toMatchObject({ startMs: t0 + 85_000, vwap: '130.0000', sector: 'Technology' });
      for (const symbol of symbols.slice(1)) {
        const other = await getJson<WindowView>(`${url}/markets/symbols/${symbol}/latest`);
        expect(other.body).toMatchObject({ symbol, startMs: t0 + 85_000, vwap: '100.0000', sector: null });
      }
      const moving = await getJson<MovingView>(`${url}/markets/symbols/BBB/moving`);
      expect(moving.body).toMatchObject({ endMs: t0 + 95_000, movingVwap: 100 });
      // One anomaly: AAA's last 5 s at 130.00 against eleven slices at 100.00.
      const alerts = await getJson<{ alerts: MovingView[] }>(
        `${url}/markets/alerts?fromMs=${t0}&toMs=${t0 + 200_000}`,
      );
      expect(alerts.body.alerts).toEqual([
        expect.objectContaining({ symbol: 'AAA', endMs: t0 + 90_000, lastVwap: 130, sector: 'Technology' }),
      ]);
    }

    if (redisUrl !== undefined) {
      // The latest windows are in the shared Redis tier, one hash per symbol.
      const { Redis } = await import('ioredis');
      const redis = new Redis(redisUrl);
      try {
        const keys = await redis.keys(`meridian:markets:${schema}:market-latest:*`);
        expect(keys.sort()).toEqual(
          symbols.map((symbol) => `meridian:markets:${schema}:market-latest:${symbol}`),
        );
        for (const key of keys) await redis.del(key);
      } finally {
        redis.disconnect();
      }
    }

    // Node a's live feed carries every symbol's windows, those node b's jobs closed too.
    let feedText = '';
    const decoder = new TextDecoder();
    while (!symbols.every((symbol) => feedText.includes(`"symbol":"${symbol}","startMs":${t0 + 85_000},`))) {
      const chunk = await feedReader.read();
      if (chunk.done) break;
      feedText += decoder.decode(chunk.value);
    }
    await feedReader.cancel();
    for (const symbol of symbols)
      expect(feedText).toContain(`"symbol":"${symbol}","startMs":${t0 + 85_000},`);

    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('exit', (code) => {
              expect(code).toBe(0);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  });
});
