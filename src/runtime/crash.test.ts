// A saga workload SIGKILLed at seeded random moments, again and again, then run to the end on the
// same files: every order ends completed, compensated or (when it was cancelled) cancelled, with
// its charge refunded and its stock released, no entity update is applied twice (stock
// is conserved and matches the orders), nothing is lost (every order exists, every completion is
// in the ledger once), and the payment gateway applied each idempotency key's effect once even
// though it was called again with the same key after crashes.
//
// MERIDIAN_CRASH_SEED picks the workload and the kill moments (CI runs several);
// MERIDIAN_CRASH_KILLS sets how many kills precede the final run.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../children.fixture.ts';
import { seededRandom } from '../time.ts';
import { decodeJson } from './codec.ts';
import { initialStock, type OrderInput, orders, type Stock, skus } from './crash-child.ts';
import { openEmbedded } from './harness.ts';

const seed = Number(process.env.MERIDIAN_CRASH_SEED ?? 20261123);
const kills = Number(process.env.MERIDIAN_CRASH_KILLS ?? 10);
const orderCount = 150;
const childScript = join(import.meta.dirname, 'crash-child.ts');
const directory = mkdtempSync(join(tmpdir(), 'meridian-runtime-crash-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

interface ChildRun {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly output: () => { stdout: string; stderr: string };
}

function startChild(run: number): ChildRun {
  const child = spawnNode(childScript, [
    directory,
    String(orderCount),
    String(seed),
    String(run),
    String(kills),
  ]);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => {
    stdout += String(chunk);
  });
  child.stderr!.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, output: () => ({ stdout, stderr }) };
}

function readTable<Row>(path: string, sql: string): Row[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare(sql).all() as Row[];
  } finally {
    db.close();
  }
}

