// The stream job's behaviour a caller can observe: sliding and session windows, idle partitions
// on a fake clock, processing-time windows, allowed lateness, the read model and topic sinks in
// the commit, resuming from committed state, fencing of a second instance, and bad input.
import { afterEach, describe, expect, it } from 'vitest';
import { ConflictError, ValidationError } from '../errors.ts';
import { jsonValue } from '../log/index.ts';
import { ManualClock } from '../time.ts';
import { count, max, sum } from './aggregators.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
import { callbackSink, readModelSink, topicSink } from './sinks.ts';
import { type Embedded, scratchEmbedded } from './stream.fixture.ts';
import type { WindowResult } from './window-operator.ts';
import { session, sliding, tumbling } from './windows.ts';

interface Tick {
  readonly key: string;
  readonly n: number;
}

let db: Embedded;
afterEach(async () => {
  await db?.close();
});

async function topicWith(
  partitions: number,
  records: Array<[number, string, number, number?]>,
): Promise<void> {
  await db.log.createTopic('ticks', { partitions, retentionMs: null });
  for (const [timestamp, key, n, partition] of records) {
    await db.log.append('ticks', [
      { key, value: jsonValue({ key, n }), timestamp, partition: partition ?? 0 },
    ]);
  }
}

function ticks(options: { outOfOrdernessMs?: number; idleTimeoutMs?: number | null } = {}) {
  return fromTopic<Tick>({
    topic: 'ticks',
    decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as Tick,
    outOfOrdernessMs: options.outOfOrdernessMs ?? 0,
    idleTimeoutMs: options.idleTimeoutMs ?? null,
  });
}

function collect<T>() {
  const values: T[] = [];
  return { values, sink: callbackSink<T>('collect', (batch) => void values.push(...batch)) };
}

const text = (r: WindowResult<unknown>) =>
  `${r.key}[${r.window.startMs},${r.window.endMs})=${JSON.stringify(r.value)}${r.update ? '*' : ''}`;

