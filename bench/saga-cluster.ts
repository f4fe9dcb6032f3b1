/**
 * `npm run bench:saga -- --shape cluster --nodes N`: the bench's 4-step saga on N node processes
 * of the cluster shape (bench/saga-cluster-node.ts) over PostgreSQL (MERIDIAN_TEST_PG_URL, a fresh
 * schema) and Kafka (MERIDIAN_TEST_KAFKA_BROKERS, a fresh work topic and group).
 *
 * Each node runs its own load generator, its share of the load, with saga ids that hash across
 * every work partition (so with N nodes, (N-1)/N of the starts are routed to another node):
 * 1. max load: a closed loop of `--concurrency` sagas in flight in total for `--seconds` (after a
 *    warm-up second); sagas completed per second, and CPU per saga over every process involved:
 *    the nodes, the Kafka broker(s) and PostgreSQL (the nodes' backends, found by application_name,
 *    and the server's writer, WAL writer and checkpointer), from /proc/<pid>/stat;
 * 2. fixed load: `--rate` sagas/s offered in total (default 500) for 2 s of warm-up plus `--seconds`,
 *    on a schedule that does not wait; p50/p99 from each saga's scheduled start to its result;
 * 3. takeover (`--nodes` ≥ 2, unless --no-takeover): under `--takeover-rate` sagas/s in total
 *    (default 50, a load every node count here sustains, so the figure is takeover, not queueing),
 *    `kill -9` of one node;
 *    the time until the others claimed its partitions, and until every saga of its partitions that
 *    was running at the kill has ended on the others.
 */
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, decodeFromCompressedBase64, type Histogram } from 'hdr-histogram-js';
import pg from 'pg';
import { KafkaLog, parseBrokerList } from '../src/log/kafka/index.ts';
import { openPostgresStore } from '../src/store/postgres/index.ts';
import type { NodeConfig, NodeMessage, NodeReport } from './saga-cluster-node.ts';

export interface ClusterBenchOptions {
  nodes: number;
  seconds: number;
  concurrency: number;
  rate: number;
  takeover: boolean;
  /** Sagas/s offered in total while a node is killed. */
  takeoverRate: number;
  /**
   * Each node starts only sagas whose ids fall in partitions it owns (a partition-aware client,
   * as a Kafka producer sends to a partition's leader): no routed starts, only routed commands.
   */
  localStarts?: boolean;
}

const partitions = 16;
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

class BenchNode {
  readonly name: string;
  readonly child: ReturnType<typeof fork>;
  owned: number[] = [];
  readonly exited: Promise<void>;
  #waiters: Array<(report: NodeReport) => boolean> = [];

  constructor(config: NodeConfig) {
    this.name = config.node;
    const profile = process.env.MERIDIAN_BENCH_CPU_PROF;
    this.child = fork(join(import.meta.dirname, 'saga-cluster-node.ts'), [JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // A CPU profile per node, written when it stops (MERIDIAN_BENCH_CPU_PROF=<directory>).
      execArgv: profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profile],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.on('message', (report: NodeReport) => {
      if (report.type === 'owned') this.owned = report.owned;
      this.#waiters = this.#waiters.filter((waiter) => !waiter(report));
    });
  }

  /** The next report of `type`, failing when the node exits first. */
  next<T extends NodeReport['type']>(type: T): Promise<Extract<NodeReport, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.#waiters.push((report) => {
        if (report.type !== type) return false;
        resolve(report as Extract<NodeReport, { type: T }>);
        return true;
      });
      void this.exited.then(() => reject(new Error(`bench node ${this.name} exited`)));
    });
  }

  send(message: NodeMessage): void {
    this.child.send(message);
  }
}