describe('runtime crash recovery', () => {
  it(`keeps every guarantee across ${kills} SIGKILLs (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    for (let run = 0; run < kills; run++) {
      const { child, exited, output } = startChild(run);
      // From spawn, so kills land in start-up and recovery as well as in the workload.
      const delayMs = 150 + Math.floor(random.next() * 650);
      const timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
      const { code, signal } = await exited;
      clearTimeout(timer);
      expect(signal, `run ${run} ended by itself (code ${code}): ${output().stderr}`).toBe('SIGKILL');
    }

    const final = startChild(kills);
    const timer = setTimeout(() => final.child.kill('SIGKILL'), 25_000);
    const { code } = await final.exited;
    clearTimeout(timer);
    expect(code, `the final run failed: ${final.output().stderr}`).toBe(0);
    expect(final.output().stdout).toMatch(/DONE \d+ \d+/);

    const workload = new Map<string, OrderInput>(orders(orderCount, seed));
    const completed = new Set<string>();
    const compensated = new Set<string>();
    const cancelled = new Set<string>();
    const fixture = openEmbedded({ directory });
    try {
      // Nothing lost, and every order ended: completed, compensated or cancelled, never stuck or failed.
      const sagas = await fixture.store.transaction((tx) => tx.sagas.list({ limit: 1000 }));
      expect(sagas.map((record) => record.id).sort()).toEqual([...workload.keys()].sort());
      const byStatus = new Map<string, string[]>();
      for (const record of sagas)
        byStatus.set(record.status, [...(byStatus.get(record.status) ?? []), record.id]);
      const unended = sagas.filter(
        (record) => !['completed', 'compensated', 'cancelled'].includes(record.status),
      );
      // Named with their reasons and journals, so that a failure says which saga and why.
      const journals = await Promise.all(
        unended.map(async (record) => {
          const journal = await fixture.store.read((tx) => tx.sagas.journal(record.id));
          return journal
            .map((entry) => `${entry.sequence} ${entry.kind} ${entry.name} ${entry.status}`)
            .join(' | ');
        }),
      );
      expect(
        unended.map(
          (record, index) => `${record.id} ${record.status}: ${record.reason ?? ''} [${journals[index]}]`,
        ),
        `${final.output().stderr.slice(-2000)}`,
      ).toEqual([]);
      for (const id of byStatus.get('completed') ?? []) completed.add(id);
      for (const id of byStatus.get('compensated') ?? []) compensated.add(id);
      for (const id of byStatus.get('cancelled') ?? []) cancelled.add(id);
      expect(completed.size).toBeGreaterThan(0);
      expect(compensated.size).toBeGreaterThan(0);
      expect(cancelled.size).toBeGreaterThan(0);
      // Only orders asked to cancel end cancelled, each with the cancellation journaled once.
      for (const id of cancelled) {
        expect(workload.get(id)!.cancel, `${id} was asked to cancel`).toBe(true);
        const journal = await fixture.store.read((tx) => tx.sagas.journal(id));
        expect(journal.filter((entry) => entry.name.startsWith('$cancelled'))).toHaveLength(1);
      }

      // No entity update applied twice: stock is conserved, nothing stays reserved, and what was
      // sold is exactly what the completed orders bought; the events fold to the same state.
      for (const sku of skus) {
        const stored = await fixture.store.transaction((tx) => tx.entities.get('Inventory', sku));
        const stock = (stored?.state ?? {
          available: initialStock,
          reserved: 0,
          sold: 0,
        }) as unknown as Stock;
        expect(stock.available + stock.reserved + stock.sold).toBe(initialStock);
        expect(stock.reserved).toBe(0);
        const bought = [...completed]
          .filter((id) => workload.get(id)!.sku === sku)
          .reduce((sum, id) => sum + workload.get(id)!.qty, 0);
        expect(stock.sold, `${sku} sold`).toBe(bought);
      }
      const folded = new Map<string, Stock>(
        skus.map((sku) => [sku, { available: initialStock, reserved: 0, sold: 0 }]),
      );
      for (let partition = 0; partition < 8; partition++) {
        for (const event of await fixture.log.read('Inventory.events', partition, 0, {
          maxRecords: 10_000,
        })) {
          const stock = folded.get(new TextDecoder().decode(event.key!))!;
          const { type, qty } = decodeJson(event.value) as { type: string; qty: number };
          if (type === 'reserved')
            Object.assign(stock, { available: stock.available - qty, reserved: stock.reserved + qty });
          if (type === 'released')
            Object.assign(stock, { available: stock.available + qty, reserved: stock.reserved - qty });
          if (type === 'sold')
            Object.assign(stock, { reserved: stock.reserved - qty, sold: stock.sold + qty });
        }
      }
      for (const sku of skus) {
        const stored = await fixture.store.transaction((tx) => tx.entities.get('Inventory', sku));
        expect(folded.get(sku)).toEqual(stored?.state ?? { available: initialStock, reserved: 0, sold: 0 });
      }

      // Every completion published once and recorded in the ledger once (exactly-once subscription).
      const published: string[] = [];
      for (let partition = 0; partition < 4; partition++) {
        for (const record of await fixture.log.read('orders.completed', partition, 0, {
          maxRecords: 10_000,
        })) {
          published.push((decodeJson(record.value) as { order: string }).order);
        }
      }
      expect(published.sort()).toEqual([...completed].sort());
      const ledger = await fixture.store.transaction((tx) => tx.entities.get('Ledger', 'all'));
      const ledgerState = ledger?.state as { count: number; orders: Record<string, number> };
      expect(ledgerState.count).toBe(completed.size);
      expect(Object.keys(ledgerState.orders).sort()).toEqual([...completed].sort());
      expect(Object.values(ledgerState.orders).every((times) => times === 1)).toBe(true);
    } finally {
      await fixture.close();
    }

    // The gateway: each idempotency key applied once; a completed order is charged once and not
    // refunded; a compensated one is either not charged or charged and refunded once.
    const gateway = join(directory, 'gateway.db');
    const charges = readTable<{ key: string; order_id: string }>(
      gateway,
      'SELECT key, order_id FROM charges',
    );
    const refunds = readTable<{ key: string; charge_key: string }>(
      gateway,
      'SELECT key, charge_key FROM refunds',
    );
    const calls = readTable<{ key: string }>(gateway, 'SELECT key FROM calls');
    for (const charge of charges) expect(charge.key).toBe(`${charge.order_id}/charge`);
    const charged = new Set(charges.map((charge) => charge.order_id));
    const refunded = new Set(refunds.map((refund) => refund.charge_key));
    for (const refund of refunds) expect(refund.key).toBe(`${refund.charge_key}/compensate`);
    for (const id of completed) {
      expect(charged.has(id), `${id} charged`).toBe(true);
      expect(refunded.has(`${id}/charge`), `${id} not refunded`).toBe(false);
    }
    for (const id of [...compensated, ...cancelled]) {
      if (charged.has(id)) expect(refunded.has(`${id}/charge`), `${id} refunded`).toBe(true);
    }
    for (const id of workload.keys()) {
      if (workload.get(id)!.decline) expect(charged.has(id), `${id} declined`).toBe(false);
    }
    // Keys are stable: the calls, retries and re-runs after crashes included, never used another key.
    const allowed = new Set(
      [...workload.keys()].flatMap((id) => [`${id}/charge`, `${id}/charge/compensate`]),
    );
    expect(calls.filter((call) => !allowed.has(call.key))).toEqual([]);
    expect(calls.length).toBeGreaterThan(charges.length);
  }, 120_000);
});
