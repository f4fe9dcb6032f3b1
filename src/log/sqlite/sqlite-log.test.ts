// The SQLite log passes the shared log contract, and keeps its own promises: retention and
// compaction, joining the caller's transaction, waking consumers only after commit, durability,
// schema checks, and agreement with a simple in-memory model under random appends.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../../store/sqlite/database.ts';
import { ManualClock, seededRandom } from '../../time.ts';
import { utf8 } from '../codec.ts';
import { describeLogContract } from '../contract.ts';
import { SchemaMismatchError } from '../errors.ts';
import type { LogRecord } from '../types.ts';
import { openSqliteLog, type RetentionEvent, SqliteLog, type SqliteLogOptions } from './sqlite-log.ts';

const root = mkdtempSync(join(tmpdir(), 'meridian-log-'));
let fileSequence = 0;
const freshPath = () => join(root, `log-${++fileSequence}.db`);
const opened: SqliteLog[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((log) => log.close()));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describeLogContract('sqlite', async () => openSqliteLog({ path: freshPath(), random: seededRandom(1) }));

function open(options: Partial<SqliteLogOptions> & { path?: string; durability?: 'process' | 'fsync' } = {}) {
  const clock = new ManualClock(1_000_000);
  const log = openSqliteLog({
    path: options.path ?? freshPath(),
    clock,
    timers: clock,
    random: seededRandom(42),
    retentionCheckIntervalMs: null,
    ...options,
  });
  opened.push(log);
  return { log, clock };
}

const value = (size: number, fill = 1) => new Uint8Array(size).fill(fill);
const offsetsOf = (records: readonly LogRecord[]) => records.map((record) => record.offset);

