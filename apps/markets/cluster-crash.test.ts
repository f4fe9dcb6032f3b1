// Exactly-once on the cluster shape across kill -9: the markets app (its whole dataflow: 5 s
// windows, the moving minute, alerts) run by three real node processes over real Kafka and
// PostgreSQL, the trades topic's partitions split among them by the consumer group. One node is
// SIGKILLed at a seeded moment (after a seeded number of the nodes' commits) and restarted; its
// partitions move to the others when the group notices, and some come back. The read models and
// the outbox rows (closed windows, late trades, alerts) must then equal, row for row, those of an
// uninterrupted run by a single node. Needs MERIDIAN_TEST_PG_URL and
// MERIDIAN_TEST_KAFKA_BROKERS. MERIDIAN_MARKETS_CLUSTER_SEED picks the trades and the kill.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../src/children.fixture.ts';
import { KafkaLog, parseBrokerList } from '../../src/log/kafka/index.ts';
import { openPostgresStore } from '../../src/store/postgres/index.ts';
import { testSchemas } from '../../src/store/postgres/test-schema.ts';
import { seededRandom } from '../../src/testing/index.ts';
import { prefixedTopics, readModels } from './analytics.ts';
import { marketsPartitions } from './app.ts';
import { marketsFirstFencingPartition } from './cluster-node.ts';
import { TradeGenerator } from './generator.ts';
import { encodeTrade } from './trade.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const seed = Number(process.env.MERIDIAN_MARKETS_CLUSTER_SEED ?? 20261207);
const nodeScript = join(import.meta.dirname, 'cluster-node.ts');
/** The nodes' token signing secret: the test calls no route, but a node refuses to start without one. */
const authSecret = randomBytes(32).toString('base64url');
const partitions = marketsPartitions;

