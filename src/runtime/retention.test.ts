// Retention deletes finished work past its period and nothing that a running saga, a retried
// start or a pending Idempotency-Key still needs. On both shapes: embedded (SQLite) and a
// one-node cluster (PostgreSQL + Kafka), where it runs as the leader's singleton.
import { afterEach, describe, expect, it } from 'vitest';
import { createGateway } from '../http/gateway.ts';
import { ManualClock, seededRandom, systemTimers } from '../time.ts';
import { entity, saga } from './definitions.ts';
import { advance as advanceEmbedded, openEmbedded } from './harness.ts';
import type { RetentionOptions } from './retention.ts';
import type { Runtime } from './runtime.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const minuteMs = 60_000;

/**
 * Waits in real time (bounded) until `predicate` holds, calling `tick` (a clock's step) between
 * looks: for what a worker thread does (storage samples), which turns of the event loop alone
 * do not finish.
 */
async function inRealTime(predicate: () => boolean, tick: () => void = () => {}): Promise<void> {
  for (let waited = 0; waited < 15_000; waited += 10) {
    if (predicate()) return;
    tick();
    await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 10));
  }
  throw new Error('The condition did not hold within 15 s');
}

describeShapes('retention', (shape) => {
  let fixture: ShapeFixture;
  let clock: ManualClock;
  afterEach(async () => {
    await fixture.destroy();
  });

  let runs: Record<string, number>;
  const counted = (name: string) =>
    saga(name, async (ctx, input: { n: number }) =>
      ctx.step('work', () => {
        runs[name] = (runs[name] ?? 0) + 1;
        return input.n * 2;
      }),
    );
  const Order = counted('Order');
  const Quick = counted('Quick');
  const Kept = counted('Kept');
  const Waiting = saga('Waiting', async (ctx, input: { n: number }) => {
    await ctx.step('before', () => input.n);
    await ctx.sleep('long', 60 * minuteMs);
    return input.n;
  });

  async function started(
    retention: RetentionOptions,
    extra: (fixture: ShapeFixture) => Parameters<Runtime['register']> = () => [],
  ) {
    runs = {};
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(3) });
    // Storage samples run on a worker thread, in real time: only the test about them takes them.
    runtime = fixture.runtime({ retention: { intervalMs: 1000, storageSampleIntervalMs: 0, ...retention } });
    return fixture.start(runtime.register(Order, Quick, Kept, Waiting, ...extra(fixture)));
  }

  /**
   * Moves the clock by `deltaMs` in steps of `stepMs`, then on until two more retention passes
   * have ended: the last of them started after the move, so it saw the clock's new time.
   */
  async function advance(deltaMs: number, stepMs = 500): Promise<void> {
    await fixture.advance(clock, deltaMs, stepMs);
    const target = runtime.stats.retention.passes + 2;
    await fixture.eventually(async () => {
      if (runtime.stats.retention.passes >= target) return true;
      await fixture.advance(clock, 500, 500);
      return false;
    }, 'two retention passes');
  }
  let runtime: Runtime;

  it('deletes journals and records past their period per saga type, keeps outcomes for retried starts, and never touches a running saga', async () => {
    await started({
      sagaMs: 2 * minuteMs,
      sagaMsByType: { Quick: 0, Kept: 'forever' },
      outcomeMs: 5 * minuteMs,
    });
    for (const [definition, id] of [
      [Order, 'order-1'],
      [Quick, 'quick-1'],
      [Kept, 'kept-1'],
    ] as const) {
      await expect((await runtime.startSaga(definition, id, { n: 1 })).result()).resolves.toBe(2);
    }
    // Read before any pass: 'forever' keeps it, folded into one value by the passes.
    const keptJournal = await runtime.journal('kept-1');
    await runtime.startSaga(Waiting, 'waiting-1', { n: 7 });
    await fixture.eventually(
      async () => (await runtime.journal('waiting-1')).length >= 3,
      'waiting-1 sleeps',
    );

    // Period 0: the journal goes on the next pass; the outcome stays.
    await advance(1500);
    expect(await runtime.journal('quick-1')).toEqual([]);
    expect(await runtime.saga('quick-1')).toMatchObject({ status: 'completed', output: 2 });
    expect((await runtime.journal('order-1')).length).toBeGreaterThan(0);

    // A retried start within the outcome period is answered with the outcome: nothing runs again.
    await expect((await runtime.startSaga(Quick, 'quick-1', { n: 1 })).result()).resolves.toBe(2);
    expect(runs).toEqual({ Order: 1, Quick: 1, Kept: 1 });

    // Past Order's period (2 min) but within the outcome period (5 min): its journal goes.
    await advance(2 * minuteMs + 1000, 10_000);
    expect(await runtime.journal('order-1')).toEqual([]);
    expect(await runtime.saga('order-1')).toMatchObject({ status: 'completed' });

    // Past the outcome period: the records go too; 'forever' and the running saga stay whole.
    await advance(3 * minuteMs, 10_000);
    expect(await runtime.saga('order-1')).toBeNull();
    expect(await runtime.saga('quick-1')).toBeNull();
    expect(await runtime.saga('kept-1')).toMatchObject({ status: 'completed' });
    expect(keptJournal.length).toBeGreaterThan(0);
    expect(await runtime.journal('kept-1')).toEqual(keptJournal);
    expect(runtime.stats.retention.foldedJournals).toBeGreaterThanOrEqual(2);
    expect(await runtime.saga('waiting-1')).toMatchObject({ status: 'running' });
    expect((await runtime.journal('waiting-1')).length).toBeGreaterThanOrEqual(3);
    expect(runtime.stats.retention).toMatchObject({ sagas: 2, journals: 2 });

    // The running saga still finishes from its journal after all those passes.
    await advance(55 * minuteMs, 5 * minuteMs);
    await expect(runtime.handle('waiting-1').result()).resolves.toBe(7);
  });

  it('answers a retried start of a saga that finishes while the retry is in flight, with period 0', async () => {
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let gatedRuns = 0;
    const Gated = saga('Gated', async (ctx, input: { n: number }) => {
      const value = await ctx.step('wait', async () => {
        gatedRuns++;
        await gate;
        return input.n + 1;
      });
      return value;
    });
    await started({ sagaMs: 0, outcomeMs: 2 * minuteMs }, () => [Gated]);
    const first = await runtime.startSaga(Gated, 'gated-1', { n: 41 });
    // The retry arrives while the saga runs, and waits for its result.
    const retried = runtime.startSaga(Gated, 'gated-1', { n: 41 }).then((handle) => handle.result());
    open();
    await expect(first.result()).resolves.toBe(42);
    await advance(1500);
    expect(await runtime.journal('gated-1')).toEqual([]);
    await expect(retried).resolves.toBe(42);
    // And a retry after the journal is gone is answered from the outcome, without running it again.
    await expect((await runtime.startSaga(Gated, 'gated-1', { n: 41 })).result()).resolves.toBe(42);
    expect(gatedRuns).toBe(1);
  });

  it('deletes expired Idempotency-Key records and keeps pending and unexpired ones', async () => {
    await started({});
    const nowMs = clock.now();
    const reserve = (key: string, leaseMs: number, expiresAt: number) =>
      runtime.transaction((tx) =>
        tx.idempotency.reserve({ scope: 'orders', key, fingerprint: 'fp', nowMs, leaseMs, expiresAt }),
      );
    for (let index = 0; index < 5; index++) await reserve(`done-${index}`, 1000, nowMs + 10_000);
    await reserve('pending', 60_000, nowMs + minuteMs);
    await advance(11_000);
    expect(runtime.stats.retention.idempotencyKeys).toBe(5);
    const again = await runtime.transaction((tx) =>
      tx.idempotency.reserve({
        scope: 'orders',
        key: 'pending',
        fingerprint: 'fp',
        nowMs: clock.now(),
        leaseMs: 1000,
        expiresAt: clock.now() + 1000,
      }),
    );
    expect(again.outcome).toBe('in_flight');
  });

  it('deletes entities of the types it names once idle for their period, and keeps the rest', async () => {
    const Cart = (topic: string) =>
      entity('Cart', {
        eventsTopic: topic,
        initial: { items: 0 },
        commands: {
          add: (state: { items: number }) => ({ state: { items: state.items + 1 }, reply: state.items + 1 }),
        },
      });
    const Stock = (topic: string) =>
      entity('Stock', {
        eventsTopic: topic,
        initial: { units: 0 },
        commands: { add: (state: { units: number }) => ({ state: { units: state.units + 1 } }) },
      });
    const definitions = { cart: Cart('Cart.events'), stock: Stock('Stock.events') };
    await started({ entityMsByType: { Cart: 10 * minuteMs } }, (opened) => {
      definitions.cart = Cart(opened.topic('Cart.events'));
      definitions.stock = Stock(opened.topic('Stock.events'));
      return [definitions.cart, definitions.stock];
    });
    const { cart: CartEntity, stock: StockEntity } = definitions;
    for (let index = 0; index < 30; index++)
      await runtime.send(CartEntity, `cart-${index}`, 'add', undefined);
    await runtime.send(StockEntity, 'apple', 'add', undefined);
    await advance(5 * minuteMs, 30_000);
    await runtime.send(CartEntity, 'cart-7', 'add', undefined);
    await advance(6 * minuteMs, 30_000);
    expect(runtime.stats.retention.entities).toBe(29);
    expect(await runtime.state(CartEntity, 'cart-3')).toBeNull();
    expect(await runtime.state(CartEntity, 'cart-7')).toMatchObject({ state: { items: 2 }, version: 2 });
    expect(await runtime.state(StockEntity, 'apple')).toMatchObject({ version: 1 });
  });

  it('creates the dead-letter topic with its own retention, and samples storage per table', async () => {
    await started({ deadLetterMs: 3 * 86_400_000, storageSampleIntervalMs: 1000 });
    await expect((await runtime.startSaga(Order, 'order-1', { n: 1 })).result()).resolves.toBe(2);
    const topic = fixture.shape === 'embedded' ? 'meridian.dead-letters' : undefined;
    if (topic !== undefined) {
      expect((await fixture.log.describeTopic(topic)).retentionMs).toBe(3 * 86_400_000);
    }
    await fixture.advance(clock, 1500, 500);
    await inRealTime(() => runtime.stats.retention.storage !== undefined);
    const storage = runtime.stats.retention.storage!;
    expect(storage.tables.some((table) => table.table.endsWith('store_sagas') && table.bytes > 0)).toBe(true);
    expect(storage.totalBytes).toBeGreaterThan(0);
  });
});

