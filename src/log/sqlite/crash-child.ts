/**
 * The process crash.test.ts kills. It appends batches of records to a SQLite log in a loop and
 * prints one line per acknowledged append (and per committed group offset), so the parent knows
 * exactly what the log promised before the SIGKILL.
 *
 * Usage: node crash-child.ts <path> <seed> <firstBatchId> <process|fsync>
 * Output lines (JSON): {"ack":id,"count":n,"placed":[[partition,firstOffset,records],...]}
 *                      {"commit":[[partition,offset],...]}
 */
import { seededRandom } from '../../time.ts';
import type { ProducerRecord } from '../types.ts';
import { openSqliteLog } from './sqlite-log.ts';

// The parent (crash.test.ts) uses the same names.
const crashTopic = 'crash';
const crashGroup = 'crash-group';
const crashPartitions = 4;

async function main(): Promise<void> {
  const [path, seedText, firstBatchText, durability] = process.argv.slice(2);
  if (path === undefined || (durability !== 'process' && durability !== 'fsync')) {
    throw new Error('usage: crash-child.ts <path> <seed> <firstBatchId> <process|fsync>');
  }
  const random = seededRandom(Number(seedText));
  const log = openSqliteLog({ path, durability, random, retentionCheckIntervalMs: null });
  await log.createTopic(crashTopic, { partitions: crashPartitions, retentionMs: null });
  const committed = new Map<number, number>();
  for (let batchId = Number(firstBatchText); ; batchId++) {
    // Large, uneven batches spread over all partitions, so a kill often lands inside a commit.
    const count = 1 + Math.floor(random.next() * 300);
    const records: ProducerRecord[] = [];
    for (let index = 0; index < count; index++) {
      records.push({
        key: `key-${Math.floor(random.next() * 1000)}`,
        value: new Uint8Array(Math.floor(random.next() * 2048)).fill(index & 0xff),
        headers: { batch: String(batchId), index: String(index), count: String(count) },
      });
    }
    const results = await log.append(crashTopic, records);
    const placed = new Map<number, [number, number, number]>();
    for (const result of results) {
      const entry = placed.get(result.partition);
      if (entry === undefined) placed.set(result.partition, [result.partition, result.offset, 1]);
      else entry[2]++;
      committed.set(result.partition, result.offset + 1);
    }
    process.stdout.write(`${JSON.stringify({ ack: batchId, count, placed: [...placed.values()] })}\n`);
    if (batchId % 5 === 0) {
      // Commit the group's progress to the end of what this process appended.
      const commits = [...committed].map(([partition, offset]) => ({ topic: crashTopic, partition, offset }));
      await log.commitOffsets(crashGroup, commits);
      process.stdout.write(`${JSON.stringify({ commit: [...committed] })}\n`);
    }
  }
}

await main();
