import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../children.fixture.ts';
import { seededRandom } from '../time.ts';
import { type CrashChildOptions, crashAmount, openCrashStore } from './crash-child.ts';
import { testSchemas } from './postgres/test-schema.ts';

/**
 * Kills a real child process with SIGKILL while it runs store transactions, then checks what
 * survived: every transaction is there completely or not at all, and every transaction the
 * child acknowledged (printed after commit) is there.
 */

const childScript = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
// MERIDIAN_CRASH_SEED picks the kill moments (CI runs several seeds).
const seed = Number(process.env.MERIDIAN_CRASH_SEED ?? 0x5eed);
const rounds = 4;
const startBalance = 1000;

interface RoundResult {
  acked: number[];
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs the child until it has acknowledged `acksBeforeKill` transactions, then SIGKILLs it after `delayMs`. */
function runChild(options: CrashChildOptions, acksBeforeKill: number, delayMs: number): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawnNode(childScript, [JSON.stringify(options)]);
    const acked: number[] = [];
    let stderr = '';
    let killScheduled = false;
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = /^ack (\d+)$/.exec(line);
      if (match === null) return;
      acked.push(Number(match[1]));
      if (acked.length >= acksBeforeKill && !killScheduled) {
        killScheduled = true;
        if (delayMs === 0) child.kill('SIGKILL');
        else setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.on('error', reject);
    child.on('close', (_code, signal) => resolve({ acked, signal, stderr }));
  });
}

/** Checks the invariants on what the killed child left; returns how many transactions committed. */
async function verify(
  options: CrashChildOptions,
  acked: readonly number[],
  committedBefore: number,
): Promise<number> {
  const store = await openCrashStore(options);
  try {
    return await store.transaction(async (tx) => {
      const ledger = await tx.entities.get('crash', 'ledger');
      if (ledger === null) throw new Error('the crash ledger is missing');
      const committed = (ledger.state as { transactions: number }).transactions;
      // Nothing acknowledged was lost; at most the one transaction in flight at the kill
      // committed without its ack reaching us.
      expect(committed).toBeGreaterThanOrEqual(Math.max(committedBefore, ...acked));
      expect(committed).toBeLessThanOrEqual(Math.max(committedBefore, ...acked) + 1);
      // Every committed transaction is complete: balances, journal, outbox and inbox agree.
      let moved = 0;
      for (let n = 1; n <= committed; n++) moved += crashAmount(n);
      const a = await tx.entities.get('account', 'a');
      const b = await tx.entities.get('account', 'b');
      expect(a?.state).toBe(startBalance - moved);
      expect(b?.state).toBe(startBalance + moved);
      expect(a?.version).toBe(committed + 1);
      expect(ledger.version).toBe(committed + 1);
      const journal = await tx.sagas.journal('crash');
      expect(journal.map((entry) => entry.name)).toEqual(
        Array.from({ length: committed }, (_, index) => `move-${index + 1}`),
      );
      const outbox = await tx.outbox.pending(1000);
      expect(outbox.map((message) => message.headers.n)).toEqual(
        Array.from({ length: committed }, (_, index) => String(index + 1)),
      );
      for (let n = 1; n <= committed; n++) expect(await tx.inbox.has('crash', `tx-${n}`)).toBe(true);
      expect(await tx.inbox.has('crash', `tx-${committed + 1}`)).toBe(false);
      return committed;
    });
  } finally {
    await store.close();
  }
}

async function crashRounds(options: CrashChildOptions): Promise<void> {
  const setup = await openCrashStore(options);
  await setup.transaction(async (tx) => {
    await tx.entities.put('account', 'a', startBalance, 0);
    await tx.entities.put('account', 'b', startBalance, 0);
    await tx.entities.put('crash', 'ledger', { transactions: 0 }, 0);
  });
  await setup.close();
  const random = seededRandom(seed);
  let committed = 0;
  for (let round = 0; round < rounds; round++) {
    const acksBeforeKill = 1 + Math.floor(random.next() * 40);
    // Half the kills land right on an ack (the next transaction is just starting), half a
    // little later (somewhere inside a transaction or its commit).
    const delayMs = random.next() < 0.5 ? 0 : Math.floor(random.next() * 3);
    const result = await runChild(options, acksBeforeKill, delayMs);
    expect(result.stderr).toBe('');
    expect(result.signal).toBe('SIGKILL');
    expect(result.acked.length).toBeGreaterThanOrEqual(acksBeforeKill);
    committed = await verify(options, result.acked, committed);
  }
  expect(committed).toBeGreaterThan(rounds);
}

describe('store crash safety on SQLite', () => {
  const directories: string[] = [];
  afterAll(() => {
    for (const directory of directories) rmSync(directory, { recursive: true, force: true });
  });

  it(`a SIGKILLed writer leaves no half transaction and loses no acknowledged one (seed ${seed})`, async () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-crash-'));
    directories.push(directory);
    await crashRounds({ dialect: 'sqlite', path: join(directory, 'crash.db') });
  }, 30_000);
});

// Needs a PostgreSQL server: set MERIDIAN_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test).
// Without it this part is skipped, so `npm test` passes on a machine without PostgreSQL.
const url = process.env.MERIDIAN_TEST_PG_URL;

describe.skipIf(!url)('store crash safety on PostgreSQL', () => {
  const schemas = testSchemas(url ?? '', 'crash');
  const schema = schemas.next();
  afterAll(async () => {
    await schemas.drop(schema);
    await schemas.end();
  });

  it(`a SIGKILLed client leaves no half transaction and loses no acknowledged one (seed ${seed})`, async () => {
    await crashRounds({ dialect: 'postgres', url: url ?? '', schema });
  }, 30_000);
});