describe.skipIf(!pgUrl || !brokersText)('markets app on a three-node cluster', () => {
  const schemas = testSchemas(pgUrl ?? '', 'mcrash');
  const suffix = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const prefix = `markets-crash-${suffix}-`;
  const names = prefixedTopics(prefix);
  const tradesTopic = names.trades;
  const log = new KafkaLog({ brokers: parseBrokerList(brokersText ?? ''), clientId: 'markets-crash-test' });
  const used: string[] = [];
  afterAll(async () => {
    for (const topic of Object.values(names)) await log.deleteTopic(topic).catch(() => undefined);
    await log.close();
    for (const schema of used) await schemas.drop(schema);
    await schemas.end();
  });

  async function writeTrades(): Promise<number[]> {
    // Kept for ever: the trades carry fixed event times, which a time-based retention would expire.
    for (const topic of Object.values(names)) await log.createTopic(topic, { partitions, retentionMs: null });
    const generator = new TradeGenerator({
      symbols: 24,
      random: seededRandom(seed),
      disorderMs: 2000,
      lateFraction: 0.01,
    });
    for (let batch = 0; batch < 40; batch++) {
      const trades = generator.next(500, 1_767_600_000_000 + batch * 1000);
      await log.append(tradesTopic, trades.map(encodeTrade));
    }
    const ends: number[] = [];
    for (let partition = 0; partition < partitions; partition++)
      ends.push((await log.offsets(tradesTopic, partition)).end);
    return ends;
  }

  /** A fresh schema, migrated once here (not by three nodes at once). */
  async function freshSchema(): Promise<string> {
    const schema = schemas.next();
    used.push(schema);
    await (await openPostgresStore({ connectionString: pgUrl!, schema })).close();
    return schema;
  }

  interface Run {
    readonly children: Map<string, ChildProcess>;
    readonly done: Promise<void>;
    /** The node processes (`<node>#<start>`) that committed for each partition. */
    readonly committers: Map<number, Set<string>>;
    start(node: string): ChildProcess;
  }

  /** Runs nodes on `schema` until every partition's committed position reaches its end. */
  function run(
    schema: string,
    group: string,
    ends: readonly number[],
    onCommit: (commit: {
      node: string;
      incarnation: string;
      partition: number;
      position: number;
    }) => void = () => undefined,
  ): Run {
    const children = new Map<string, ChildProcess>();
    const reached = new Set<number>();
    const committers = new Map<number, Set<string>>();
    let finish: () => void = () => undefined;
    let fail: (error: Error) => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    let starts = 0;
    const start = (node: string): ChildProcess => {
      const incarnation = `${node}#${++starts}`;
      const child = spawnNode(
        nodeScript,
        [
          ...['--brokers', brokersText!, '--pg', pgUrl!, '--schema', schema, '--node', node],
          ...['--topic-prefix', prefix, '--group', group],
          ...['--session-timeout-ms', '6000', '--no-relay'],
        ],
        { env: { ...process.env, MERIDIAN_AUTH_SECRET: authSecret } },
      );
      children.set(node, child);
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-4000);
      });
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) {
          const match = /^committed (\d+) (\d+)$/.exec(line);
          if (match === null) continue;
          const processes = committers.get(Number(match[1])) ?? new Set<string>();
          committers.set(Number(match[1]), processes.add(incarnation));
          // A committed position never goes back: at the end, the partition's output is final.
          if (Number(match[2]) === ends[Number(match[1])]) reached.add(Number(match[1]));
          onCommit({ node, incarnation, partition: Number(match[1]), position: Number(match[2]) });
          if (reached.size === partitions) finish();
        }
      });
      child.once('exit', (code, signal) => {
        if (signal !== 'SIGKILL' && signal !== 'SIGTERM' && code !== 0)
          fail(new Error(`node ${node} exited with ${code}: ${stderr}`));
      });
      return child;
    };
    return { children, done, committers, start };
  }

  async function stopAll(children: Map<string, ChildProcess>): Promise<void> {
    await Promise.all(
      [...children.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  /** The read models' rows and each partition's outbox rows in commit order. */
  async function dump(schema: string): Promise<string[]> {
    const store = await openPostgresStore({ connectionString: pgUrl!, schema });
    try {
      const lines: string[] = [];
      for (const type of Object.values(readModels)) {
        for (let afterId: string | undefined; ; ) {
          const after = afterId;
          const rows = await store.read((tx) =>
            tx.entities.list(type, after === undefined ? { limit: 1000 } : { afterId: after, limit: 1000 }),
          );
          if (rows.length === 0) break;
          for (const row of rows) lines.push(`row ${type} ${row.id} ${JSON.stringify(row.state)}`);
          afterId = rows[rows.length - 1]!.id;
        }
      }
      for (let partition = 0; partition < partitions; partition++) {
        const rows = await store.read((tx) =>
          tx.outbox.pending(1000, { partitions: [marketsFirstFencingPartition + partition] }),
        );
        // A partition's closed windows, late trades and alerts are a few hundred here: one page holds them all.
        expect(rows.length).toBeLessThan(1000);
        for (const row of rows) {
          lines.push(
            `outbox ${partition} ${row.topic} ${Buffer.from(row.key ?? []).toString('hex')} ${Buffer.from(row.value ?? []).toString('hex')} ${row.timestamp}`,
          );
        }
      }
      return lines;
    } finally {
      await store.close();
    }
  }

  it('gives the read models and outbox rows of an uninterrupted run after a node is SIGKILLed and restarted', {
    timeout: 300_000,
  }, async () => {
    const ends = await writeTrades();
    const random = seededRandom(seed + 1);

    const referenceSchema = await freshSchema();
    const reference = run(referenceSchema, `markets-crash-ref-${suffix}`, ends);
    reference.start('solo');
    await reference.done;
    await stopAll(reference.children);

    const crashedSchema = await freshSchema();
    // The moment: the seeded k-th commit of the three nodes that leaves its partition unfinished;
    // the node that made it is SIGKILLed at once, holding that partition, and started again.
    const killAtCommit = 2 + Math.floor(random.next() * 6);
    let seen = 0;
    let kill: { node: string; incarnation: string; partition: number } | undefined;
    let killed: () => void = () => undefined;
    const killedNow = new Promise<void>((resolve) => {
      killed = resolve;
    });
    const crashed = run(crashedSchema, `markets-crash-${suffix}`, ends, (commit) => {
      seen++;
      if (kill !== undefined || seen < killAtCommit || commit.position === ends[commit.partition]) return;
      kill = commit;
      crashed.children.get(commit.node)!.kill('SIGKILL');
      killed();
    });
    const nodes = ['a', 'b', 'c'];
    for (const node of nodes) crashed.start(node);
    await Promise.race([
      killedNow,
      crashed.done.then(() => {
        throw new Error('the run ended before the kill');
      }),
    ]);
    crashed.start(kill!.node);
    await crashed.done;
    await stopAll(crashed.children);
    // The kill moved work: the killed process's partition was committed on by another process.
    expect([...crashed.committers.get(kill!.partition)!].some((other) => other !== kill!.incarnation)).toBe(
      true,
    );

    const expected = await dump(referenceSchema);
    // 40 s of trades: 8 closed 5 s windows for each of 24 symbols.
    expect(expected.filter((line) => line.startsWith(`row ${readModels.windows} `)).length).toBeGreaterThan(
      150,
    );
    expect(expected.filter((line) => line.startsWith(`row ${readModels.moving} `)).length).toBe(24);
    expect(expected.filter((line) => line.includes(` ${names.late} `)).length).toBeGreaterThan(20);
    expect(await dump(crashedSchema)).toEqual(expected);
  });
});
