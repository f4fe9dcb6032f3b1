/**
 * The workload of the runtime's crash test (crash.test.ts), run in a child process that the test
 * kills with SIGKILL at random moments and starts again on the same files.
 *
 * Usage: node crash-child.ts <directory> <orders> <seed> <run> <runs>
 *
 * Run `run` of `runs` resumes what earlier runs left, and starts its own share of the orders, one
 * every few milliseconds, so that a kill finds work in every stage. The last run (run == runs)
 * starts every order (startSaga is idempotent on the order id), so an order that an earlier run
 * never got to start is started now: nothing can be lost by a kill. An order is a
 * saga: reserve stock (Inventory entity, compensated by a release) → charge through a fake
 * payment gateway (its own SQLite file, idempotent on the step's key, failing transiently, and
 * sometimes losing its answer after applying the charge) → a durable sleep → commit the stock →
 * emit `orders.completed`. A subscription records each completed order in a Ledger entity. Some
 * orders are cancelled as soon as they start, so kills also land in cancellations.
 *
 * Prints `READY` once started and `DONE` when every order has ended and the ledger has caught up.
 */

import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { RetryableError, TerminalError } from '../errors.ts';
import { type Random, seededRandom, systemTimers } from '../time.ts';
import { entity, saga, subscription } from './definitions.ts';
import { SagaEndedError } from './errors.ts';
import { openEmbedded } from './harness.ts';

export interface Stock {
  available: number;
  reserved: number;
  sold: number;
}

export const initialStock = 40;
export const skus = ['sku-a', 'sku-b', 'sku-c', 'sku-d'];

export interface OrderInput {
  sku: string;
  qty: number;
  amount: number;
  /** The gateway declines the card: the order compensates. */
  decline: boolean;
  /** Cancelled right after it starts (runtime.cancelSaga): it ends cancelled, or as it ran if it ended first. */
  cancel: boolean;
}

/** The orders of a workload: the same for every run with the same seed. */
export function orders(count: number, seed: number): Array<[string, OrderInput]> {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, index) => [
    `order-${String(index).padStart(4, '0')}`,
    {
      sku: skus[Math.floor(random.next() * skus.length)]!,
      qty: 1 + Math.floor(random.next() * 3),
      amount: 100 + Math.floor(random.next() * 900),
      decline: random.next() < 0.15,
      cancel: random.next() < 0.15,
    },
  ]);
}

/** Stock commands: reserve (refused when short), release a reservation, commit it as sold. */
export const stockCommands = {
  reserve(state: Stock, input: { qty: number }) {
    if (state.available < input.qty)
      throw new TerminalError(`out of stock: ${state.available} < ${input.qty}`);
    return {
      state: { ...state, available: state.available - input.qty, reserved: state.reserved + input.qty },
      events: [{ type: 'reserved', qty: input.qty }],
    };
  },
  release(state: Stock, input: { qty: number }) {
    return {
      state: { ...state, available: state.available + input.qty, reserved: state.reserved - input.qty },
      events: [{ type: 'released', qty: input.qty }],
    };
  },
  commit(state: Stock, input: { qty: number }) {
    return {
      state: { ...state, reserved: state.reserved - input.qty, sold: state.sold + input.qty },
      events: [{ type: 'sold', qty: input.qty }],
    };
  },
};

export const Inventory = entity('Inventory', {
  initial: (): Stock => ({ available: initialStock, reserved: 0, sold: 0 }),
  commands: stockCommands,
});

/** What the ledger keeps: completed orders counted, each order's count (one means once). */
export interface LedgerState {
  count: number;
  amount: number;
  orders: Record<string, number>;
}

export const initialLedger: LedgerState = { count: 0, amount: 0, orders: {} };

/** The ledger's one command: record a completed order. */
export const ledgerCommands = {
  record(state: LedgerState, input: { order: string; amount: number }) {
    return {
      state: {
        count: state.count + 1,
        amount: state.amount + input.amount,
        orders: { ...state.orders, [input.order]: (state.orders[input.order] ?? 0) + 1 },
      },
    };
  },
};

export const Ledger = entity('Ledger', { initial: initialLedger, commands: ledgerCommands });

/**
 * The payment gateway, as the outside world: its own database, so its effects survive the kill
 * independently of the runtime's. Idempotent on the key, like a real payment API.
 */
export class Gateway {
  readonly #db: DatabaseSync;
  readonly #random: Random;

