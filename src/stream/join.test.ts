// Stream-table joins as a caller sees them: inner and left joins against a table materialised
// from a changelog topic, versioned by event time (a record meets the row valid at its own event
// time), deletions by null values, the table's state committed with the job and resumed by a
// reopened job, bounded history, and bad table records.
import { afterEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { jsonValue } from '../log/index.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
import { callbackSink } from './sinks.ts';
import { type Embedded, scratchEmbedded } from './stream.fixture.ts';
import { tableFromTopic } from './table.ts';

interface Tick {
  readonly key: string;
  readonly n: number;
}
type Row = { sector: string };

let db: Embedded;
afterEach(async () => {
  await db?.close();
});

async function write(topic: string, records: Array<[number, string, Tick | Row | null]>): Promise<void> {
  for (const [timestamp, key, value] of records) {
    await db.log.append(topic, [{ key, value: value === null ? null : jsonValue(value), timestamp }]);
  }
}

const json = <T>(bytes: Uint8Array | null) => JSON.parse(new TextDecoder().decode(bytes!)) as T;

function dataflow(options: { historyRetentionMs?: number } = {}) {
  const source = fromTopic<Tick>({
    topic: 'ticks',
    decode: (record) => json<Tick>(record.value),
    outOfOrdernessMs: 0,
    idleTimeoutMs: null,
  });
  const sectors = tableFromTopic<Row>({
    topic: 'sectors',
    decode: (record) => json<Row>(record.value),
    ...options,
  });
  const inner: string[] = [];
  const left: string[] = [];
  const keyed = source.keyBy((t) => t.key);
  keyed
    .join(sectors, (t, row) => `${t.key}:${t.n}:${row.sector}`)
    .to(callbackSink<string>('inner', (values) => void inner.push(...values)));
  keyed
    .leftJoin(sectors, (t, row) => `${t.key}:${t.n}:${row?.sector ?? '-'}`)
    .to(callbackSink<string>('left', (values) => void left.push(...values)));
  return { source, inner, left };
}

async function topics(): Promise<void> {
  await db.log.createTopic('ticks', { partitions: 1, retentionMs: null });
  await db.log.createTopic('sectors', { partitions: 1, retentionMs: null });
}

describe('stream-table joins', () => {
  it('a record meets the row valid at its event time; inner drops records without one, left keeps them', async () => {
    db = scratchEmbedded();
    await topics();
    await write('sectors', [
      [1000, 'a', { sector: 'tech' }],
      [5000, 'a', { sector: 'energy' }],
      [3000, 'b', { sector: 'banks' }],
      [6000, 'b', null],
    ]);
    await write('ticks', [
      [500, 'a', { key: 'a', n: 1 }],
      [1000, 'a', { key: 'a', n: 2 }],
      [4999, 'a', { key: 'a', n: 3 }],
      [7000, 'a', { key: 'a', n: 4 }],
      [2000, 'b', { key: 'b', n: 5 }],
      [3500, 'b', { key: 'b', n: 6 }],
      [6000, 'b', { key: 'b', n: 7 }],
      [100, 'c', { key: 'c', n: 8 }],
    ]);
    const { source, inner, left } = dataflow();
    const job = await openStreamJob({ name: 'join', source, store: db.store, log: db.log });
    await job.runToEnd();
    expect(inner).toEqual(['a:2:tech', 'a:3:tech', 'a:4:energy', 'b:6:banks']);
    expect(left).toEqual([
      'a:1:-',
      'a:2:tech',
      'a:3:tech',
      'a:4:energy',
      'b:5:-',
      'b:6:banks',
      'b:7:-',
      'c:8:-',
    ]);
  });

  it('table changes read in a later round than a record do not reach it, and produce no output themselves', async () => {
    db = scratchEmbedded();
    await topics();
    await write('ticks', [[9000, 'a', { key: 'a', n: 1 }]]);
    const first = dataflow();
    const job = await openStreamJob({ name: 'join', source: first.source, store: db.store, log: db.log });
    await job.runToEnd();
    await write('sectors', [[1000, 'a', { sector: 'tech' }]]);
    await write('ticks', [[9001, 'a', { key: 'a', n: 2 }]]);
    await job.runToEnd();
    expect(first.left).toEqual(['a:1:-', 'a:2:tech']);
  });

  it('a change appended before a record meets it, even when appended while the round was reading', async () => {
    db = scratchEmbedded();
    await topics();
    // The change and then the record land just as the job's round reads its input: a job that read
    // its tables before its input would have missed the change.
    let landed = false;
    const log = new Proxy(db.log, {
      get(target, property) {
        if (property === 'read') {
          return async (...args: Parameters<typeof target.read>) => {
            if (args[0] === 'ticks' && !landed) {
              landed = true;
              await write('sectors', [[1000, 'a', { sector: 'tech' }]]);
              await write('ticks', [[2000, 'a', { key: 'a', n: 1 }]]);
            }
            return target.read(...args);
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const { source, left } = dataflow();
    await (await openStreamJob({ name: 'join', source, store: db.store, log })).runToEnd();
    expect(left).toEqual(['a:1:tech']);
  });

  it('records wait while the table has more to read than a round takes', async () => {
    db = scratchEmbedded();
    await topics();
    await write(
      'sectors',
      [1, 2, 3, 4, 5].map((n) => [1000 + n, 'a', { sector: `s${n}` }]),
    );
    await write('ticks', [[2000, 'a', { key: 'a', n: 1 }]]);
    const { source, left } = dataflow();
    const job = await openStreamJob({
      name: 'join',
      source,
      store: db.store,
      log: db.log,
      maxRecordsPerRead: 2,
    });
    await job.runToEnd();
    expect(left).toEqual(['a:1:s5']);
    expect(job.metrics.tableVersions).toBeGreaterThan(0);
  });

  it('the table commits with the job: a reopened job joins with the rows it read before, without rereading them', async () => {
    db = scratchEmbedded();
    await topics();
    await write('sectors', [[1000, 'a', { sector: 'tech' }]]);
    await write('ticks', [[2000, 'a', { key: 'a', n: 1 }]]);
    const first = dataflow();
    await (
      await openStreamJob({ name: 'join', source: first.source, store: db.store, log: db.log })
    ).runToEnd();
    await write('ticks', [[3000, 'a', { key: 'a', n: 2 }]]);
    const second = dataflow();
    const job = await openStreamJob({ name: 'join', source: second.source, store: db.store, log: db.log });
    await job.runToEnd();
    expect(second.inner).toEqual(['a:2:tech']);
    expect(job.metrics.recordsIn).toBe(2);
    expect(job.metrics.tableVersions).toBe(1);
  });

  it('history older than the retention behind the newest table time is dropped, all but the version valid then', async () => {
    db = scratchEmbedded();
    await topics();
    await write('sectors', [
      [1000, 'a', { sector: 'v1' }],
      [2000, 'a', { sector: 'v2' }],
      [3000, 'a', { sector: 'v3' }],
      [10_000, 'z', { sector: 'clock' }],
      [10_000, 'd', null],
    ]);
    await write('ticks', [
      [1500, 'a', { key: 'a', n: 1 }],
      [2500, 'a', { key: 'a', n: 2 }],
      [9000, 'a', { key: 'a', n: 3 }],
    ]);
    const { source, left } = dataflow({ historyRetentionMs: 7500 });
    const job = await openStreamJob({ name: 'join', source, store: db.store, log: db.log });
    await job.runToEnd();
    // Horizon 2500: v1 is gone, v2 still valid at the horizon; d's deletion is newer than the
    // horizon, so it is held (a lookup before it would find nothing either way).
    expect(left).toEqual(['a:1:-', 'a:2:v2', 'a:3:v3']);
    expect(job.metrics.tableVersions).toBe(4);
  });

  it('a table record without a key fails the job with where it is, or goes to the invalid sink', async () => {
    db = scratchEmbedded();
    await topics();
    await db.log.append('sectors', [{ key: null, value: jsonValue({ sector: 'x' }), timestamp: 1 }]);
    const { source } = dataflow();
    const job = await openStreamJob({ name: 'join', source, store: db.store, log: db.log });
    await expect(job.runToEnd()).rejects.toThrow(
      /Table 'sectors' cannot read sectors\[0\]@0: a table record needs a key/,
    );
    expect(() => tableFromTopic({ topic: 'sectors', decode: () => null, historyRetentionMs: -1 })).toThrow(
      ValidationError,
    );
    const invalid: unknown[] = [];
    const source2 = fromTopic<Tick>({
      topic: 'ticks',
      decode: (r) => json<Tick>(r.value),
      outOfOrdernessMs: 0,
    });
    const table = tableFromTopic<Row>({
      topic: 'sectors',
      decode: (r) => json<Row>(r.value),
      invalid: callbackSink('invalid', (values) => void invalid.push(...values)),
    });
    source2
      .keyBy((t) => t.key)
      .join(table, (t) => t)
      .to(callbackSink('out', () => undefined));
    const second = await openStreamJob({ name: 'join2', source: source2, store: db.store, log: db.log });
    await second.runToEnd();
    expect(invalid).toHaveLength(1);
    expect(second.metrics.invalidRecords).toBe(1);
  });
});