/** utime + stime of a process in ms, or 0 when it is gone. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return 0;
  }
}

/** The pids listening on the brokers' ports (needs `ss`; the broker must run as a user we can see). */
function brokerPids(brokers: readonly string[]): number[] {
  return brokers.flatMap((broker) => {
    const port = broker.split(':').pop();
    const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`]).toString();
    return [...out.matchAll(/pid=(\d+)/g)].map((match) => Number(match[1]));
  });
}

/** PostgreSQL's shared writers (checkpointer, background writer, WAL writer): they serve every client. */
function postgresWriterPids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return /postgres: .*(checkpointer|background writer|walwriter)/.test(cmdline);
      } catch {
        return false;
      }
    })
    .map(Number);
}

interface CpuGroups {
  nodes: number[];
  kafka: number[];
  postgres: () => Promise<number[]>;
}

/** CPU ms per group between `start()` and `stop()`; processes that appear in between count from 0. */
function cpuMeter(groups: CpuGroups) {
  const before = new Map<number, number>();
  const snapshot = async () => {
    const pids = {
      nodes: groups.nodes,
      kafka: groups.kafka,
      postgres: [...(await groups.postgres()), ...postgresWriterPids()],
    };
    return pids;
  };
  return {
    async start() {
      const pids = await snapshot();
      for (const pid of [...pids.nodes, ...pids.kafka, ...pids.postgres]) before.set(pid, cpuMs(pid));
    },
    async stop() {
      const pids = await snapshot();
      const sum = (list: number[]) =>
        list.reduce((total, pid) => total + cpuMs(pid) - (before.get(pid) ?? 0), 0);
      return { nodes: sum(pids.nodes), kafka: sum(pids.kafka), postgres: sum(pids.postgres) };
    },
  };
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string) {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return performance.now() - started;
}

/** Waits (bounded) until no saga is running: what an overloaded phase left behind has ended. */
async function drain(admin: pg.Pool, schema: string): Promise<void> {
  const running = async () =>
    (
      await admin.query(
        `SELECT count(*)::int AS n FROM "${schema}".store_sagas WHERE status IN ('running', 'compensating')`,
      )
    ).rows[0].n as number;
  const left = await running();
  const tookMs = await waitFor(async () => (await running()) === 0, 300_000, 'the sagas left running ended');
  process.stderr.write(
    `[bench] ${left} sagas were still running; they ended in ${(tookMs / 1000).toFixed(1)} s\n`,
  );
}

function mergeHistograms(encoded: readonly string[]): Histogram {
  const merged = build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  for (const text of encoded) merged.add(decodeFromCompressedBase64(text));
  return merged;
}

export async function clusterBench(options: ClusterBenchOptions): Promise<void> {
  const pgUrl = process.env.MERIDIAN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const brokers = parseBrokerList(process.env.MERIDIAN_TEST_KAFKA_BROKERS ?? '127.0.0.1:9092');
  const run = randomBytes(4).toString('hex');
  const schema = `bench_saga_${run}`;
  const appPrefix = `bench-${run}-`;
  const admin = new pg.Pool({ connectionString: pgUrl, max: 2 });
  // The schema's tables exist before the nodes start, so they do not race to create them.
  await (await openPostgresStore({ connectionString: pgUrl, schema })).close();
  const log = new KafkaLog({ brokers, clientId: `bench-${run}` });
  const config = (node: string): NodeConfig => ({
    pg: pgUrl,
    schema,
    brokers,
    workTopic: `bench.${run}.work`,
    group: `bench.${run}.nodes`,
    node: `${appPrefix}${node}`,
    partitions,
    localStarts: options.localStarts === true,
  });
  const nodes = Array.from({ length: options.nodes }, (_, index) => new BenchNode(config(`n${index + 1}`)));
  try {
    await Promise.all(nodes.map((node) => node.next('ready')));
    await waitFor(
      () =>
        nodes.reduce((sum, node) => sum + node.owned.length, 0) === partitions &&
        nodes.every((node) => node.owned.length > 0),
      60_000,
      `the ${options.nodes} nodes own all ${partitions} partitions`,
    );
    const meter = cpuMeter({
      nodes: nodes.map((node) => node.child.pid!),
      kafka: brokerPids(brokers),
      postgres: async () =>
        (
          await admin.query('SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1', [
            `${appPrefix}%`,
          ])
        ).rows.map((row: { pid: number }) => row.pid),
    });
    const max = await maxLoad(nodes, options, meter);
    process.stderr.write(`[bench] max load: ${JSON.stringify({ ...max, cpu: undefined })}\n`);
    await drain(admin, schema);
    const fixed = await fixedLoad(nodes, options);
    process.stderr.write(`[bench] fixed load: ${JSON.stringify(fixed)}\n`);
    await drain(admin, schema);
    const takeover =
      options.takeover && options.nodes >= 2 ? await takeoverTime(nodes, options, admin, schema) : undefined;
    printLine(options, max, fixed, takeover);
  } finally {
    // A clean stop first (so profiles get written), then SIGKILL whatever is left after 10 s.
    for (const node of nodes) if (node.child.connected) node.send({ type: 'stop' });
    await Promise.race([
      Promise.all(nodes.map((node) => node.exited)),
      new Promise((resolve) => setTimeout(resolve, 10_000)),
    ]);
    for (const node of nodes) node.child.kill('SIGKILL');
    await Promise.all(nodes.map((node) => node.exited));
    await log.deleteTopic(`bench.${run}.work`).catch(() => {});
    await log.close();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
}

async function maxLoad(
  nodes: readonly BenchNode[],
  options: ClusterBenchOptions,
  meter: ReturnType<typeof cpuMeter>,
) {
  const warmupMs = 1000;
  const share = Math.ceil(options.concurrency / nodes.length);
  const results = nodes.map((node) => node.next('closed'));
  for (const node of nodes)
    node.send({ type: 'closed', concurrency: share, warmupMs, seconds: options.seconds });
  await new Promise((resolve) => setTimeout(resolve, warmupMs));
  await meter.start();
  const done = await Promise.all(results);
  const cpu = await meter.stop();
  const counted = done.reduce((sum, result) => sum + result.counted, 0);
  const elapsedMs = Math.max(...done.map((result) => result.elapsedMs));
  const failures = done.reduce((sum, result) => sum + result.failures, 0);
  const units = done.reduce((sum, result) => sum + result.units, 0);
  const transactions = done.reduce((sum, result) => sum + result.transactions, 0);
  const retried = done.reduce((sum, result) => sum + result.retried, 0);
  return {
    perSecond: (counted / elapsedMs) * 1000,
    counted,
    failures,
    cpu,
    inFlight: share * nodes.length,
    unitsPerTransaction: units / Math.max(1, transactions),
    retried,
  };
}

async function fixedLoad(nodes: readonly BenchNode[], options: ClusterBenchOptions) {
  const results = nodes.map((node) => node.next('open'));
  for (const node of nodes)
    node.send({
      type: 'open',
      rate: options.rate / nodes.length,
      warmupSeconds: 2,
      seconds: options.seconds,
    });
  const done = await Promise.all(results);
  const histogram = mergeHistograms(done.map((result) => result.histogram));
  return {
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    measured: done.reduce((sum, result) => sum + result.measured, 0),
    failures: done.reduce((sum, result) => sum + result.failures, 0),
    errors: [...new Set(done.flatMap((result) => result.errors))],
  };
}

/**
 * Under `--takeover-rate` sagas/s, SIGKILLs the last node: how long until the others claimed its partitions,
 * and until every saga of those partitions that was running at the kill has ended.
 */
async function takeoverTime(
  nodes: BenchNode[],
  options: ClusterBenchOptions,
  admin: pg.Pool,
  schema: string,
) {
  const survivors = nodes.slice(0, -1);
  const victim = nodes[nodes.length - 1]!;
  const seconds = 25;
  const results = nodes.map((node) => node.next('open').catch(() => undefined));
  for (const node of nodes)
    node.send({ type: 'open', rate: options.takeoverRate / nodes.length, warmupSeconds: 0, seconds });
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const lost = [...victim.owned];
  const claims = async () =>
    new Map(
      (await admin.query(`SELECT partition, owner, epoch FROM "${schema}".store_partitions`)).rows.map(
        (row: { partition: number; owner: string; epoch: string }) => [row.partition, row],
      ),
    );
  const before = await claims();
  victim.child.kill('SIGKILL');
  const killedAt = performance.now();
  const { rows } = await admin.query(
    `SELECT id FROM "${schema}".store_sagas WHERE partition = ANY($1) AND status IN ('running', 'compensating')`,
    [lost],
  );
  const inFlight = rows.map((row: { id: string }) => row.id);
  await waitFor(
    async () => {
      const now = await claims();
      return lost.every((partition) => now.get(partition)?.epoch !== before.get(partition)?.epoch);
    },
    60_000,
    'the survivors claimed the killed node’s partitions',
  );
  const claimedMs = performance.now() - killedAt;
  await waitFor(
    async () =>
      (
        await admin.query(
          `SELECT count(*)::int AS n FROM "${schema}".store_sagas WHERE id = ANY($1) AND status IN ('running', 'compensating')`,
          [inFlight],
        )
      ).rows[0].n === 0,
    60_000,
    'the killed node’s in-flight sagas ended on the others',
  );
  const endedMs = performance.now() - killedAt;
  await Promise.all(results.slice(0, survivors.length));
  return { claimedMs, endedMs, sagas: inFlight.length, partitions: lost.length };
}

function printLine(
  options: ClusterBenchOptions,
  max: Awaited<ReturnType<typeof maxLoad>>,
  fixed: Awaited<ReturnType<typeof fixedLoad>>,
  takeover: Awaited<ReturnType<typeof takeoverTime>> | undefined,
): void {
  const perSaga = (ms: number) => (ms / max.counted).toFixed(2);
  const total = max.cpu.nodes + max.cpu.kafka + max.cpu.postgres;
  const line = [
    `sagas (4-step, cluster: ${options.nodes} node${options.nodes > 1 ? 's' : ''}${options.localStarts === true ? ', local starts' : ''}, Kafka + PostgreSQL): ${Math.round(max.perSecond).toLocaleString('en-US')}/s sustained at ${max.inFlight} in flight${max.failures > 0 ? ` (${max.failures} failed)` : ''}`,
    `${max.unitsPerTransaction.toFixed(0)} units/transaction${max.retried > 0 ? ` (${max.retried} transactions retried unit by unit)` : ''}`,
    `CPU per saga ${perSaga(total)} ms (nodes ${perSaga(max.cpu.nodes)}, Kafka ${perSaga(max.cpu.kafka)}, PostgreSQL ${perSaga(max.cpu.postgres)})`,
    `at ${options.rate.toLocaleString('en-US')}/s offered: p50 ${fixed.p50Ms.toFixed(1)} ms, p99 ${fixed.p99Ms.toFixed(1)} ms (n=${fixed.measured}${fixed.failures > 0 ? `, ${fixed.failures} failed` : ''})`,
    takeover === undefined
      ? 'no takeover measured'
      : `kill -9 of 1 of ${options.nodes} nodes at ${options.takeoverRate}/s offered: its ${takeover.partitions} partitions claimed in ${(takeover.claimedMs / 1000).toFixed(1)} s, its ${takeover.sagas} in-flight sagas ended ${(takeover.endedMs / 1000).toFixed(1)} s after the kill`,
  ].join('; ');
  console.log(line);
  if (fixed.errors.length > 0) console.log(`failures: ${fixed.errors.join(' | ')}`);
}
