// A process SIGKILLed in the middle of appending loses nothing it acknowledged and leaves no
// partial batch: after each kill the reopened log holds every acknowledged batch whole, offsets
// are dense, and a group resumes exactly at its committed offset.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../children.fixture.ts';
import { seededRandom } from '../../time.ts';
import type { LogRecord } from '../types.ts';
import { openSqliteLog } from './sqlite-log.ts';

const topic = 'crash';
const group = 'crash-group';
const partitions = 4;
const childScript = join(import.meta.dirname, 'crash-child.ts');
const root = mkdtempSync(join(tmpdir(), 'meridian-log-crash-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Ack {
  ack: number;
  count: number;
  placed: [partition: number, firstOffset: number, records: number][];
}

/** Runs the child until it acknowledged `killAfterAcks` batches, then SIGKILLs it `delayMs` later. */
async function runAndKill(
  path: string,
  seed: number,
  firstBatchId: number,
  durability: 'process' | 'fsync',
  killAfterAcks: number,
  delayMs: number,
): Promise<{ acks: Ack[]; commits: Map<number, number>[]; signal: NodeJS.Signals | null }> {
  const child: ChildProcess = spawnNode(childScript, [path, String(seed), String(firstBatchId), durability]);
  const acks: Ack[] = [];
  const commits: Map<number, number>[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  for await (const line of createInterface({ input: child.stdout! })) {
    const message = JSON.parse(line) as Ack | { commit: [number, number][] };
    if ('ack' in message) acks.push(message);
    else commits.push(new Map(message.commit));
    if (acks.length === killAfterAcks && !child.killed) {
      // The child keeps appending meanwhile, so the kill lands at an arbitrary point.
      setTimeout(() => child.kill('SIGKILL'), delayMs);
    }
  }
  const signal = await exited;
  expect(signal, `child died on its own: ${stderr}`).toBe('SIGKILL');
  return { acks, commits, signal };
}

async function readAll(
  path: string,
): Promise<{ records: LogRecord[][]; committed: Map<number, number> | undefined }> {
  const log = openSqliteLog({ path, retentionCheckIntervalMs: null });
  try {
    const records: LogRecord[][] = [];
    for (let partition = 0; partition < partitions; partition++) {
      const { start, end } = await log.offsets(topic, partition);
      expect(start).toBe(0);
      const all: LogRecord[] = [];
      while (all.length < end)
        all.push(...(await log.read(topic, partition, all.length, { maxRecords: 10_000 })));
      // Dense: exactly the offsets 0..end-1, in order.
      expect(all.map((record) => record.offset)).toEqual(all.map((_, i) => i));
      records.push(all);
    }
    const committed = await log.committedOffsets(group, topic).catch(() => undefined);
    return { records, committed };
  } finally {
    await log.close();
  }
}

describe('SqliteLog under SIGKILL', () => {
  it('keeps every acknowledged batch whole, dense offsets, and committed group progress', async () => {
    // MERIDIAN_CRASH_SEED picks the kill moments (CI runs several seeds).
    const seed = Number(process.env.MERIDIAN_CRASH_SEED ?? 20_260_611);
    const random = seededRandom(seed);
    const path = join(root, 'crash.db');
    const acknowledged: Ack[] = [];
    const lastCommitted = new Map<number, number>();
    let nextBatchId = 1;
    for (let round = 0; round < 5; round++) {
      const durability = round % 2 === 0 ? 'process' : 'fsync';
      const killAfterAcks = 3 + Math.floor(random.next() * 25);
      const delayMs = Math.floor(random.next() * 15);
      const context = `seed ${seed}, round ${round} (${durability}, kill after ${killAfterAcks} acks + ${delayMs} ms)`;
      const run = await runAndKill(path, seed + round, nextBatchId, durability, killAfterAcks, delayMs);
      acknowledged.push(...run.acks);
      for (const commit of run.commits)
        for (const [partition, offset] of commit) lastCommitted.set(partition, offset);

      const { records, committed } = await readAll(path);
      // Group the stored records by batch: every batch is complete (all-or-nothing).
      const batches = new Map<number, { count: number; indexes: Set<number> }>();
      for (const record of records.flat()) {
        const id = Number(record.headers.batch);
        const batch = batches.get(id) ?? { count: Number(record.headers.count), indexes: new Set<number>() };
        batch.indexes.add(Number(record.headers.index));
        batches.set(id, batch);
      }
      for (const [id, batch] of batches) {
        expect(batch.indexes.size, `${context}: batch ${id} is whole`).toBe(batch.count);
      }
      // Every acknowledged batch is there, at the offsets the append reported.
      for (const ack of acknowledged) {
        expect(batches.get(ack.ack)?.count, `${context}: acknowledged batch ${ack.ack} survived`).toBe(
          ack.count,
        );
        for (const [partition, firstOffset, count] of ack.placed) {
          const stored = records[partition]!.slice(firstOffset, firstOffset + count);
          expect(stored.every((record) => Number(record.headers.batch) === ack.ack)).toBe(true);
          expect(stored).toHaveLength(count);
        }
      }
      // Batch ids are dense: nothing after a lost batch, at most the unacknowledged tail beyond the acks.
      const ids = [...batches.keys()].sort((a, b) => a - b);
      expect(ids, context).toEqual(ids.map((_, i) => i + 1));
      nextBatchId = ids.length + 1;

      // The group's committed offsets are at least the last acknowledged commit, and a consumer
      // of the group resumes exactly there.
      if (lastCommitted.size > 0) {
        expect(committed, context).toBeDefined();
        for (const [partition, offset] of lastCommitted) {
          expect(committed!.get(partition)).toBeGreaterThanOrEqual(offset);
        }
        const log = openSqliteLog({ path, retentionCheckIntervalMs: null });
        try {
          const consumer = log.consumer({ group, topics: [topic], maxPollRecords: 10_000 });
          const firstSeen = new Map<number, number>();
          for (let polls = 0; polls < 50; polls++) {
            const polled = await consumer.poll({ timeoutMs: 0 });
            if (polled.length === 0) break;
            for (const record of polled)
              if (!firstSeen.has(record.partition)) firstSeen.set(record.partition, record.offset);
          }
          for (const [partition, offset] of committed!) {
            if (offset < records[partition]!.length) expect(firstSeen.get(partition), context).toBe(offset);
            else expect(firstSeen.has(partition), context).toBe(false);
          }
        } finally {
          await log.close();
        }
      }
    }
    expect(acknowledged.length).toBeGreaterThan(15);
  }, 120_000);
});
