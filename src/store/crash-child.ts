/**
 * The child process of crash.test.ts: runs store transactions that each write several rows
 * (two balances, a ledger entity, a journal entry, an outbox message, an inbox entry) and prints
 * `ack <n>` after transaction n committed, until the parent kills it with SIGKILL.
 *
 * Usage: node crash-child.ts '{"dialect":"sqlite","path":"..."}'
 *        node crash-child.ts '{"dialect":"postgres","url":"...","schema":"..."}'
 */
import type { Store, StoreTransaction } from './types.ts';

export interface CrashChildOptions {
  dialect: 'sqlite' | 'postgres';
  path?: string;
  url?: string;
  schema?: string;
}

/** How much transaction n moves from account a to b (negative: from b to a). */
export function crashAmount(n: number): number {
  return n % 3 === 0 ? -(n % 11) : (n % 7) + 1;
}

/** One transaction of the crash workload; returns its number. */
export async function crashTransaction(tx: StoreTransaction): Promise<number> {
  const [a, b, ledger] = await Promise.all([
    tx.entities.get('account', 'a'),
    tx.entities.get('account', 'b'),
    tx.entities.get('crash', 'ledger'),
  ]);
  if (a === null || b === null || ledger === null) throw new Error('crash workload not set up');
  const n = (ledger.state as { transactions: number }).transactions + 1;
  const amount = crashAmount(n);
  await tx.entities.put('account', 'a', (a.state as number) - amount, a.version);
  await tx.entities.put('account', 'b', (b.state as number) + amount, b.version);
  await tx.entities.put('crash', 'ledger', { transactions: n }, ledger.version);
  await tx.sagas.appendJournal({
    sagaId: 'crash',
    sequence: n - 1,
    kind: 'step',
    name: `move-${n}`,
    status: 'completed',
    result: { amount },
    error: null,
    attempts: 1,
    at: n,
  });
  await tx.outbox.add([
    {
      topic: 'moves',
      key: new TextEncoder().encode(`tx-${n}`),
      value: new TextEncoder().encode(JSON.stringify({ n, amount })),
      headers: { n: String(n) },
      timestamp: n,
    },
  ]);
  if (!(await tx.inbox.markApplied('crash', `tx-${n}`, n))) throw new Error(`tx-${n} applied twice`);
  return n;
}

export async function openCrashStore(options: CrashChildOptions): Promise<Store> {
  if (options.dialect === 'sqlite') {
    const { SqliteStore } = await import('./sqlite/store.ts');
    return new SqliteStore({ path: options.path ?? '' });
  }
  const { openPostgresStore } = await import('./postgres/store.ts');
  return openPostgresStore({
    connectionString: options.url ?? '',
    schema: options.schema ?? '',
    maxConnections: 1,
  });
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as CrashChildOptions;
  const store = await openCrashStore(options);
  process.stdout.write('ready\n');
  for (;;) {
    const n = await store.transaction(crashTransaction);
    // On Linux, writes to a pipe are synchronous: once this returns, the parent can read the ack.
    process.stdout.write(`ack ${n}\n`);
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
