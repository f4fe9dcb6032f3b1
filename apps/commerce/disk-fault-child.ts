// The commerce server for the disk-fault test, run on a small filesystem the test mounted: it
// prints its URL and an operator token, the runtime's problems as they happen, and obeys
// `fill` (write a file until the disk is full), `free` (delete it) and `abort` (turn the ext4
// filesystem read-only as the kernel does on an I/O error: `mount -o remount,abort`) on stdin.
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startCommerceServer } from './server.ts';

const dataDir = process.argv[2]!;
const filler = join(dataDir, 'filler');
const server = await startCommerceServer({
  dataDir,
  paymentRetryAfterSeconds: 0,
  app: {
    orders: {
      chargeRetry: { maxAttempts: 4, initialDelayMs: 1, maxDelayMs: 10 },
      paymentCallTimeoutMs: 1000,
    },
    runtime: {
      compensationRetry: { initialDelayMs: 1, maxDelayMs: 20 },
      onProblem: (problem) => console.log(JSON.stringify({ problem: problem.message, error: problem.error })),
    },
  },
});
const token = await server.devAuth!.issue('disk-test', 'operator');
console.log(JSON.stringify({ url: server.url, token }));

function fill(): number {
  const fd = openSync(filler, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  let bytes = 0;
  try {
    for (;;) bytes += writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  return bytes;
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'fill') console.log(JSON.stringify({ filled: fill() }));
  if (line === 'free') {
    unlinkSync(filler);
    console.log(JSON.stringify({ freed: true }));
  }
  if (line === 'abort') {
    // This process runs in the test's mount namespace, so it may remount the filesystem it runs on.
    const aborted = spawnSync('mount', ['-o', 'remount,abort', dataDir], { encoding: 'utf8' });
    console.log(JSON.stringify({ aborted: aborted.status === 0, error: aborted.stderr }));
  }
  if (line === 'stop') {
    await server.close();
    process.exit(0);
  }
}
