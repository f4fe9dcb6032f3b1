// The node-partition fault: one node cut off PostgreSQL and Kafka by a network namespace while it
// still answers HTTP. `cluster.sh netns-move` restarts the node, with its usual settings, in a
// namespace of its own, bridged to the services on 127.0.0.1 by socat over a veth pair (so
// HAProxy and clients see no change); `netns-cut` then drops its PostgreSQL and Kafka packets
// both ways, silently, as a real partition does (no reset: its connections hang), while HTTP
// still flows. What must hold, watched during the cut: its /readyz fails (the store's write check
// times out), HAProxy takes it out of rotation, and the partitions it owned move to the other
// nodes (Kafka's session timeout, then their claims, new epochs in PostgreSQL). After the heal the
// writes it had stalled reach PostgreSQL and the epoch fence refuses them, or the node refuses
// them itself when it learnt first that it left the group: both counted from its log. A run
// writes nothing of the node when it had no write in flight at the cut.

import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Cluster, Fault, FaultFindings } from './faults.ts';

const run = promisify(execFile);
const pollMs = 250;
/** Bound on the node being ready again after the heal. */
const readyAgainTimeoutMs = 90_000;
/** Bound on the node owning partitions again after netns-move restarted it. */
const ownsTimeoutMs = 60_000;

/** Why a network namespace cannot be made here (not root, a tool missing), or undefined. */
async function partitionUnavailable(): Promise<string | undefined> {
  const uid = process.getuid?.();
  if (uid !== 0) return `network namespaces need root (ip netns add); this process runs as uid ${uid}`;
  const probe = `meridian-probe-${process.pid}`;
  try {
    await run(
      'sh',
      ['-c', 'command -v ip && command -v socat && { command -v tc || test -x /usr/sbin/tc; }'],
      {
        timeout: 5000,
      },
    );
  } catch {
    return 'ip, socat or tc is not installed (apt-get install -y iproute2 socat)';
  }
  try {
    await run('ip', ['netns', 'add', probe], { timeout: 5000 });
    await run('ip', ['netns', 'del', probe], { timeout: 5000 });
    return undefined;
  } catch (error) {
    return `ip netns add is not allowed here: ${(error as Error).message.slice(0, 200)}`;
  }
}

async function get(url: string): Promise<{ status: number; text: string } | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
    return { status: response.status, text: await response.text() };
  } catch {
    return undefined;
  }
}

/** The work partitions a node owns, from its /readyz (undefined when it did not answer). */
async function owned(nodeUrl: string): Promise<number[] | undefined> {
  const answer = await get(`${nodeUrl}/readyz`);
  if (answer === undefined) return undefined;
  const detail = /owns work partitions \[([\d,]*)\]/.exec(answer.text)?.[1];
  return detail === undefined ? undefined : detail.split(',').filter(Boolean).map(Number);
}

