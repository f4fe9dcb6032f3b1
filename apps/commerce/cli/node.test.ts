// `commerce node` as a real process: clear errors and a bounded non-zero exit when a dependency
// is unreachable or misconfigured, and a node that takes an order end to end against a real
// `commerce payments` process, on real PostgreSQL and Kafka, and drains on SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkKafka, checkPostgres } from '../../../src/cli/index.ts';
import { issueToken } from '../../../src/http/index.ts';
import { createKafkaLog, parseBrokerList } from '../../../src/log/kafka/index.ts';
import { testSchemas } from '../../../src/store/postgres/test-schema.ts';
import { checkPayments } from './payments-check.ts';

const root = resolve(import.meta.dirname, '../../..');
const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const kafkaText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const unique = `${process.pid}-${randomBytes(3).toString('hex')}`;

interface Child {
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | null>;
  /** Resolves with the first match of `pattern` in the output; rejects after `ms` or when the process exits first. */
  waitFor(pattern: RegExp, ms: number): Promise<RegExpExecArray>;
}

const children: Child[] = [];
const dataDirs: string[] = [];

afterAll(() => {
  for (const { child } of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

/** The cluster's token secret and payment key, as an operator would set them on every node. */
const authSecret = randomBytes(32).toString('base64url');
const paymentsApiKey = randomBytes(32).toString('base64url');
let operatorToken: Promise<string> | undefined;
const operator = async () => {
  operatorToken ??= issueToken({ secret: authSecret, subject: 'node-test', role: 'operator' });
  return { authorization: `Bearer ${await operatorToken}` };
};

function meridian(args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, [join(root, 'apps/commerce/cli/main.ts'), ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    // None of the node's variables leak in from the environment the tests run in.
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      MERIDIAN_AUTH_SECRET: authSecret,
      MERIDIAN_PAYMENTS_API_KEY: paymentsApiKey,
      ...env,
    },
  });
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const handle: Child = {
    child,
    output: () => output,
    exited,
    waitFor(pattern, ms) {
      return new Promise((done, fail) => {
        const check = () => {
          const match = pattern.exec(output);
          if (match === null) return;
          cleanup();
          done(match);
        };
        const timer = setTimeout(() => {
          cleanup();
          fail(new Error(`no ${pattern} within ${ms} ms:\n${output}`));
        }, ms);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        void exited.then((code) => {
          if (!listeners.has(check)) return;
          cleanup();
          fail(new Error(`exited (${code}) before ${pattern}:\n${output}`));
        });
        check();
      });
    },
  };
  children.push(handle);
  return handle;
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise<void>((done) => server.close(() => done()));
  return port;
}

/** Exit code and elapsed time of a process expected to fail at start. */
async function failsWithin(child: Child, ms: number): Promise<{ code: number | null; elapsedMs: number }> {
  const started = performance.now();
  const timer = setTimeout(() => child.child.kill('SIGKILL'), ms);
  const code = await child.exited;
  clearTimeout(timer);
  return { code, elapsedMs: performance.now() - started };
}

const skipped = (variables: string[]) =>
  variables.every((name) => process.env[name]) ? '' : ` (skipped: set ${variables.join(' and ')})`;

describe('commerce node: dependency checks', () => {
  it('exits 1 within the bound, naming PostgreSQL, when nothing listens on its port', async () => {
    const port = await closedPort();
    const child = meridian([
      'node',
      `--pg=postgres://postgres@127.0.0.1:${port}/test`,
      '--kafka=127.0.0.1:1',
      '--payments=http://127.0.0.1:1',
      '--check-timeout-ms=2000',
    ]);
    const { code, elapsedMs } = await failsWithin(child, 20_000);
    expect(code, child.output()).toBe(1);
    expect(elapsedMs).toBeLessThan(15_000);
    expect(child.output()).toContain(
      `commerce node: UNAVAILABLE: PostgreSQL at 127.0.0.1:${port} refused the connection: start PostgreSQL there, or fix --pg (MERIDIAN_PG_URL)`,
    );
  }, 30_000);

  it("exits 2 with the usage hint for a bad option; its help and the demo's say how to get from one to the other", async () => {
    const bad = meridian(['node', '--work-partitions=0']);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain("Run 'commerce node --help' for every option.");
    const help = meridian(['node', '--help']);
    expect(await help.exited).toBe(0);
    expect(help.output()).toContain('Usage: commerce node [options]');
    expect(help.output()).toContain("'npm start' (commerce demo) runs\nthe same app on the embedded shape");
    const demoHelp = meridian(['demo', '--help']);
    expect(await demoHelp.exited).toBe(0);
    expect(demoHelp.output()).toContain("with 'commerce node'\n(npm run commerce -- node --help)");
  }, 30_000);

  describe.skipIf(!pgUrl)(`with PostgreSQL${skipped(['MERIDIAN_TEST_PG_URL'])}`, () => {
    it('exits 1 within the bound, naming Kafka, when no broker listens', async () => {
      const port = await closedPort();
      const child = meridian([
        'node',
        `--pg=${pgUrl}`,
        `--kafka=127.0.0.1:${port}`,
        '--payments=http://127.0.0.1:1',
        '--check-timeout-ms=2000',
      ]);
      const { code, elapsedMs } = await failsWithin(child, 20_000);
      expect(code, child.output()).toBe(1);
      expect(elapsedMs).toBeLessThan(15_000);
      expect(child.output()).toContain(
        `commerce node: UNAVAILABLE: Kafka brokers 127.0.0.1:${port} are unreachable`,
      );
      expect(child.output()).toContain(
        "start Kafka ('npm run kafka:start' runs one broker on 127.0.0.1:9092)",
      );
    }, 30_000);

    it('names a database that does not exist and how to create it', async () => {
      const url = new URL(pgUrl!);
      url.pathname = `/no_such_db_${unique.replace('-', '_')}`;
      await expect(checkPostgres(url.toString(), 2000)).rejects.toThrow(
        `has no database 'no_such_db_${unique.replace('-', '_')}': create it`,
      );
    });
  });

  describe.skipIf(!kafkaText)(`with Kafka${skipped(['MERIDIAN_TEST_KAFKA_BROKERS'])}`, () => {
    it('refuses a work topic whose partition count differs from --work-partitions', async () => {
      const brokers = parseBrokerList(kafkaText!);
      const topic = `node-check-${unique}`;
      const log = await createKafkaLog({ brokers });
      try {
        await log.createTopic(topic, { partitions: 3 });
        await expect(
          checkKafka({ brokers, clientId: 'check', workTopic: topic, workPartitions: 4, timeoutMs: 5000 }),
        ).rejects.toThrow(
          `The work topic '${topic}' has 3 partitions but this node was given --work-partitions 4: every node of a cluster must use the topic's count (pass --work-partitions 3)`,
        );
        await checkKafka({
          brokers,
          clientId: 'check',
          workTopic: topic,
          workPartitions: 3,
          timeoutMs: 5000,
        });
      } finally {
        await log.deleteTopic(topic).catch(() => undefined);
        await log.close();
      }
    }, 60_000);
  });

  it('names a payment gateway that is unreachable, and a URL that is not one', async () => {
    const port = await closedPort();
    await expect(checkPayments(`http://127.0.0.1:${port}`, 2000)).rejects.toThrow(
      `The payment gateway at http://127.0.0.1:${port} is unreachable`,
    );
    const other = createServer((_, response) => response.writeHead(404).end('{}'));
    await new Promise<void>((done) => other.listen(0, '127.0.0.1', done));
    const url = `http://127.0.0.1:${(other.address() as { port: number }).port}`;
    try {
      await expect(checkPayments(url, 2000)).rejects.toThrow(
        `${url} answered GET /settings with 404 and is not a Meridian payment gateway`,
      );
    } finally {
      other.close();
    }
  });
});

/** A JSON request to a node (as an operator) or, with `payments`, to the payment gateway (with its key). */
async function json(
  url: string,
  init: RequestInit = {},
  to: 'node' | 'payments' = 'node',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const credential = to === 'node' ? await operator() : { authorization: `Bearer ${paymentsApiKey}` };
  const response = await fetch(url, {
    ...init,
    headers: { ...credential, ...(init.headers as Record<string, string> | undefined) },
    signal: AbortSignal.timeout(15_000),
  });
  return {
    status: response.status,
    body: ((await response.json().catch(() => undefined)) ?? {}) as Record<string, unknown>,
  };
}

describe.skipIf(!pgUrl || !kafkaText)(
  `commerce node: a real node${skipped(['MERIDIAN_TEST_PG_URL', 'MERIDIAN_TEST_KAFKA_BROKERS'])}`,
  () => {
    const schemas = testSchemas(pgUrl ?? '', 'node');
    const used: string[] = [];
    let payments: Child;
    let paymentsUrl: string;

    beforeAll(async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'meridian-node-test-'));
      dataDirs.push(dataDir);
      payments = meridian(['payments', '--port=0', `--data-dir=${dataDir}`]);
      paymentsUrl = (await payments.waitFor(/Payment gateway listening on (http:\/\/\S+)/, 20_000))[1]!;
    }, 30_000);

    afterAll(async () => {
      payments.child.kill('SIGTERM');
      for (const schema of used) await schemas.drop(schema);
      await schemas.end();
      const log = await createKafkaLog({ brokers: parseBrokerList(kafkaText!) });
      for (const [index] of used.entries()) {
        await log.deleteTopic(`node-test-work-${unique}-${index}`).catch(() => undefined);
      }
      await log.close();
    }, 60_000);

    /** A node on a schema, work topic and group of its own; resolves with its URL once its banner is out. */
    async function startNode(extra: string[] = []): Promise<{ node: Child; url: string; nodeId: string }> {
      const index = used.length;
      const schema = schemas.next();
      used.push(schema);
      const nodeId = `test-node-${unique}-${index}`;
      const node = meridian(
        [
          'node',
          '--port=0',
          `--node-id=${nodeId}`,
          `--work-topic=node-test-work-${unique}-${index}`,
          `--group=node-test-nodes-${unique}-${index}`,
          '--work-partitions=4',
          ...extra,
        ],
        {
          MERIDIAN_PG_URL: pgUrl!,
          MERIDIAN_PG_SCHEMA: schema,
          MERIDIAN_KAFKA_BROKERS: kafkaText!,
          MERIDIAN_PAYMENTS_URL: paymentsUrl,
        },
      );
      const url = (await node.waitFor(/Commerce node '[^']+' listening on (http:\/\/\S+)/, 60_000))[1]!;
      await node.waitFor(/SIGTERM or Ctrl-C drains/, 5000);
      return { node, url, nodeId };
    }

    async function placeOrder(url: string, key: string): Promise<string> {
      const sku = `node-test-${unique}`;
      const stocked = await json(`${url}/inventory/${sku}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ available: 3, price: 25 }),
      });
      expect(stocked.status, JSON.stringify(stocked.body)).toBe(200);
      const placed = await json(`${url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ customerId: 'ada', items: [{ sku, qty: 1 }] }),
      });
      expect(placed.status, JSON.stringify(placed.body)).toBe(202);
      return String(placed.body.orderId);
    }

    /** Until the order's history shows `event` (bounded): the saga is at that step. */
    async function reached(url: string, orderId: string, event: string): Promise<void> {
      const deadline = performance.now() + 15_000;
      for (;;) {
        const order = await json(`${url}/orders/${orderId}`);
        const history = (order.body.history ?? []) as Array<{ event: string }>;
        if (history.some((entry) => entry.event === event)) return;
        if (performance.now() > deadline) throw new Error(`order ${orderId} never reached '${event}'`);
        await new Promise((done) => setTimeout(done, 50));
      }
    }

    async function setPaymentLatency(latencyMs: number): Promise<void> {
      const changed = await json(
        `${paymentsUrl}/settings`,
        {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ latencyMs }),
        },
        'payments',
      );
      expect(changed.status).toBe(200);
    }

    it('answers the probes, takes an order end to end, and drains on SIGTERM with exit 0', async () => {
      // With Redis, the catalog it prices the order from is cached there too (`--redis`).
      const redisUrl = process.env.MERIDIAN_TEST_REDIS_URL;
      const { node, url, nodeId } = await startNode([
        '--shutdown-timeout-ms=20000',
        ...(redisUrl === undefined ? [] : [`--redis=${redisUrl}`]),
      ]);
      expect((await json(`${url}/healthz`)).status).toBe(200);
      const ready = await json(`${url}/readyz`);
      expect(ready.status, JSON.stringify(ready.body)).toBe(200);

      const orderId = await placeOrder(url, `node-test-order-${unique}`);
      const order = await json(`${url}/orders/${orderId}`, { headers: { prefer: 'wait=10' } });
      expect(order.body, JSON.stringify(order.body)).toMatchObject({ status: 'confirmed', total: 25 });
      const charges = await json(`${paymentsUrl}/charges?orderId=${orderId}`, {}, 'payments');
      expect(charges.body).toMatchObject([{ orderId, amount: 25, status: 'charged' }]);
      if (redisUrl !== undefined) {
        expect(node.output()).toContain('catalog cache    in process + Redis');
        const policies = await json(`${url}/policies`);
        expect((policies.body.policies as Record<string, unknown>)['catalog-entries']).toMatchObject({
          redisErrors: 0,
          misses: 1,
        });
      }

      const signalled = performance.now();
      node.child.kill('SIGTERM');
      expect(await node.exited, node.output()).toBe(0);
      expect(performance.now() - signalled).toBeLessThan(25_000);
      expect(node.output()).toContain(`Node '${nodeId}' stopped cleanly.`);
    }, 120_000);

    it('exits 1 with a message when the drain outruns --shutdown-timeout-ms, and at once on a second signal', async () => {
      // Every payment call now hangs past its timeout, so a charge in flight holds the drain up.
      await setPaymentLatency(60_000);
      try {
        const bounded = await startNode(['--shutdown-timeout-ms=1000']);
        await reached(
          bounded.url,
          await placeOrder(bounded.url, `node-test-slow-${unique}`),
          'stock reserved',
        );
        let signalled = performance.now();
        bounded.node.child.kill('SIGTERM');
        expect(await bounded.node.exited, bounded.node.output()).toBe(1);
        expect(performance.now() - signalled).toBeLessThan(6000);
        expect(bounded.node.output()).toContain('the drain did not finish within 1000 ms');

        const twice = await startNode();
        await reached(twice.url, await placeOrder(twice.url, `node-test-twice-${unique}`), 'stock reserved');
        twice.node.child.kill('SIGTERM');
        await twice.node.waitFor(/SIGTERM: draining/, 5000);
        signalled = performance.now();
        twice.node.child.kill('SIGTERM');
        expect(await twice.node.exited, twice.node.output()).toBe(130);
        expect(performance.now() - signalled).toBeLessThan(3000);
        expect(twice.node.output()).toContain('SIGTERM again: exiting now');
      } finally {
        await setPaymentLatency(0);
      }
    }, 120_000);
  },
);
