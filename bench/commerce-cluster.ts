/**
 * `npm run bench:commerce -- --shape cluster --nodes N`: the commerce system on the local cluster
 * (scripts/cluster/cluster.sh: three Kafka brokers, PostgreSQL with a synchronous standby, Redis,
 * the payment gateway, the nodes, HAProxy), measured through HAProxy with `commerce load`.
 *
 * Starts the cluster when it does not run, keeps N of its three nodes (drains the others, starts
 * missing ones), offers `--rate` orders/s for `--duration` s after `--warmup` s, and prints one
 * line: offered, accepted and completed orders/s, p50/p99 to 202 and to a terminal status, and
 * CPU time per order summed over every process of the cluster (nodes, Kafka brokers, PostgreSQL
 * servers with their backends, Redis, HAProxy, the payment gateway) and for each kind of process,
 * plus the load generator's and the load average. With `--kill-at S`, one node is killed with
 * SIGKILL S seconds into the measured run, and the line adds how long completed orders per second
 * took to come back to 90 % of their rate before the kill.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { awaitAllNodesUp, startCluster } from '../test/cluster/faults.ts';
import { integer } from './options.ts';

const root = resolve(import.meta.dirname, '..');
const main = join(root, 'apps/commerce/cli/main.ts');
const state = process.env.MERIDIAN_CLUSTER_DIR ?? join(root, '.meridian-cluster');
const script = join(root, 'scripts/cluster/cluster.sh');
/** Where cluster.sh keeps PostgreSQL's data directories (the same default as the script's). */
const pgData =
  process.env.MERIDIAN_CLUSTER_PG_DATA ??
  `/var/lib/postgresql/meridian-cluster-${createHash('md5').update(state).digest('hex').slice(0, 10)}`;

const nodes = integer('nodes', 3, 1, 3);
const rate = integer('rate', 300, 1, 100_000);
const duration = integer('duration', 20, 1, 3600);
const warmup = integer('warmup', 5, 0, 600);
const skus = integer('skus', 100, 1, 100_000);
const killAt = integer('kill-at', 0, 0, 3600);

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim().split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map(Number)
      .filter((child) => child > 0);
  } catch {
    return [];
  }
}

/** Every process of the cluster, by kind. */
function clusterProcesses(): Map<number, string> {
  const found = new Map<number, string>();
  const add = (pid: number | undefined, kind: string) => pid !== undefined && found.set(pid, kind);
  for (let n = 1; n <= 3; n++) add(readPid(join(state, `node-${n}.pid`)), 'nodes');
  add(readPid(join(state, 'payments.pid')), 'payment gateway');
  add(readPid(join(state, 'redis.pid')), 'redis');
  add(readPid(join(state, 'haproxy.pid')), 'haproxy');
  for (const dir of readdirSync(join(state, 'kafka'), { withFileTypes: true })) {
    if (dir.isDirectory()) add(readPid(join(state, 'kafka', dir.name, 'kafka.pid')), 'kafka');
  }
  for (const side of ['a', 'b']) {
    const postmaster = readPid(join(pgData, side, 'postmaster.pid'));
    if (postmaster === undefined) continue;
    add(postmaster, 'postgresql');
    for (const child of childrenOf(postmaster)) add(child, 'postgresql');
  }
  return found;
}

/** CPU time (ms) a process used so far, from /proc; 0 once it is gone. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** CPU per kind of process: sampled every half second, so processes that exit still count. */
class CpuMeter {
  readonly #last = new Map<number, { kind: string; ms: number }>();
  readonly #start = new Map<number, number>();
  readonly #timer: NodeJS.Timeout;

  constructor() {
    this.#sample(true);
    this.#timer = setInterval(() => this.#sample(false), 500);
  }

  #sample(first: boolean): void {
    for (const [pid, kind] of clusterProcesses()) {
      const ms = cpuMs(pid);
      if (ms === 0) continue;
      if (!this.#start.has(pid)) this.#start.set(pid, first ? ms : 0);
      this.#last.set(pid, { kind, ms });
    }
  }