describe('stream jobs', () => {
  it('sliding windows put a record in size/slide windows and fire each as the watermark passes it', async () => {
    db = scratchEmbedded();
    await topicWith(1, [
      [100, 'a', 1],
      [1100, 'a', 2],
      [2100, 'a', 4],
      [9000, 'a', 0],
    ]);
    const out = collect<WindowResult<number>>();
    const late = collect<Tick>();
    const source = ticks();
    source
      .keyBy((t) => t.key)
      .window(sliding({ sizeMs: 2000, slideMs: 1000 }), { late: late.sink })
      .aggregate(sum((t: Tick) => t.n))
      .to(out.sink);
    const job = await openStreamJob({ name: 'sliding', source, store: db.store, log: db.log });
    await job.runToEnd();
    expect(out.values.map(text)).toEqual([
      'a[-1000,1000)=1',
      'a[0,2000)=3',
      'a[1000,3000)=6',
      'a[2000,4000)=4',
    ]);
    expect(job.metrics.openWindows).toBe(2); // the two windows holding 9000 are still open
  });

  it('session windows merge records closer than the gap and fire after the gap passes', async () => {
    db = scratchEmbedded();
    await topicWith(1, [
      [0, 'a', 1],
      [400, 'a', 1],
      [300, 'b', 1],
      [900, 'a', 1],
      [5000, 'a', 1],
      [9000, 'b', 1],
    ]);
    const out = collect<WindowResult<number>>();
    const source = ticks();
    source
      .keyBy((t) => t.key)
      .window(session({ gapMs: 1000 }), { late: collect<Tick>().sink })
      .aggregate(count())
      .to(out.sink);
    const job = await openStreamJob({ name: 'sessions', source, store: db.store, log: db.log });
    await job.runToEnd({ finish: true });
    expect(out.values.map(text)).toEqual([
      'b[300,1300)=1',
      'a[0,1900)=3',
      'a[5000,6000)=1',
      'b[9000,10000)=1',
    ]);
  });

  it('an idle partition holds the watermark back until the idle timeout passes on the clock', async () => {
    const clock = new ManualClock(1_000_000);
    db = scratchEmbedded(clock);
    await topicWith(2, [
      [100, 'a', 1, 0],
      [1500, 'a', 1, 0],
    ]);
    const out = collect<WindowResult<number>>();
    const source = ticks({ idleTimeoutMs: 5000 });
    source
      .keyBy((t) => t.key)
      .window(tumbling({ sizeMs: 1000 }), { late: collect<Tick>().sink })
      .aggregate(count())
      .to(out.sink);
    const job = await openStreamJob({ name: 'idle', source, store: db.store, log: db.log, clock });
    await job.runToEnd();
    expect(out.values).toEqual([]); // partition 1 has delivered nothing: time cannot advance
    clock.advance(5000);
    await job.runToEnd();
    expect(job.metrics.idlePartitions).toEqual([0, 1]);
    await db.log.append('ticks', [
      { key: 'a', value: jsonValue({ key: 'a', n: 1 }), timestamp: 2600, partition: 0 },
    ]);
    await job.runToEnd();
    expect(job.metrics.idlePartitions).toEqual([1]);
    expect(out.values.map(text)).toEqual(['a[0,1000)=1', 'a[1000,2000)=1']);
  });

  it('processing-time windows group records by the clock when they are processed', async () => {
    const clock = new ManualClock(10_000);
    db = scratchEmbedded(clock);
    await topicWith(1, [
      [1, 'a', 1],
      [999_999, 'a', 1],
    ]);
    const out = collect<WindowResult<number>>();
    const source = ticks();
    source
      .keyBy((t) => t.key)
      .window(tumbling({ sizeMs: 1000, time: 'processing' }), { late: collect<Tick>().sink })
      .aggregate(count())
      .to(out.sink);
    const job = await openStreamJob({ name: 'proc', source, store: db.store, log: db.log, clock });
    await job.runToEnd();
    expect(out.values).toEqual([]);
    clock.advance(1000);
    await job.runToEnd();
    expect(out.values.map(text)).toEqual(['a[10000,11000)=2']);
  });

  it('a late record within the allowed lateness updates the fired window; later ones go to the late sink', async () => {
    db = scratchEmbedded();
    await topicWith(1, [
      [100, 'a', 5],
      [1500, 'a', 1],
      [200, 'a', 7],
      [3200, 'a', 1],
      [300, 'a', 9],
    ]);
    const out = collect<WindowResult<number | null>>();
    const late = collect<Tick>();
    const source = ticks();
    source
      .keyBy((t) => t.key)
      .window(tumbling({ sizeMs: 1000 }), { allowedLatenessMs: 1000, late: late.sink })
      .aggregate(max((t: Tick) => t.n))
      .to(out.sink);
    const job = await openStreamJob({ name: 'lateness', source, store: db.store, log: db.log });
    await job.runToEnd();
    expect(out.values.map(text)).toEqual(['a[0,1000)=5', 'a[0,1000)=7*', 'a[1000,2000)=1']);
    expect(late.values).toEqual([{ key: 'a', n: 9 }]);
    expect(job.metrics.lateRecords).toBe(1);
  });

  it('commits results to a read model and a topic with the offsets, and a reopened job resumes without repeating them', async () => {
    db = scratchEmbedded();
    await topicWith(1, [
      [100, 'a', 1],
      [200, 'b', 2],
      [1100, 'a', 3],
    ]);
    await db.log.createTopic('results', { partitions: 1, retentionMs: null });
    const define = () => {
      const source = ticks();
      const results = source
        .keyBy((t) => t.key)
        .window(tumbling({ sizeMs: 1000 }), { late: collect<Tick>().sink })
        .aggregate(sum((t: Tick) => t.n));
      results.to(
        readModelSink({ type: 'totals', id: (r) => `${r.key}/${r.window.startMs}`, state: (r) => r.value }),
      );
      results.to(
        topicSink('results', (r) => ({
          key: r.key,
          value: jsonValue(r.value),
          timestamp: r.window.endMs - 1,
        })),
      );
      return source;
    };
    const first = await openStreamJob({ name: 'sums', source: define(), store: db.store, log: db.log });
    await first.runToEnd();
    const second = await openStreamJob({ name: 'sums', source: define(), store: db.store, log: db.log });
    await db.log.append('ticks', [{ key: 'c', value: jsonValue({ key: 'c', n: 4 }), timestamp: 2500 }]);
    await second.runToEnd();
    const rows = await db.store.read((tx) => tx.entities.list('totals'));
    expect(rows.map((row) => [row.id, row.state])).toEqual([
      ['a/0', 1],
      ['a/1000', 3],
      ['b/0', 2],
    ]);
    const published = await db.log.read('results', 0, 0);
    expect(published.map((r) => `${new TextDecoder().decode(r.key!)}@${r.timestamp}`)).toEqual([
      'a@999',
      'b@999',
      'a@1999',
    ]);
    expect(second.metrics.recordsIn).toBe(4);
    expect((await second.lag())[0]).toBe(0);
  });

  it('a second instance of the same job cannot commit over the first: the state row fences it', async () => {
    db = scratchEmbedded();
    await topicWith(1, [[100, 'a', 1]]);
    const define = () => {
      const source = ticks();
      source
        .keyBy((t) => t.key)
        .window(tumbling({ sizeMs: 1000 }), { late: collect<Tick>().sink })
        .aggregate(count())
        .to(collect<WindowResult<number>>().sink);
      return source;
    };
    const a = await openStreamJob({ name: 'twice', source: define(), store: db.store, log: db.log });
    const b = await openStreamJob({ name: 'twice', source: define(), store: db.store, log: db.log });
    await a.runToEnd();
    await expect(b.runToEnd()).rejects.toBeInstanceOf(ConflictError);
  });

  it('an undecodable record fails the job with the record named, and commits nothing of its batch', async () => {
    db = scratchEmbedded();
    await db.log.createTopic('ticks', { partitions: 1, retentionMs: null });
    await db.log.append('ticks', [{ key: 'a', value: new TextEncoder().encode('{not json'), timestamp: 1 }]);
    const source = ticks();
    source
      .keyBy((t) => t.key)
      .window(tumbling({ sizeMs: 1000 }), { late: collect<Tick>().sink })
      .aggregate(count());
    const job = await openStreamJob({ name: 'bad', source, store: db.store, log: db.log });
    await expect(job.runToEnd()).rejects.toThrow(/cannot decode ticks\[0\]@0/);
    expect(await db.store.read((tx) => tx.entities.list('$meridian.stream'))).toEqual([]);
  });

  it('refuses bad definitions with the option named', () => {
    expect(() => tumbling({ sizeMs: 0 })).toThrow(ValidationError);
    expect(() => sliding({ sizeMs: 1000, slideMs: 300 })).toThrow(/'sizeMs' must be a multiple of 'slideMs'/);
    expect(() =>
      ticks()
        .keyBy((t) => t.key)
        .window(tumbling({ sizeMs: 1 }), {} as never),
    ).toThrow(/'late' must be a sink/);
    expect(() => fromTopic({ topic: 'x', decode: () => 1, outOfOrdernessMs: -1 })).toThrow(
      /'outOfOrdernessMs' must be >= 0/,
    );
  });

  it('a job given some partitions reads only those, with their own watermark, and refuses one the topic lacks', async () => {
    db = scratchEmbedded();
    await topicWith(2, [
      [100, 'a', 1, 0],
      [5000, 'a', 1, 0],
      [200, 'b', 2, 1],
    ]);
    const out = collect<WindowResult<number>>();
    const source = ticks();
    source
      .keyBy((t) => t.key)
      .window(tumbling({ sizeMs: 1000 }), { late: collect<Tick>().sink })
      .aggregate(sum((t: Tick) => t.n))
      .to(out.sink);
    const job = await openStreamJob({ name: 'p0', source, store: db.store, log: db.log, partitions: [0] });
    await job.runToEnd();
    // Partition 1 neither holds the watermark back nor reaches the windows.
    expect(out.values.map(text)).toEqual(['a[0,1000)=1']);
    expect(job.metrics.positions).toEqual([2]);
    await expect(
      openStreamJob({ name: 'p2', source: ticks(), store: db.store, log: db.log, partitions: [2] }),
    ).rejects.toThrow(/'partitions' must hold partitions of 'ticks' \(0 to 1\)/);
  });
});
