// Stream-table join semantics against a simple reference: random changelogs (updates, deletions,
// out-of-order event times) and random stream records over several partitions of a real SQLite
// log. The reference keeps every version ever read, in the order the job reads (rounds: up to
// `perRead` records from each table partition, then, once the table has nothing more to read, up
// to `perRead` from each stream partition). Each stream
// record's left-join row must be the newest version at or before its event time (equal times:
// the later read), exactly when its event time is at or after the history horizon (newest table
// time read so far less the retention); before the horizon it is that row or none, never another.
// Changes older than the horizon when read are left out of the reference as of the job.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonValue } from '../log/index.ts';
import { seededRandom } from '../time.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
import { callbackSink } from './sinks.ts';
import { scratchEmbedded } from './stream.fixture.ts';
import { tableFromTopic } from './table.ts';

interface Change {
  readonly key: string;
  readonly timestampMs: number;
  readonly row: number | null;
  readonly partition: number;
}
interface Element {
  readonly key: string;
  readonly timestampMs: number;
  readonly id: number;
  readonly partition: number;
}

function generate(seed: number, tablePartitions: number, streamPartitions: number) {
  const random = seededRandom(seed);
  const pick = (n: number) => Math.floor(random.next() * n);
  const changes: Change[] = [];
  const elements: Element[] = [];
  for (let i = 0; i < 60; i++) {
    changes.push({
      key: `k${pick(4)}`,
      // On a 100 ms grid, so that table and stream times collide and ties are exercised.
      timestampMs: 10_000 + 100 * (i * 3 + pick(40) - 20),
      row: random.next() < 0.2 ? null : pick(1000),
      partition: pick(tablePartitions),
    });
  }
  for (let i = 0; i < 150; i++) {
    elements.push({
      key: `k${pick(5)}`,
      timestampMs: 10_000 + 100 * (i + pick(60) - 30),
      id: i,
      partition: pick(streamPartitions),
    });
  }
  return { changes, elements };
}

function queues<T extends { partition: number }>(items: T[], partitions: number): T[][] {
  return Array.from({ length: partitions }, (_, p) => items.filter((item) => item.partition === p));
}

type Expected = { id: number; row: number | null; orNone: boolean };

function reference(
  changes: Change[],
  elements: Element[],
  partitions: [number, number],
  perRead: number,
  retentionMs: number,
): Expected[] {
  const tableQueues = queues(changes, partitions[0]);
  const streamQueues = queues(elements, partitions[1]);
  const history: Change[] = [];
  let newestMs = Number.NEGATIVE_INFINITY;
  const expected: Expected[] = [];
  while ([...tableQueues, ...streamQueues].some((queue) => queue.length > 0)) {
    for (const queue of tableQueues) {
      for (const change of queue.splice(0, perRead)) {
        // A change older than the history kept is left out (and counted).
        if (change.timestampMs < newestMs - retentionMs) continue;
        history.push(change);
        newestMs = Math.max(newestMs, change.timestampMs);
      }
    }
    // The stream waits until the table is caught up (all of it was appended before the stream).
    if (tableQueues.some((queue) => queue.length > 0)) continue;
    for (const queue of streamQueues) {
      for (const element of queue.splice(0, perRead)) {
        let found: Change | undefined;
        for (const change of history) {
          if (change.key === element.key && change.timestampMs <= element.timestampMs) {
            if (found === undefined || change.timestampMs >= found.timestampMs) found = change;
          }
        }
        const orNone = element.timestampMs < newestMs - retentionMs;
        expected.push({ id: element.id, row: found?.row ?? null, orNone });
      }
    }
  }
  return expected;
}

async function runJob(
  changes: Change[],
  elements: Element[],
  partitions: [number, number],
  perRead: number,
  retentionMs: number,
) {
  const db = scratchEmbedded();
  try {
    await db.log.createTopic('table', { partitions: partitions[0], retentionMs: null });
    await db.log.createTopic('stream', { partitions: partitions[1], retentionMs: null });
    // One append per partition, in order: the order within a partition is all the job sees.
    for (const [p, mine] of queues(changes, partitions[0]).entries()) {
      if (mine.length === 0) continue;
      await db.log.append(
        'table',
        mine.map((c) => ({
          key: c.key,
          value: c.row === null ? null : jsonValue(c.row),
          timestamp: c.timestampMs,
          partition: p,
        })),
      );
    }
    for (const [p, mine] of queues(elements, partitions[1]).entries()) {
      if (mine.length === 0) continue;
      await db.log.append(
        'stream',
        mine.map((e) => ({ key: e.key, value: jsonValue(e), timestamp: e.timestampMs, partition: p })),
      );
    }
    const table = tableFromTopic<number>({
      topic: 'table',
      decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as number,
      historyRetentionMs: retentionMs,
    });
    const source = fromTopic<Element>({
      topic: 'stream',
      decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as Element,
      outOfOrdernessMs: 0,
      idleTimeoutMs: null,
    });
    const left: Array<[number, number | null]> = [];
    const inner: Array<[number, number]> = [];
    const keyed = source.keyBy((element) => element.key);
    keyed
      .leftJoin(table, (element, row): [number, number | null] => [element.id, row])
      .to(callbackSink('left', (values) => void left.push(...values)));
    keyed
      .join(table, (element, row): [number, number] => [element.id, row])
      .to(callbackSink('inner', (values) => void inner.push(...values)));
    const job = await openStreamJob({
      name: 'join-prop',
      source,
      store: db.store,
      log: db.log,
      maxRecordsPerRead: perRead,
      maxRecordsPerTransaction: perRead * 7,
    });
    await job.runToEnd();
    return { left, inner };
  } finally {
    await db.close();
  }
}

describe('stream-table joins', () => {
  it('equal the reference versioned lookup over random changelogs, disorder and partitions', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom(0, 1000, 5000, 1_000_000),
        async (seed, tablePartitions, streamPartitions, perRead, retentionMs) => {
          const { changes, elements } = generate(seed, tablePartitions, streamPartitions);
          const partitions: [number, number] = [tablePartitions, streamPartitions];
          const expected = reference(changes, elements, partitions, perRead, retentionMs);
          const actual = await runJob(changes, elements, partitions, perRead, retentionMs);
          expect(actual.left.map(([id]) => id)).toEqual(expected.map((e) => e.id));
          actual.left.forEach(([id, row], index) => {
            const want = expected[index]!;
            if (want.orNone && row === null) return;
            expect({ id, row }).toEqual({ id: want.id, row: want.row });
          });
          // The inner join is the left join without the records that met no row.
          expect(actual.inner).toEqual(actual.left.filter(([, row]) => row !== null));
          if (retentionMs === 1_000_000)
            expect(actual.left.map(([, row]) => row)).toEqual(expected.map((e) => e.row));
        },
      ),
      { numRuns: 30, seed: 20261207 },
    );
  });
});
