// Consumer-group behaviour the cluster shape relies on, against a real broker: a member joining
// moves only the partitions it gets (cooperative-sticky, no stop-the-world revocation), and the
// partitions of a member killed with SIGKILL move to the survivor within the session timeout.
// Every wait is bounded; the measured times are printed.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AssignmentChange, Consumer } from '../types.ts';
import { KafkaLog } from './kafka-log.ts';
import { parseBrokerList } from './options.ts';

const brokersText = process.env.MERIDIAN_TEST_KAFKA_CLUSTER ?? process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const childScript = resolve(import.meta.dirname, 'group-member-child.fixture.ts');

/** Polls every consumer until `done()` holds, failing after `timeoutMs`; returns the time taken. */
async function pollUntil(
  consumers: readonly Consumer[],
  done: () => boolean,
  timeoutMs: number,
  what: string,
) {
  const started = performance.now();
  while (!done()) {
    expect(performance.now() - started, `${what} within ${timeoutMs} ms`).toBeLessThan(timeoutMs);
    await Promise.all(consumers.map((consumer) => consumer.poll({ timeoutMs: 100 })));
  }
  return Math.round(performance.now() - started);
}

const partitionsOf = (consumer: Consumer) => consumer.assignment().map((tp) => tp.partition);

describe.skipIf(!brokersText)('kafka log: consumer group rebalances and failover', () => {
  const brokers = parseBrokerList(brokersText ?? '');
  let log: KafkaLog;
  const runId = randomUUID().slice(0, 8);

  beforeAll(async () => {
    log = new KafkaLog({ brokers, clientId: 'meridian-group-failover' });
    await log.connect();
  });

  afterAll(async () => {
    await log?.close();
  });

  it('a joining member takes partitions without revoking what the others keep', async () => {
    const topic = `group-join-${runId}`;
    const group = `group-join-${runId}`;
    await log.createTopic(topic, { partitions: 4 });
    const changes = new Map<string, AssignmentChange[]>();
    const member = (name: string) => {
      changes.set(name, []);
      return log.consumer({
        group,
        topics: [topic],
        onAssignment: (change) => changes.get(name)?.push(change),
      });
    };
    const a = member('a');
    const b = member('b');
    const covered = (consumers: Consumer[]) => {
      const owned = consumers.flatMap(partitionsOf);
      return (
        new Set(owned).size === 4 && owned.length === 4 && consumers.every((c) => c.assignment().length > 0)
      );
    };
    await pollUntil([a, b], () => covered([a, b]), 30_000, 'two members share 4 partitions');
    const seenBefore = { a: changes.get('a')!.length, b: changes.get('b')!.length };
    const before = { a: partitionsOf(a), b: partitionsOf(b) };
    const c = member('c');
    const tookMs = await pollUntil(
      [a, b, c],
      () => covered([a, b, c]),
      30_000,
      'three members share 4 partitions',
    );
    console.log(`[group-failover] a third member joined: assignment settled in ${tookMs} ms`);
    for (const [name, consumer] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const revoked = changes
        .get(name)!
        .slice(seenBefore[name])
        .flatMap((change) => change.revoked.map((tp) => tp.partition));
      const kept = before[name].filter((p) => partitionsOf(consumer).includes(p));
      // Cooperative: only the partitions that moved to the newcomer were revoked; eager would
      // have revoked everything and handed the kept ones back.
      for (const partition of kept)
        expect(revoked, `${name} kept ${partition} throughout`).not.toContain(partition);
      expect(kept.length, `${name} kept some partitions`).toBeGreaterThan(0);
    }
    await Promise.all([a.close(), b.close(), c.close()]);
  }, 90_000);

  it('the partitions of a member killed with SIGKILL move to the survivor within the session timeout', async () => {
    const topic = `group-kill-${runId}`;
    const group = `group-kill-${runId}`;
    await log.createTopic(topic, { partitions: 4 });
    const survivorChanges: AssignmentChange[] = [];
    const survivor = log.consumer({
      group,
      topics: [topic],
      onAssignment: (change) => survivorChanges.push(change),
    });
    await pollUntil(
      [survivor],
      () => survivor.assignment().length === 4,
      30_000,
      'the first member owns 4 partitions',
    );

    const child = spawn(process.execPath, [childScript, brokers.join(','), topic, group], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let childOwns: number[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [kind, list = ''] = line.split(' ');
      if (kind === 'assignment') childOwns = list === '' ? [] : list.split(',').map(Number);
    });
    const exited = new Promise<NodeJS.Signals | null>((done) =>
      child.once('exit', (_code, signal) => done(signal)),
    );
    try {
      await pollUntil(
        [survivor],
        () => childOwns.length > 0 && childOwns.length + survivor.assignment().length === 4,
        60_000,
        'the child member shares the partitions',
      );
      const lost = [...childOwns];
      const seen = survivorChanges.length;
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      // Bound: the default sessionTimeoutMs, plus a heartbeat and a rejoin, inside the 15 s target.
      const tookMs = await pollUntil(
        [survivor],
        () => survivor.assignment().length === 4,
        15_000,
        'the survivor owns all 4 partitions',
      );
      console.log(
        `[group-failover] SIGKILL of a member owning ${lost.length} partitions: the survivor was assigned them ${tookMs} ms later`,
      );
      const gained = survivorChanges
        .slice(seen)
        .flatMap((change) => change.assigned.map((tp) => tp.partition));
      expect(gained.sort()).toEqual(lost.sort());
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await survivor.close();
    }
  }, 120_000);
});