/** HAProxy's status of one server (UP, DOWN, ...), from its stats page's CSV. */
async function haproxyStatus(statsUrl: string, server: string): Promise<string | undefined> {
  const answer = await get(`${statsUrl}/;csv`);
  if (answer === undefined) return undefined;
  const [header, ...rows] = answer.text.split('\n');
  const column = (header ?? '').replace(/^# /, '').split(',').indexOf('status');
  const row = rows.map((line) => line.split(',')).find((cells) => cells[1] === server);
  return row?.[column];
}

/** When a condition first held, and how many polls after that found it false again. */
interface Watched {
  /** ms from the start, or undefined when it never held. */
  firstMs?: number;
  lapses: number;
}

/**
 * Polls `test` every 250 ms until `stopped` resolves (or, with `once`, until it first holds):
 * when it first held, in ms from `since`, and how often it lapsed after. A test that could not
 * tell (undefined: what it asked did not answer) counts neither way.
 */
async function watch(
  test: () => Promise<boolean | undefined>,
  since: number,
  stopped: Promise<void>,
  once = false,
): Promise<Watched> {
  let stop = false;
  void stopped.then(() => {
    stop = true;
  });
  const watched: Watched = { lapses: 0 };
  while (!stop) {
    const holds = await test();
    if (holds === true && watched.firstMs === undefined) {
      watched.firstMs = Date.now() - since;
      if (once) break;
    } else if (holds === false && watched.firstMs !== undefined) watched.lapses++;
    await new Promise((done) => setTimeout(done, pollMs));
  }
  return watched;
}

interface CutObservations {
  /** The node's /readyz failing (503). */
  unready: Watched;
  /** HAProxy's status of the node DOWN. */
  haproxyDown: Watched;
  /** Every partition the node owned at the cut owned by the other nodes. */
  moved: Watched;
  /** Its /readyz passing after the heal, ms from the heal. */
  readyAgain?: Watched;
}

/** Watches the cut node and the others until `stopped`. */
async function watchCut(
  cluster: Cluster,
  node: number,
  before: readonly number[],
  cutAt: number,
  stopped: Promise<void>,
): Promise<CutObservations> {
  const nodeUrl = cluster.nodeUrls[node - 1] as string;
  const others = cluster.nodeUrls.filter((_, index) => index !== node - 1);
  const [unready, haproxyDown, moved] = await Promise.all([
    // Not answering /readyz within 3 s is unready too, to HAProxy as to anyone.
    watch(async () => (await get(`${nodeUrl}/readyz`))?.status !== 200, cutAt, stopped),
    watch(
      async () => (await haproxyStatus(cluster.statsUrl, `node-${node}`))?.startsWith('DOWN'),
      cutAt,
      stopped,
    ),
    watch(
      async () => {
        const theirs = new Set((await Promise.all(others.map(owned))).flatMap((list) => list ?? []));
        return before.length > 0 && before.every((partition) => theirs.has(partition));
      },
      cutAt,
      stopped,
      true,
    ),
  ]);
  return { unready, haproxyDown, moved };
}

/**
 * The writes of the node refused since `offset` of its log: by the epoch fence in PostgreSQL
 * (another node claimed the partition since), or by the node itself (it had already given the
 * partition up when it learnt it left the group).
 */
async function refusedWrites(
  logPath: string,
  offset: number,
): Promise<{ fenced: string[]; notOwned: string[] }> {
  const file = await open(logPath, 'r');
  try {
    const { size } = await file.stat();
    const buffer = Buffer.alloc(Math.max(0, size - offset));
    await file.read(buffer, 0, buffer.length, offset);
    const lines = buffer.toString('utf8').split('\n');
    return {
      fenced: lines.filter((line) => line.includes('no longer owns work partition')),
      notOwned: lines.filter((line) => line.includes('does not own work partition')),
    };
  } finally {
    await file.close();
  }
}

async function logSize(logPath: string): Promise<number> {
  const file = await open(logPath, 'r');
  try {
    return (await file.stat()).size;
  } finally {
    await file.close();
  }
}

interface CutState {
  logPath: string;
  logOffset: number;
  /** The partitions the node owned at the cut. */
  before: number[];
  watching: Promise<CutObservations>;
  stopWatching: () => void;
  seen?: CutObservations;
}

/** Node `node` (1-3) cut off PostgreSQL and Kafka for `cutS` seconds, its HTTP still answering. */
export function partitionFault(node = 3, cutS = 15): Fault {
  const name = `node-${node}`;
  let state: CutState;
  return {
    name: 'node-partition',
    healAfterS: cutS,
    unavailable: partitionUnavailable,
    async prepare(cluster) {
      await cluster.sh('netns-move', name);
      // Restarted, it must own partitions again before the cut, or none could move.
      const url = cluster.nodeUrls[node - 1] as string;
      const bound = new Promise<void>((done) => setTimeout(done, ownsTimeoutMs).unref());
      const owns = await watch(async () => ((await owned(url)) ?? []).length > 0, Date.now(), bound, true);
      if (owns.firstMs === undefined)
        throw new Error(
          `${name} owned no work partition ${ownsTimeoutMs / 1000} s after netns-move: see its log`,
        );
    },
    async inject(cluster) {
      const logPath = resolve(cluster.stateDir, `${name}.log`);
      const before = (await owned(cluster.nodeUrls[node - 1] as string)) ?? [];
      const logOffset = await logSize(logPath);
      await cluster.sh('netns-cut', name);
      const cutAt = Date.now();
      let stopWatching = () => {};
      const stopped = new Promise<void>((done) => {
        stopWatching = done;
      });
      state = {
        logPath,
        logOffset,
        before,
        watching: watchCut(cluster, node, before, cutAt, stopped),
        stopWatching,
      };
    },
    async heal(cluster) {
      state.stopWatching();
      state.seen = await state.watching;
      await cluster.sh('netns-heal', name);
      const healedAt = Date.now();
      const bound = new Promise<void>((done) => setTimeout(done, readyAgainTimeoutMs).unref());
      const readyz = `${cluster.nodeUrls[node - 1] as string}/readyz`;
      state.seen.readyAgain = await watch(
        async () => (await get(readyz))?.status === 200,
        healedAt,
        bound,
        true,
      );
    },
    findings: async () => findings(name, cutS, state),
    async cleanup(cluster) {
      await cluster.sh('netns-remove', name);
    },
  };
}

async function findings(name: string, cutS: number, state: CutState): Promise<FaultFindings> {
  const seen = state.seen;
  if (seen === undefined) return { notes: [], violations: [`${name}: the cut was never healed`] };
  const s = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s`);
  const { fenced, notOwned } = await refusedWrites(state.logPath, state.logOffset);
  const partitions = `[${state.before.join(',')}]`;
  const notes = [
    `${name} unready ${s(seen.unready.firstMs)} after the cut, out of HAProxy's rotation ${s(seen.haproxyDown.firstMs)}, its partitions ${partitions} on the other nodes ${s(seen.moved.firstMs)}; ready again ${s(seen.readyAgain?.firstMs)} after the heal; writes refused by the epoch fence ${fenced.length}${fenced[0] === undefined ? '' : ` (first: ${fenced[0].slice(0, 160)})`}, by the node itself (partition given up) ${notOwned.length}`,
  ];
  const violations: string[] = [];
  const within = `within the ${cutS} s cut`;
  if (seen.unready.firstMs === undefined) violations.push(`${name}'s /readyz never failed ${within}`);
  if (seen.unready.lapses > 0)
    violations.push(
      `${name}'s /readyz passed ${seen.unready.lapses} times during the cut after it had failed`,
    );
  if (seen.haproxyDown.firstMs === undefined)
    violations.push(`HAProxy never took ${name} out of rotation ${within}`);
  if (seen.haproxyDown.lapses > 0)
    violations.push(`HAProxy put ${name} back in rotation during the cut (${seen.haproxyDown.lapses} polls)`);
  if (seen.moved.firstMs === undefined)
    violations.push(`${name}'s partitions ${partitions} did not all move to the other nodes ${within}`);
  if (seen.readyAgain?.firstMs === undefined)
    violations.push(`${name} was not ready again within ${readyAgainTimeoutMs / 1000} s of the heal`);
  return { notes, violations };
}