/** Resolves once the promise settles; lets a test check "still waiting" without timers. */
function track<T>(promise: Promise<T>) {
  const state = { settled: false, value: undefined as T | undefined };
  void promise.then((result) => {
    state.settled = true;
    state.value = result;
  });
  return state;
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SqliteLog retention', () => {
  it('deletes records older than retentionMs and moves the start offset, leaving later offsets unchanged', async () => {
    const { log, clock } = open();
    await log.createTopic('events', { partitions: 1, retentionMs: 1000 });
    await log.append('events', [{ value: value(10) }, { value: value(10) }]);
    clock.advance(600);
    await log.append('events', [{ value: value(10, 7) }]);
    clock.advance(600);
    const result = await log.enforceRetention();
    expect(result.recordsRemoved).toBe(2);
    expect(result.bytesRemoved).toBeGreaterThan(0);
    expect(await log.offsets('events', 0)).toEqual({ start: 2, end: 3 });
    const records = await log.read('events', 0, 0);
    expect(offsetsOf(records)).toEqual([2]);
    expect(records[0]!.value).toEqual(value(10, 7));
    // The next append continues the dense sequence.
    expect((await log.append('events', [{ value: value(1) }]))[0]!.offset).toBe(3);
  });

  it('hides expired records that share a batch with kept ones', async () => {
    const { log, clock } = open();
    await log.createTopic('mixed', { partitions: 1, retentionMs: 1000 });
    const now = clock.now();
    await log.append('mixed', [
      { value: value(1), timestamp: now - 5000 },
      { value: value(1), timestamp: now - 2000 },
      { value: value(1), timestamp: now },
    ]);
    const result = await log.enforceRetention();
    expect(result).toEqual({ recordsRemoved: 2, bytesRemoved: 0 });
    expect(await log.offsets('mixed', 0)).toEqual({ start: 2, end: 3 });
    expect(offsetsOf(await log.read('mixed', 0, 0))).toEqual([2]);
  });

  it('trims a partition from its start down to retentionBytes, a batch at a time', async () => {
    const { log } = open();
    await log.createTopic('sized', { partitions: 1, retentionMs: null, retentionBytes: 1000 });
    for (let i = 0; i < 10; i++)
      await log.append('sized', [{ value: value(100, i) }, { value: value(100, i) }]);
    await log.enforceRetention();
    const { start, end } = await log.offsets('sized', 0);
    expect(end).toBe(20);
    // Each batch stores 2 × (100 + 24) bytes; four fit in 1000 bytes.
    expect(start).toBe(12);
    const records = await log.read('sized', 0, 0);
    expect(offsetsOf(records)).toEqual([12, 13, 14, 15, 16, 17, 18, 19]);
    expect(records[0]!.value![0]).toBe(6);
    expect((await log.enforceRetention()).recordsRemoved).toBe(0);
  });

  it('compacts to the newest record per key and removes tombstones after tombstoneRetentionMs', async () => {
    const { log, clock } = open({ tombstoneRetentionMs: 10_000 });
    await log.createTopic('accounts', { partitions: 1, cleanupPolicy: 'compact', retentionMs: null });
    await log.append('accounts', [
      { key: 'a', value: utf8('a1') },
      { key: 'b', value: utf8('b1') },
      { key: 'a', value: utf8('a2') },
    ]);
    await log.append('accounts', [
      { key: 'c', value: utf8('c1') },
      { key: 'b', value: null },
    ]);
    expect((await log.enforceRetention()).recordsRemoved).toBe(2);
    let records = await log.read('accounts', 0, 0);
    expect(
      records.map((record) => [record.offset, record.value && new TextDecoder().decode(record.value)]),
    ).toEqual([
      [2, 'a2'],
      [3, 'c1'],
      [4, null],
    ]);
    // Offsets never change and the start stays: compaction leaves gaps, not renumbering.
    expect(await log.offsets('accounts', 0)).toEqual({ start: 0, end: 5 });
    clock.advance(10_001);
    expect((await log.enforceRetention()).recordsRemoved).toBe(1);
    records = await log.read('accounts', 0, 0);
    expect(offsetsOf(records)).toEqual([2, 3]);
    expect(offsetsOf(await log.read('accounts', 0, 4))).toEqual([]);
    await expect(log.append('accounts', [{ value: utf8('no key') }])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('a consumer positioned in a compacted gap moves on to the next record', async () => {
    const { log, clock } = open({ tombstoneRetentionMs: 0 });
    await log.createTopic('gaps', { partitions: 1, cleanupPolicy: 'compact' });
    await log.append('gaps', [
      { key: 'x', value: utf8('1') },
      { key: 'x', value: utf8('2') },
      { key: 'y', value: utf8('3') },
      { key: 'y', value: null },
    ]);
    await log.commitOffsets('reader', [{ topic: 'gaps', partition: 0, offset: 0 }]);
    // A tombstone goes once it is older than tombstoneRetentionMs (0 here).
    clock.advance(1);
    await log.enforceRetention();
    const consumer = log.consumer({ group: 'reader', topics: ['gaps'] });
    expect(offsetsOf(await consumer.poll({ timeoutMs: 0 }))).toEqual([1]);
    await consumer.commit();
    expect(await log.committedOffsets('reader', 'gaps')).toEqual(new Map([[0, 2]]));
    // Offsets 2 and 3 were compacted away: the next poll finds nothing and moves past the gap.
    expect(await consumer.poll({ timeoutMs: 0 })).toEqual([]);
    await consumer.commit();
    expect(await log.committedOffsets('reader', 'gaps')).toEqual(new Map([[0, 4]]));
  });

  it('runs retention every retentionCheckIntervalMs through the Timers port and reports each run', async () => {
    const { log, clock } = open({ retentionCheckIntervalMs: 60_000 });
    await log.createTopic('periodic', { partitions: 2, retentionMs: 1000 });
    await log.append('periodic', [
      { value: value(5), partition: 0 },
      { value: value(5), partition: 1 },
    ]);
    const events: RetentionEvent[] = [];
    let ran: () => void = () => undefined;
    const subscription = log.onRetention((event) => {
      events.push(event);
      ran();
    });
    const firstRun = new Promise<void>((resolve) => {
      ran = resolve;
    });
    clock.advance(60_000);
    await firstRun;
    expect(events).toEqual([{ result: { recordsRemoved: 2, bytesRemoved: expect.any(Number) } }]);
    expect(await log.offsets('periodic', 1)).toEqual({ start: 1, end: 1 });
    // Rescheduled after each run.
    const secondRun = new Promise<void>((resolve) => {
      ran = resolve;
    });
    clock.advance(60_000);
    await secondRun;
    expect(events).toHaveLength(2);
    subscription.dispose();
    await log.close();
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('SqliteLog transactions and wake-ups', () => {
  it('joins the caller’s write: a rolled-back write leaves no records and wakes nobody', async () => {
    const clock = new ManualClock(0);
    const db = new SqliteDatabase({ path: freshPath() });
    const log = new SqliteLog(db, { clock, timers: clock, retentionCheckIntervalMs: null });
    try {
      await log.createTopic('t', { partitions: 1 });
      const consumer = log.consumer({ group: 'g', topics: ['t'] });
      const poll = track(consumer.poll({ timeoutMs: 1000 }));
      await expect(
        db.write(async () => {
          await log.append('t', [{ value: value(3) }]);
          await log.commitOffsets('g', [{ topic: 't', partition: 0, offset: 1 }]);
          throw new Error('handler failed');
        }),
      ).rejects.toThrow('handler failed');
      await flush();
      expect(poll.settled).toBe(false);
      expect(await log.offsets('t', 0)).toEqual({ start: 0, end: 0 });
      await expect(log.committedOffsets('g', 't')).resolves.toEqual(new Map());
      clock.advance(1000);
      await flush();
      expect(poll.value).toEqual([]);
    } finally {
      await log.close();
      db.close();
    }
  });

  it('joins the caller’s write: state, output records and the offset commit become visible together, after commit', async () => {
    const clock = new ManualClock(0);
    const db = new SqliteDatabase({ path: freshPath() });
    const log = new SqliteLog(db, { clock, timers: clock, retentionCheckIntervalMs: null });
    try {
      db.writeSync(() => db.prepare('CREATE TABLE app_state (id TEXT PRIMARY KEY, n INTEGER)').run());
      await log.createTopic('in', { partitions: 1 });
      await log.createTopic('out', { partitions: 1 });
      await log.append('in', [{ value: value(1) }]);
      const downstream = log.consumer({ group: 'downstream', topics: ['out'] });
      const waiting = track(downstream.poll({ timeoutMs: 5000 }));
      const worker = log.consumer({ group: 'worker', topics: ['in'] });
      const input = await worker.poll({ timeoutMs: 0 });
      await db.write(async () => {
        db.prepare("INSERT INTO app_state (id, n) VALUES ('x', 1)").run();
        await log.append('out', [{ value: value(2) }]);
        await worker.commit(input);
        await flush();
        // Inside the write nothing is visible to readers and the downstream poll still waits.
        expect(waiting.settled).toBe(false);
        expect(db.prepare('SELECT COUNT(*) AS n FROM app_state').get()).toEqual({ n: 1 });
      });
      await flush();
      expect(waiting.settled).toBe(true);
      expect(offsetsOf(waiting.value!)).toEqual([0]);
      expect(await log.committedOffsets('worker', 'in')).toEqual(new Map([[0, 1]]));
    } finally {
      await log.close();
      db.close();
    }
  });

  it('forgets a topic created and appended to inside a write that rolled back', async () => {
    const db = new SqliteDatabase({ path: freshPath() });
    const log = new SqliteLog(db, { retentionCheckIntervalMs: null });
    try {
      await expect(
        db.write(async () => {
          await log.createTopic('ghost', { partitions: 1 });
          expect((await log.append('ghost', [{ value: value(1) }]))[0]!.offset).toBe(0);
          throw new Error('abort');
        }),
      ).rejects.toThrow('abort');
      await expect(log.append('ghost', [{ value: value(1) }])).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(await log.listTopics()).toEqual([]);
      await db.write(async () => {
        await log.createTopic('real', { partitions: 1 });
        await log.append('real', [{ value: value(1) }]);
      });
      expect(await log.offsets('real', 0)).toEqual({ start: 0, end: 1 });
    } finally {
      await log.close();
      db.close();
    }
  });

  it('a poll waits on the Timers port: it returns [] only when its timeout elapses, and at once on append', async () => {
    const { log, clock } = open();
    await log.createTopic('t', { partitions: 1 });
    const consumer = log.consumer({ group: 'g', topics: ['t'] });
    const first = track(consumer.poll({ timeoutMs: 5000 }));
    clock.advance(4999);
    await flush();
    expect(first.settled).toBe(false);
    clock.advance(1);
    await flush();
    expect(first.value).toEqual([]);
    const second = track(consumer.poll({ timeoutMs: 5000 }));
    await log.append('t', [{ value: value(1) }]);
    await flush();
    expect(offsetsOf(second.value ?? [])).toEqual([0]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('allows one poll at a time per consumer', async () => {
    const { log, clock } = open();
    await log.createTopic('t', { partitions: 1 });
    const consumer = log.consumer({ group: 'g', topics: ['t'] });
    const first = consumer.poll({ timeoutMs: 100 });
    await expect(consumer.poll({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    clock.advance(100);
    expect(await first).toEqual([]);
  });

  it('rejects a commit for a partition a rebalance moved to another member', async () => {
    const { log } = open();
    await log.createTopic('t', { partitions: 2 });
    await log.append('t', [
      { value: value(1), partition: 0 },
      { value: value(1), partition: 1 },
    ]);
    const first = log.consumer({ group: 'g', topics: ['t'] });
    const records = await first.poll({ timeoutMs: 0 });
    expect(records).toHaveLength(2);
    const second = log.consumer({ group: 'g', topics: ['t'] });
    expect(first.assignment()).toEqual([{ topic: 't', partition: 0 }]);
    expect(second.assignment()).toEqual([{ topic: 't', partition: 1 }]);
    await expect(first.commit(records)).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(log.committedOffsets('g', 't')).resolves.toEqual(new Map());
    // The new owner starts from the committed offset (none: earliest), so nothing is lost.
    expect(offsetsOf(await second.poll({ timeoutMs: 0 }))).toEqual([0]);
  });

  it('shares the partitions of a topic created after the consumers subscribed', async () => {
    const { log } = open();
    const consumer = log.consumer({ group: 'g', topics: ['later'] });
    expect(consumer.assignment()).toEqual([]);
    await log.createTopic('later', { partitions: 2 });
    expect(consumer.assignment()).toHaveLength(2);
    await log.deleteTopic('later');
    expect(consumer.assignment()).toEqual([]);
  });

  it('spreads polls fairly over partitions and respects maxPollRecords', async () => {
    const { log } = open();
    await log.createTopic('t', { partitions: 3 });
    for (let partition = 0; partition < 3; partition++) {
      await log.append(
        't',
        Array.from({ length: 10 }, () => ({ value: value(1), partition })),
      );
    }
    const consumer = log.consumer({ group: 'g', topics: ['t'], maxPollRecords: 4 });
    const seen = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const records = await consumer.poll({ timeoutMs: 0 });
      expect(records).toHaveLength(4);
      seen.add(records[0]!.partition);
    }
    expect(seen.size).toBe(3);
  });
});

describe('SqliteLog storage', () => {
  it('keeps records, offsets and committed offsets across close and reopen', async () => {
    const path = freshPath();
    const first = open({ path }).log;
    await first.createTopic('t', { partitions: 2 });
    await first.append('t', [
      { key: 'k', value: value(3) },
      { key: 'k', value: value(4) },
    ]);
    const partition = (await first.append('t', [{ key: 'k', value: value(5) }]))[0]!.partition;
    await first.commitOffsets('g', [{ topic: 't', partition, offset: 2 }]);
    await first.close();
    const second = open({ path }).log;
    expect(await second.offsets('t', partition)).toEqual({ start: 0, end: 3 });
    expect(await second.committedOffsets('g', 't')).toEqual(new Map([[partition, 2]]));
    expect((await second.append('t', [{ key: 'k', value: value(6) }]))[0]!.offset).toBe(3);
  });

  it('splits a large append into several stored batches and still reads from any offset', async () => {
    const { log } = open();
    await log.createTopic('big', { partitions: 1 });
    const results = await log.append(
      'big',
      Array.from({ length: 9000 }, (_, i) => ({ value: utf8(String(i)) })),
    );
    expect(results[8999]!.offset).toBe(8999);
    const batches = log.db.prepare('SELECT COUNT(*) AS n FROM log_batches').get() as { n: number };
    expect(batches.n).toBe(3);
    const records = await log.read('big', 0, 4090, { maxRecords: 10 });
    expect(offsetsOf(records)).toEqual(Array.from({ length: 10 }, (_, i) => 4090 + i));
    expect(new TextDecoder().decode(records[9]!.value!)).toBe('4099');
  });

  it('passes the durability setting to SQLite', async () => {
    const fsync = open({ durability: 'fsync' }).log;
    expect(fsync.db.durability).toBe('fsync');
    expect(fsync.db.writeSync(() => fsync.db.prepare('PRAGMA synchronous').get())).toEqual({
      synchronous: 2,
    });
    const process = open().log;
    expect(process.db.durability).toBe('process');
    expect(process.db.writeSync(() => process.db.prepare('PRAGMA synchronous').get())).toEqual({
      synchronous: 1,
    });
  });

  it('refuses a database whose log schema is newer than this code with SchemaMismatchError', async () => {
    const path = freshPath();
    const log = open({ path }).log;
    log.db.writeSync(() =>
      log.db
        .prepare("INSERT INTO meridian_migrations (component, version, name) VALUES ('log', 99, 'future')")
        .run(),
    );
    await log.close();
    expect(() => openSqliteLog({ path })).toThrowError(SchemaMismatchError);
    expect(() => openSqliteLog({ path })).toThrowError(
      expect.objectContaining({
        code: 'SCHEMA_MISMATCH',
        message: expect.stringMatching(/schema version 99 of 'log'/),
      }),
    );
  });

  it('validates its options and applies maxRecordBytes and maxAppendRecords', async () => {
    expect(() => openSqliteLog({ path: freshPath(), maxRecordBytes: 0 })).toThrow(
      "'maxRecordBytes' must be an integer in [1, 67108864]: current value is 0",
    );
    expect(() => openSqliteLog({ path: freshPath(), retentionCheckIntervalMs: 0 })).toThrow(
      /'retentionCheckIntervalMs'/,
    );
    const { log } = open({ maxRecordBytes: 10, maxAppendRecords: 2 });
    await log.createTopic('t', { partitions: 1 });
    await log.append('t', [{ key: 'abc', value: value(7) }]);
    await expect(log.append('t', [{ key: 'abc', value: value(8) }])).rejects.toMatchObject({
      code: 'RECORD_TOO_LARGE',
      details: { recordBytes: 11, maxRecordBytes: 10 },
    });
    await expect(log.append('t', [{ value: null }, { value: null }, { value: null }])).rejects.toThrow(
      /'records.length' must be <= 2/,
    );
    await expect(log.createTopic('r', { partitions: 1, replicationFactor: 3 })).rejects.toThrow(
      /'replicationFactor' must be 1/,
    );
  });

  it('follows a topic deleted and recreated through another log on the same database', async () => {
    const db = new SqliteDatabase({ path: freshPath() });
    const a = new SqliteLog(db, { retentionCheckIntervalMs: null });
    const b = new SqliteLog(db, { retentionCheckIntervalMs: null });
    try {
      await a.createTopic('shared', { partitions: 3 });
      await a.append('shared', [{ value: value(1), partition: 2 }]);
      await b.deleteTopic('shared');
      await expect(a.offsets('shared', 2)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await b.createTopic('shared', { partitions: 1 });
      expect((await a.append('shared', [{ value: value(1) }]))[0]).toMatchObject({ partition: 0, offset: 0 });
      expect(await a.offsets('shared', 0)).toEqual({ start: 0, end: 1 });
    } finally {
      await a.close();
      await b.close();
      db.close();
    }
  });
});

describe('SqliteLog against a model', () => {
  it('reads back exactly what random appends wrote, and finds offsets by timestamp like a linear scan', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.array(
            fc.record({
              key: fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { nil: undefined }),
              size: fc.nat(50),
              timestamp: fc.integer({ min: 0, max: 10_000 }),
            }),
            { minLength: 1, maxLength: 20 },
          ),
          { minLength: 1, maxLength: 15 },
        ),
        fc.array(fc.integer({ min: 0, max: 11_000 }), { minLength: 5, maxLength: 5 }),
        async (batches, probes) => {
          const { log } = open();
          await log.createTopic('m', { partitions: 3 });
          const model: { key?: string; size: number; timestamp: number }[][] = [[], [], []];
          for (const batch of batches) {
            const results = await log.append(
              'm',
              batch.map((record) => ({
                key: record.key,
                value: value(record.size, record.size),
                timestamp: record.timestamp,
              })),
            );
            results.forEach((result, i) => {
              expect(result.offset).toBe(model[result.partition]!.length);
              model[result.partition]!.push(batch[i]!);
            });
          }
          for (let partition = 0; partition < 3; partition++) {
            const expected = model[partition]!;
            const records = await log.read('m', partition, 0, { maxRecords: 10_000, maxBytes: 1e8 });
            expect(records.map((record) => [record.timestamp, record.value!.length])).toEqual(
              expected.map((record) => [record.timestamp, record.size]),
            );
            for (const probe of probes) {
              const linear = expected.findIndex((record) => record.timestamp >= probe);
              expect(await log.offsetForTimestamp('m', partition, probe)).toBe(
                linear < 0 ? expected.length : linear,
              );
            }
          }
          await log.close();
        },
      ),
      { numRuns: 25 },
    );
  });
});