describe('retention (SQLite space)', () => {
  it('gives pages back: the file stops growing when work is deleted as fast as it is done', async () => {
    const clock = new ManualClock(1_000_000);
    const fixture = openEmbedded({ clock, timers: clock, random: seededRandom(9) });
    try {
      const Big = saga('Big', async (ctx, input: { blob: string }) =>
        ctx.step('echo', () => input.blob.length),
      );
      const runtime = fixture.runtime({
        retention: {
          sagaMs: 0,
          outcomeMs: minuteMs,
          intervalMs: 1000,
          storageSampleIntervalMs: 10 * minuteMs,
        },
      });
      runtime.register(Big);
      await runtime.start();
      const sizes: number[] = [];
      for (let round = 0; round < 4; round++) {
        const handles = [];
        for (let index = 0; index < 100; index++) {
          const blob = `${round}-${index}-`.padEnd(4000, String.fromCharCode(97 + ((round + index) % 26)));
          handles.push(await runtime.startSaga(Big, `big-${round}-${index}`, { blob }));
        }
        for (const handle of handles) await handle.result();
        // Past the outcome period: the records go, and the pages they held are given back.
        await advanceEmbedded(clock, 2 * minuteMs, 1000);
        await inRealTime(
          () => runtime.stats.retention.sagas === 100 * (round + 1),
          () => clock.advance(500),
        );
        await advanceEmbedded(clock, 2000, 1000);
        sizes.push((await fixture.store.storage()).totalBytes);
      }
      expect(runtime.stats.retention.sagas).toBe(400);
      // Each round writes ~400 KB; the file ends no larger than after the first round.
      expect(sizes[3]!).toBeLessThanOrEqual(sizes[0]! + 64 * 1024);
      expect(runtime.stats.retention.reclaimedBytes).toBeGreaterThan(0);
      // What /metrics shows of it (the first pass took a storage sample).
      await inRealTime(() => runtime.stats.retention.storage !== undefined);
      const gateway = await createGateway({ auth: false, defaultMetrics: false });
      try {
        gateway.exposeRuntime(runtime);
        const metrics = (await gateway.server.inject({ method: 'GET', url: '/metrics' })).body;
        expect(metrics).toContain('meridian_retention_removed_total{kind="sagas"} 400');
        expect(metrics).toMatch(/^meridian_storage_kind_bytes\{kind="journals"\} \d+$/m);
        expect(metrics).toMatch(/^meridian_storage_table_bytes\{table="store_sagas"\} [1-9]\d*$/m);
        expect(metrics).toMatch(/^meridian_storage_growth_bytes_per_second -?[\d.e+-]+$/m);
        expect(metrics).toMatch(/^meridian_retention_reclaimed_bytes_total [1-9]\d*$/m);
        expect(metrics).toMatch(/^meridian_retention_folded_journals_total \d+$/m);
      } finally {
        await gateway.close();
      }
      await runtime.stop();
    } finally {
      await fixture.destroy();
    }
  });
});
