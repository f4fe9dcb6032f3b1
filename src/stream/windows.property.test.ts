// Windowing semantics against a simple reference: random keys, event times with bounded disorder
// plus some much later records, spread over several partitions of a real SQLite log. The job's
// window results (final value per window) and its late records must equal what a direct reading
// of the semantics gives: watermark = least over partitions of (highest event time - D - 1),
// advanced after every record in the order the job reads (rounds over the partitions); a record
// is late when its window's end - 1 + allowed lateness <= the watermark before it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonValue } from '../log/index.ts';
import type { Json } from '../store/types.ts';
import { seededRandom } from '../time.ts';
import { aggregator, count, first, last } from './aggregators.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
import { callbackSink } from './sinks.ts';
import { scratchEmbedded } from './stream.fixture.ts';
import type { WindowResult } from './window-operator.ts';
import { tumbling } from './windows.ts';

interface Event {
  readonly key: string;
  readonly timestampMs: number;
  readonly value: number;
  readonly partition: number;
}

type Summary = [number, number, number | null, number | null];

/** count, sum, first and last value by event time (ties: input order). */
const summary = aggregator<{ value: number }, [number, number, Json, Json], Summary>({
  create: () => [0, 0, null, null],
  add(acc, item, timestampMs, sequence) {
    const c = count<unknown>();
    const f = first<{ value: number }, number>((x) => x.value);
    const l = last<{ value: number }, number>((x) => x.value);
    return [
      c.add(acc[0], item, timestampMs, sequence),
      acc[1] + item.value,
      f.add(acc[2] as never, item, timestampMs, sequence),
      l.add(acc[3] as never, item, timestampMs, sequence),
    ] as [number, number, Json, Json];
  },
  result: (acc) => [
    acc[0],
    acc[1],
    (acc[2] as [number, number, number] | null)?.[2] ?? null,
    (acc[3] as [number, number, number] | null)?.[2] ?? null,
  ],
});

const grid = (timeMs: number) => Math.round(timeMs / 100) * 100;

function generate(seed: number, n: number, partitions: number, disorderMs: number): Event[] {
  const random = seededRandom(seed);
  const events: Event[] = [];
  for (let i = 0; i < n; i++) {
    const base = 1_000_000 + i * 37;
    const late = random.next() < 0.05;
    const jitter = Math.floor(random.next() * disorderMs * 1.5);
    events.push({
      key: `k${Math.floor(random.next() * 5)}`,
      // On a 100 ms grid, as the bounds are: records land exactly on window ends and on the
      // watermark, where an off-by-one in "late" or "fires" would show.
      timestampMs: grid(late ? base - 3000 - Math.floor(random.next() * 4000) : base - jitter),
      value: Math.floor(random.next() * 100),
      partition: Math.floor(random.next() * partitions),
    });
  }
  return events;
}

/** The order the job reads: rounds of up to `perRead` records from each partition in turn. */
function readOrder(events: Event[], partitions: number, perRead: number): Event[] {
  const queues = Array.from({ length: partitions }, (_, p) => events.filter((e) => e.partition === p));
  const order: Event[] = [];
  while (queues.some((queue) => queue.length > 0)) {
    for (const queue of queues) order.push(...queue.splice(0, perRead));
  }
  return order;
}

function reference(
  order: Event[],
  partitions: number,
  sizeMs: number,
  disorderMs: number,
  latenessMs: number,
) {
  const maxByPartition = new Array<number>(partitions).fill(Number.NEGATIVE_INFINITY);
  let watermark = Number.NEGATIVE_INFINITY;
  const windows = new Map<string, Event[]>();
  const late: number[] = [];
  order.forEach((event, sequence) => {
    const start = Math.floor(event.timestampMs / sizeMs) * sizeMs;
    if (start + sizeMs - 1 + latenessMs <= watermark) late.push(sequence);
    else {
      const id = `${start}|${event.key}`;
      windows.set(id, [...(windows.get(id) ?? []), { ...event, partition: sequence }]);
    }
    maxByPartition[event.partition] = Math.max(maxByPartition[event.partition]!, event.timestampMs);
    watermark = Math.max(watermark, Math.min(...maxByPartition) - disorderMs - 1);
  });
  const results = new Map<string, Summary>();
  for (const [id, members] of windows) {
    const byFirst = [...members].sort((a, b) => a.timestampMs - b.timestampMs || a.partition - b.partition);
    results.set(id, [
      members.length,
      members.reduce((total, e) => total + e.value, 0),
      byFirst[0]!.value,
      byFirst[byFirst.length - 1]!.value,
    ]);
  }
  return { results, late };
}

async function runJob(
  events: Event[],
  partitions: number,
  sizeMs: number,
  disorderMs: number,
  latenessMs: number,
  perRead: number,
) {
  const db = scratchEmbedded();
  try {
    await db.log.createTopic('in', { partitions, retentionMs: null });
    for (let p = 0; p < partitions; p++) {
      const mine = events.filter((e) => e.partition === p);
      if (mine.length > 0) {
        await db.log.append(
          'in',
          mine.map((e) => ({ key: e.key, value: jsonValue(e), timestamp: e.timestampMs, partition: p })),
        );
      }
    }
    const results = new Map<string, Summary>();
    const late: Event[] = [];
    const source = fromTopic<Event>({
      topic: 'in',
      decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as Event,
      outOfOrdernessMs: disorderMs,
      idleTimeoutMs: null,
    });
    source
      .keyBy((e) => e.key)
      .window(tumbling({ sizeMs }), {
        allowedLatenessMs: latenessMs,
        late: callbackSink<Event>('late', (values) => {
          late.push(...values);
        }),
      })
      .aggregate(summary)
      .to(
        callbackSink<WindowResult<Summary>>('results', (values) => {
          for (const r of values) results.set(`${r.window.startMs}|${r.key}`, r.value);
        }),
      );
    const job = await openStreamJob({
      name: 'prop',
      source,
      store: db.store,
      log: db.log,
      maxRecordsPerRead: perRead,
      maxRecordsPerTransaction: perRead * partitions * 3,
    });
    await job.runToEnd({ finish: true });
    expect(job.metrics.lateRecords).toBe(late.length);
    expect(job.metrics.openWindows).toBe(0);
    return { results, late };
  } finally {
    await db.close();
  }
}

describe('event-time tumbling windows', () => {
  it('equal the reference semantics over random disorder, late records and several partitions', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(0, 500, 2000),
        fc.constantFrom(0, 1500),
        fc.integer({ min: 1, max: 40 }),
        async (seed, partitions, disorderMs, latenessMs, perRead) => {
          const events = generate(seed, 300, partitions, disorderMs);
          const expected = reference(
            readOrder(events, partitions, perRead),
            partitions,
            1000,
            disorderMs,
            latenessMs,
          );
          const actual = await runJob(events, partitions, 1000, disorderMs, latenessMs, perRead);
          expect(actual.results).toEqual(expected.results);
          const order = readOrder(events, partitions, perRead);
          expect(actual.late.map((e) => JSON.stringify(e))).toEqual(
            expected.late.map((i) => JSON.stringify(order[i])),
          );
        },
      ),
      { numRuns: 25, seed: 20261206 },
    );
  });
});