  stop(): Map<string, number> {
    clearInterval(this.#timer);
    this.#sample(false);
    const byKind = new Map<string, number>();
    for (const [pid, { kind, ms }] of this.#last) {
      byKind.set(kind, (byKind.get(kind) ?? 0) + ms - (this.#start.get(pid) ?? 0));
    }
    return byKind;
  }
}

interface Summary {
  offeredPerSecond: number;
  acceptedPerSecond: number;
  completedPerSecond: number;
  accepted: number;
  warmupAccepted: number;
  confirmed: number;
  cancelled: number;
  unfinished: number;
  latencyToAccepted: { p50Ms: number; p99Ms: number };
  latencyToTerminal: { p50Ms: number; p99Ms: number; maxMs: number };
  watchedBy: string;
  errorsByKind: Record<string, number>;
}

/** Completed orders per measured second, from the generator's progress lines. */
function completedPerSecond(progress: string): number[] {
  const perSecond: number[] = [];
  let previous = 0;
  for (const match of progress.matchAll(/^\[\s*([\d.]+)s\].*completed (\d+)/gm)) {
    const completed = Number(match[2]);
    perSecond.push(completed - previous);
    previous = completed;
  }
  return perSecond;
}

async function runLoad(
  url: string,
  token: string,
  loadRate: number,
  seconds: number,
  warm: number,
  setup: boolean,
) {
  const args = [main, 'load', '--url', url, '--rate', String(loadRate), '--duration', String(seconds)];
  args.push('--warmup', String(warm), '--skus', String(skus), '--json', '--terminal-timeout-ms', '60000');
  if (!setup) args.push('--skip-setup');
  const child = spawn(process.execPath, args, { env: { ...process.env, MERIDIAN_TOKEN: token } });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  if (code !== 0) throw new Error(`commerce load exited with ${code}: ${err.slice(-1000)}`);
  const measured = err.slice(Math.max(0, err.lastIndexOf('[warm-up')));
  return {
    summary: JSON.parse(out.trim().split('\n').pop() ?? '{}') as Summary,
    perSecond: completedPerSecond(measured),
    pid: child.pid,
  };
}

/** Seconds after the kill until a second's completions were back to 90 % of those before it. */
function recovery(perSecond: readonly number[]): string {
  const before = perSecond.slice(Math.max(0, killAt - 5), killAt);
  const baseline = before.reduce((sum, value) => sum + value, 0) / Math.max(1, before.length);
  for (let second = killAt; second < perSecond.length; second++) {
    if ((perSecond[second] ?? 0) >= 0.9 * baseline) return `${second - killAt} s`;
  }
  return `not within the run (${perSecond.length - killAt} s)`;
}

const cluster = await startCluster();
for (let n = 1; n <= 3; n++) {
  execFileSync('bash', [script, n <= nodes ? 'restart' : 'drain', `node-${n}`], { stdio: 'inherit' });
}
await awaitAllNodesUp({ ...cluster, nodeUrls: cluster.nodeUrls.slice(0, nodes) });
// HAProxy takes a node back after two passing checks, 1 s apart.
await new Promise((done) => setTimeout(done, 3000));
const token = cluster.headers.authorization?.replace('Bearer ', '') ?? '';
await runLoad(cluster.url, token, Math.max(1, Math.round(rate / 5)), 3, 0, true);
const load = loadavg()[0] ?? 0;
const meter = new CpuMeter();
const killer =
  killAt > 0
    ? setTimeout(() => execFileSync('bash', [script, 'kill', `node-${nodes}`]), (warmup + killAt) * 1000)
    : undefined;
const { summary, perSecond } = await runLoad(cluster.url, token, rate, duration, warmup, false);
clearTimeout(killer);
const cpu = meter.stop();
const orders = summary.accepted + summary.warmupAccepted;
const total = [...cpu.values()].reduce((sum, value) => sum + value, 0);
const perOrder = (ms: number) => `${(ms / Math.max(1, orders)).toFixed(2)} ms`;
const errors = Object.entries(summary.errorsByKind);
console.log(
  [
    `commerce over HTTP (cluster, ${nodes} node${nodes === 1 ? '' : 's'} behind HAProxy): offered ${summary.offeredPerSecond}/s for ${duration} s after ${warmup} s of warm-up`,
    `accepted ${summary.acceptedPerSecond}/s, completed ${summary.completedPerSecond}/s (${summary.confirmed} confirmed, ${summary.cancelled} cancelled, ${summary.unfinished} unfinished)`,
    `to 202 p50 ${summary.latencyToAccepted.p50Ms} ms p99 ${summary.latencyToAccepted.p99Ms} ms`,
    `to terminal (${summary.watchedBy}) p50 ${summary.latencyToTerminal.p50Ms} ms p99 ${summary.latencyToTerminal.p99Ms} ms max ${summary.latencyToTerminal.maxMs} ms`,
    `CPU ${perOrder(total)}/order over every process (${[...cpu]
      .sort((a, b) => b[1] - a[1])
      .map(([kind, ms]) => `${kind} ${perOrder(ms)}`)
      .join(', ')})`,
    ...(killAt > 0
      ? [`node-${nodes} SIGKILLed at ${killAt} s: completions back to 90 % after ${recovery(perSecond)}`]
      : []),
    `load average ${load.toFixed(1)} at start (2 cores)${errors.length === 0 ? '' : `; errors ${errors.map(([kind, count]) => `${kind} ${count}`).join(', ')}`}`,
  ].join('; '),
);
if (killAt > 0) execFileSync('bash', [script, 'restart', `node-${nodes}`], { stdio: 'inherit' });
