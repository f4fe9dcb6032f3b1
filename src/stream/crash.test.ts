// Exactly-once across kill -9: a windows job over a seeded input is SIGKILLed at seeded moments
// (after a seeded number of its commits, while it reads and commits on), restarted on the same
// database each time, and finally run to the end. Its outputs — four topics (one a stream-table
// join, whose table state commits with the job) and a read model —
// must equal, byte for byte, those of the same job run once without interruption.
// MERIDIAN_STREAM_CRASH_SEED picks the input and the kill moments.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonValue } from '../log/index.ts';
import { seededRandom } from '../time.ts';
import { inputTopic, outputTopics, tableTopic } from './crash-child.ts';
import { type Embedded, openEmbeddedAt } from './stream.fixture.ts';

const seed = Number(process.env.MERIDIAN_STREAM_CRASH_SEED ?? 20261206);
const kills = 4;
const childScript = join(import.meta.dirname, 'crash-child.ts');
const directory = mkdtempSync(join(tmpdir(), 'meridian-stream-crash-'));

let reference: Embedded;
let crashed: Embedded;

async function prepare(db: Embedded): Promise<void> {
  const random = seededRandom(seed);
  await db.log.createTopic(inputTopic, { partitions: 3, retentionMs: null });
  for (const topic of outputTopics) await db.log.createTopic(topic, { partitions: 2, retentionMs: null });
  const records = [];
  for (let i = 0; i < 6000; i++) {
    const key = `k${Math.floor(random.next() * 20)}`;
    const late = random.next() < 0.03;
    const timestamp =
      10_000 + i * 3 - (late ? 1000 + Math.floor(random.next() * 2000) : Math.floor(random.next() * 400));
    records.push({ key, value: jsonValue({ key, n: Math.floor(random.next() * 1000) }), timestamp });
  }
  for (let from = 0; from < records.length; from += 1000)
    await db.log.append(inputTopic, records.slice(from, from + 1000));
  // Reference rows changing over the input's time span (some deleted, some out of order), read by
  // the job in rounds beside the input.
  await db.log.createTopic(tableTopic, { partitions: 2, retentionMs: null });
  const changes = [];
  for (let i = 0; i < 300; i++) {
    const key = `k${Math.floor(random.next() * 20)}`;
    const timestamp = 10_000 + i * 60 - Math.floor(random.next() * 3000);
    const value = random.next() < 0.1 ? null : jsonValue(Math.floor(random.next() * 100));
    changes.push({ key, value, timestamp });
  }
  await db.log.append(tableTopic, changes);
}

/** Runs the child to the end, or kills it with SIGKILL after `killAfterCommits` commits. */
function runChild(
  path: string,
  killAfterCommits: number | null,
): Promise<{ killed: boolean; done: boolean }> {
  const child = spawn(process.execPath, [childScript, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let commits = 0;
  let done = false;
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (line.startsWith('committed')) commits++;
      if (line === 'done') done = true;
    }
    if (killAfterCommits !== null && commits >= killAfterCommits) child.kill('SIGKILL');
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ killed: true, done });
      else if (code === 0) resolve({ killed: false, done });
      else reject(new Error(`crash child exited with ${code}: ${stderr.slice(0, 2000)}`));
    });
  });
}

async function dump(db: Embedded): Promise<string[]> {
  const lines: string[] = [];
  for (const topic of outputTopics) {
    for (const partition of [0, 1]) {
      for (let offset = 0; ; ) {
        const records = await db.log.read(topic, partition, offset, { maxRecords: 1000 });
        if (records.length === 0) break;
        for (const r of records) {
          lines.push(
            `${topic}/${partition}@${r.offset} ${Buffer.from(r.key ?? []).toString('hex')} ${Buffer.from(r.value ?? []).toString('hex')} ${r.timestamp}`,
          );
        }
        offset = records[records.length - 1]!.offset + 1;
      }
    }
  }
  for (let afterId: string | undefined; ; ) {
    const after = afterId;
    const rows = await db.store.read((tx) =>
      tx.entities.list('crash-sums', after === undefined ? { limit: 1000 } : { afterId: after, limit: 1000 }),
    );
    if (rows.length === 0) break;
    for (const row of rows) lines.push(`row ${row.id} ${JSON.stringify(row.state)}`);
    afterId = rows[rows.length - 1]!.id;
  }
  return lines;
}

beforeAll(async () => {
  reference = openEmbeddedAt(join(directory, 'reference.db'));
  crashed = openEmbeddedAt(join(directory, 'crashed.db'));
  await prepare(reference);
  await prepare(crashed);
});
afterAll(async () => {
  await reference?.close();
  await crashed?.close();
  rmSync(directory, { recursive: true, force: true });
});

describe('stream exactly-once across kill -9', () => {
  it('gives the same outputs after seeded SIGKILLs and restarts as an uninterrupted run', {
    timeout: 240_000,
  }, async () => {
    await reference.close();
    await crashed.close();
    const uninterrupted = await runChild(reference.path, null);
    expect(uninterrupted.done).toBe(true);
    const random = seededRandom(seed + 1);
    let killed = 0;
    for (let run = 0; run < kills; run++) {
      const outcome = await runChild(crashed.path, 1 + Math.floor(random.next() * 12));
      if (outcome.killed) killed++;
      else break;
    }
    expect(killed).toBeGreaterThan(0);
    expect((await runChild(crashed.path, null)).done).toBe(true);
    reference = openEmbeddedAt(reference.path);
    crashed = openEmbeddedAt(crashed.path);
    const expected = await dump(reference);
    expect(expected.length).toBeGreaterThan(1000);
    expect(expected.some((line) => line.startsWith('crash-late/'))).toBe(true);
    const joined = expected.filter((line) => line.startsWith('crash-joined/'));
    expect(joined.length).toBe(6000);
    const rows = joined.map((line) => Buffer.from(line.split(' ')[2]!, 'hex').toString());
    // Both sides of the join occur: records that met a row and records that met none.
    expect(rows.filter((row) => row.endsWith(',null]')).length).toBeGreaterThan(100);
    expect(rows.filter((row) => !row.endsWith(',null]')).length).toBeGreaterThan(1000);
    expect(await dump(crashed)).toEqual(expected);
  });
});