  constructor(path: string, random: Random) {
    this.#db = new DatabaseSync(path);
    this.#db.exec('PRAGMA journal_mode = WAL');
    this.#db.exec(
      'CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount INTEGER NOT NULL)',
    );
    this.#db.exec('CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, charge_key TEXT NOT NULL)');
    this.#db.exec('CREATE TABLE IF NOT EXISTS calls (key TEXT NOT NULL)');
    this.#random = random;
  }

  charge(key: string, orderId: string, amount: number, decline: boolean): { chargeKey: string } {
    this.#db.prepare('INSERT INTO calls (key) VALUES (?)').run(key);
    if (this.#random.next() < 0.2) throw new RetryableError('gateway timeout before charging');
    if (decline) throw new TerminalError('card declined');
    this.#db
      .prepare('INSERT OR IGNORE INTO charges (key, order_id, amount) VALUES (?, ?, ?)')
      .run(key, orderId, amount);
    // The charge is applied, but the answer is lost: the caller must retry with the same key.
    if (this.#random.next() < 0.1) throw new RetryableError('gateway timeout after charging');
    return { chargeKey: key };
  }

  refund(key: string, chargeKey: string): void {
    this.#db.prepare('INSERT INTO calls (key) VALUES (?)').run(key);
    if (this.#random.next() < 0.2) throw new RetryableError('gateway timeout while refunding');
    this.#db.prepare('INSERT OR IGNORE INTO refunds (key, charge_key) VALUES (?, ?)').run(key, chargeKey);
  }

  close(): void {
    this.#db.close();
  }
}

function refusedWhenEnded(error: unknown): void {
  if (!(error instanceof SagaEndedError)) throw error;
}

async function main(): Promise<void> {
  const [directory, countText, seedText, runText, runsText] = process.argv.slice(2);
  if (
    directory === undefined ||
    countText === undefined ||
    seedText === undefined ||
    runText === undefined ||
    runsText === undefined
  ) {
    throw new Error('usage: crash-child.ts <directory> <orders> <seed> <run> <runs>');
  }
  const runs = Number(runsText);
  const seed = Number(seedText);
  const run = Number(runText);
  const random = seededRandom(seed * 1000 + run);
  const gateway = new Gateway(join(directory, 'gateway.db'), random);
  const fixture = openEmbedded({ directory, random });

  const OrderSaga = saga('Order', async (ctx, input: OrderInput) => {
    await ctx.send(
      Inventory,
      input.sku,
      'reserve',
      { qty: input.qty },
      {
        compensate: { command: 'release', input: { qty: input.qty } },
      },
    );
    // The charge and the settling time run concurrently, so kills also land between the two
    // calls' entries and replay has to hand them back in their journaled order.
    const [payment] = await Promise.all([
      ctx.step(
        'charge',
        (step) => gateway.charge(step.idempotencyKey, ctx.sagaId, input.amount, input.decline),
        {
          retry: { initialDelayMs: 2, maxDelayMs: 20, maxAttempts: 50 },
          compensate: (step, result) => gateway.refund(step.idempotencyKey, result.chargeKey),
        },
      ),
      ctx.sleep('settle', 5),
    ]);
    await ctx.send(Inventory, input.sku, 'commit', { qty: input.qty });
    await ctx.emit('orders.completed', {
      key: ctx.sagaId,
      value: { order: ctx.sagaId, amount: input.amount },
    });
    return payment.chargeKey;
  });

  const ledger = subscription('ledger', {
    topic: 'orders.completed',
    partitions: 4,
    handler: async (record, ctx) => {
      const completed = record.json<{ order: string; amount: number }>();
      await ctx.send(Ledger, 'all', 'record', completed);
    },
  });

  const runtime = fixture
    .runtime({
      compensationRetry: { initialDelayMs: 2, maxDelayMs: 20 },
      onProblem: (problem) => process.stderr.write(`problem: ${JSON.stringify(problem)}\n`),
    })
    .register(Inventory, Ledger, OrderSaga, ledger);
  await runtime.start();
  process.stdout.write('READY\n');

  const workload = orders(Number(countText), seed);
  const share = Math.ceil(workload.length / runs);
  const mine = run < runs ? workload.slice(run * share, (run + 1) * share) : workload;
  const handles = [];
  for (const [id, input] of mine) {
    handles.push(await runtime.startSaga(OrderSaga, id, input));
    // Asked again by later runs (idempotent); refused once the order ended some other way.
    if (input.cancel) await runtime.cancelSaga(id, { reason: 'crash test' }).catch(refusedWhenEnded);
    if (run < runs) await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 15));
  }
  const outcomes = await Promise.allSettled(handles.map((handle) => handle.result()));
  if (run < runs) {
    // An earlier run waits for its kill, which may come now, while idle, or while it still works.
    await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 60_000));
    throw new Error('run was not killed within 60 s');
  }
  const completed = outcomes.filter((outcome) => outcome.status === 'fulfilled').length;

  // The ledger subscription catches up asynchronously: wait for it (bounded).
  for (let waited = 0; ; waited += 10) {
    const state = await runtime.state(Ledger, 'all');
    if ((state?.state.count ?? 0) >= completed) break;
    if (waited > 10_000)
      throw new Error(`the ledger did not catch up: ${state?.state.count} of ${completed}`);
    await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 10));
  }
  await runtime.stop();
  await fixture.close();
  gateway.close();
  process.stdout.write(`DONE ${completed} ${outcomes.length - completed}\n`);
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  main().catch((error: unknown) => {
    process.stderr.write(`crash-child failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
