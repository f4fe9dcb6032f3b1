// Subscriptions give each record exactly-once effects: these tests prove that a record's effects
// and its offset commit together, that one failing record neither undoes nor blocks the others
// (except those behind it in its partition), that exhausted records go to the dead-letter topic
// with their error, and that the record's trace follows its effects. They run on both shapes:
// embedded (SQLite) and a one-node cluster (PostgreSQL + Kafka).
import { afterEach, beforeEach, expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { decodeJson, encodeJson } from './codec.ts';
import { entity, saga, subscription } from './definitions.ts';
import type { Runtime } from './runtime.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';
import { parseTraceparent } from './trace.ts';

const Account = entity('Account', {
  initial: { balance: 0, payments: [] as string[] },
  commands: {
    deposit(state, input: { amount: number; payment: string }) {
      return {
        state: { balance: state.balance + input.amount, payments: [...state.payments, input.payment] },
        reply: state.balance + input.amount,
      };
    },
  },
});

interface Payment {
  id: string;
  account: string;
  amount: number;
}

describeShapes('subscriptions', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;
  /** The topics and group, unique per test on the cluster shape (the broker is shared). */
  let payments: string;
  let ledger: string;
  let group: string;

  beforeEach(async () => {
    clock = new ManualClock(5_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(7) });
    payments = fixture.topic('payments');
    ledger = fixture.topic('ledger');
    group = fixture.topic('meridian.payments');
    await fixture.log.createTopic(payments, { partitions: 2 });
    await fixture.log.createTopic(ledger, { partitions: 1 });
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  async function pay(payment: Payment, partition: number, headers: Record<string, string> = {}) {
    await fixture.log.append(payments, [
      { key: payment.account, value: encodeJson({ ...payment }), partition, headers },
    ]);
  }

  /** The records on `topic`, once every record committed so far has been published. */
  async function readAll(topic: string) {
    await fixture.published();
    const { partitions } = await fixture.log.describeTopic(topic);
    const out = [];
    for (let partition = 0; partition < partitions; partition++)
      out.push(...(await fixture.log.read(topic, partition, 0)));
    return out;
  }

  function handled(runtime: Runtime, name = 'payments'): number {
    return runtime.stats.subscriptions[name]?.handled ?? 0;
  }

  async function start(
    handler: Parameters<typeof subscription>[1]['handler'],
    retry = { initialDelayMs: 100, jitter: 'none' as const, maxAttempts: 3 },
  ) {
    const definition = subscription('payments', { topic: payments, group, partitions: 2, handler, retry });
    return fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Account, definition));
  }

  const deposit: Parameters<typeof subscription>[1]['handler'] = async (record, ctx) => {
    const payment = record.json<Payment>();
    const balance = await ctx.send(Account, payment.account, 'deposit', {
      amount: payment.amount,
      payment: payment.id,
    });
    await ctx.emit(ledger, { key: payment.account, value: { payment: payment.id, balance } });
  };

  it("commits each record's effects with its offset: after a restart nothing is applied twice", async () => {
    const runtime = await start(deposit);
    for (let i = 0; i < 10; i++)
      await pay({ id: `p${i}`, account: i % 2 === 0 ? 'alice' : 'bob', amount: 10 }, i % 2);
    await fixture.eventually(() => handled(runtime) === 10);
    await runtime.stop();
    expect(await fixture.log.committedOffsets(group, payments)).toEqual(
      new Map([
        [0, 5],
        [1, 5],
      ]),
    );

    const again = await start(deposit);
    await pay({ id: 'p10', account: 'alice', amount: 1 }, 0);
    await fixture.eventually(async () => handled(again) === 1 && (await readAll(ledger)).length === 11);
    expect((await again.state(Account, 'alice'))?.state).toMatchObject({ balance: 51 });
    expect((await again.state(Account, 'bob'))?.state).toMatchObject({ balance: 50 });
    expect(await readAll(ledger)).toHaveLength(11);
  });

  it('isolates a failing record inside its batch: its effects roll back, the other records commit', async () => {
    const runtime = await start(async (record, ctx) => {
      await deposit(record, ctx);
      if (record.json<Payment>().id === 'bad') throw new TerminalError('rejected after depositing');
    });
    await fixture.log.append(payments, [
      { key: 'a', value: encodeJson({ id: 'ok1', account: 'alice', amount: 1 }), partition: 0 },
      { key: 'a', value: encodeJson({ id: 'bad', account: 'alice', amount: 100 }), partition: 0 },
      { key: 'a', value: encodeJson({ id: 'ok2', account: 'alice', amount: 2 }), partition: 0 },
    ]);
    await fixture.eventually(async () => handled(runtime) === 2 && (await readAll(ledger)).length === 2);
    expect((await runtime.state(Account, 'alice'))?.state).toEqual({ balance: 3, payments: ['ok1', 'ok2'] });
    expect(
      (await readAll(ledger)).map((record) => (decodeJson(record.value) as { payment: string }).payment),
    ).toEqual(['ok1', 'ok2']);
    expect(runtime.stats.commits.transactions).toBeLessThan(5);
  });

  it('retries a failing record while the records behind it in its partition wait; other partitions go on', async () => {
    const order: string[] = [];
    let failuresLeft = 2;
    const runtime = await start(async (record, ctx) => {
      const payment = record.json<Payment>();
      if (payment.id === 'flaky' && failuresLeft-- > 0) throw new Error('ledger busy');
      order.push(payment.id);
      await deposit(record, ctx);
    });
    await pay({ id: 'flaky', account: 'alice', amount: 1 }, 0);
    await pay({ id: 'behind', account: 'alice', amount: 1 }, 0);
    await pay({ id: 'other', account: 'bob', amount: 1 }, 1);
    // The first attempt at 'flaky' too: on the cluster shape its partition may be fetched later
    // than the other, and its retries wait on the clock, which must not move before it.
    await fixture.eventually(() => order.includes('other') && failuresLeft < 2);
    expect(order).toEqual(['other']);
    await fixture.advance(clock, 100);
    // The second attempt, before the clock moves on: on the cluster shape a retry waits for the
    // runner's next poll of the real broker, which the clock does not drive.
    await fixture.eventually(() => failuresLeft === 0);
    expect(order).toEqual(['other']);
    await fixture.advance(clock, 200);
    await fixture.eventually(() => handled(runtime) === 3);
    expect(order).toEqual(['other', 'flaky', 'behind']);
  });

  it('sends a record whose retries run out to the dead-letter topic with its error, and moves past it', async () => {
    let attempts = 0;
    const runtime = await start(async (record, ctx) => {
      if (record.json<Payment>().id === 'poison') {
        attempts++;
        throw new Error('cannot parse the memo');
      }
      await deposit(record, ctx);
    });
    await pay({ id: 'poison', account: 'carol', amount: 5 }, 1, {
      traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01',
    });
    await pay({ id: 'fine', account: 'carol', amount: 5 }, 1);
    // Each attempt before the clock moves past its retry: on the cluster shape the record is
    // fetched, and each retry made, by the runner's polls of the real broker, not by the clock.
    await fixture.eventually(() => attempts === 1);
    await fixture.advance(clock, 100);
    await fixture.eventually(() => attempts === 2);
    await fixture.advance(clock, 300);
    // On the cluster shape the dead letter reaches its topic through the relay, after the commit.
    await fixture.eventually(
      async () =>
        handled(runtime) === 1 &&
        runtime.stats.subscriptions.payments?.deadLettered === 1 &&
        (await runtime.deadLetters()).length > 0,
    );
    const [letter, ...others] = await runtime.deadLetters();
    expect(others).toEqual([]);
    expect(letter).toMatchObject({
      subscription: 'payments',
      topic: payments,
      partition: 1,
      offset: 0,
      error: 'cannot parse the memo',
      attempts: 3,
    });
    expect(decodeJson(letter!.value)).toMatchObject({ id: 'poison' });
    expect(letter!.headers.traceparent).toBe('00-0123456789abcdef0123456789abcdef-0123456789abcdef-01');
    expect(await runtime.deadLetters({ subscription: 'elsewhere' })).toEqual([]);
    expect((await runtime.state(Account, 'carol'))?.state).toEqual({ balance: 5, payments: ['fine'] });
    expect(await fixture.log.committedOffsets(group, payments)).toEqual(new Map([[1, 2]]));
  });

  it('dead-letters a terminal error at once, without retries', async () => {
    let attempts = 0;
    const runtime = await start(async () => {
      attempts++;
      throw new TerminalError('malformed');
    });
    await pay({ id: 'x', account: 'dan', amount: 1 }, 0);
    await fixture.eventually(
      async () =>
        runtime.stats.subscriptions.payments?.deadLettered === 1 && (await runtime.deadLetters()).length > 0,
    );
    expect(attempts).toBe(1);
    expect((await runtime.deadLetters())[0]).toMatchObject({ error: 'malformed', attempts: 1 });
  });

  it("starts a saga from a handler once the record's transaction commits, exactly once per saga id", async () => {
    const receipts: string[] = [];
    const receipt = saga('Receipt', async (ctx, input: { payment: string }) =>
      ctx.step('mail', (step) => {
        receipts.push(step.idempotencyKey);
        return input.payment;
      }),
    );
    const definition = subscription('payments', {
      topic: payments,
      group,
      partitions: 2,
      handler: async (record, ctx) => {
        const payment = record.json<Payment>();
        await ctx.startSaga(receipt, `receipt-${payment.id}`, { payment: payment.id });
      },
    });
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(receipt, definition));
    await pay({ id: 'p1', account: 'erin', amount: 1 }, 0);
    await pay({ id: 'p1', account: 'erin', amount: 1 }, 1);
    await fixture.eventually(async () => (await runtime.saga('receipt-p1'))?.status === 'completed');
    // Both records were handled (the second found the saga started): nothing more is coming.
    await fixture.eventually(() => handled(runtime) === 2);
    await fixture.turns(50);
    expect(receipts).toEqual(['receipt-p1/mail']);
  });

  it("carries the record's trace into what the handler causes", async () => {
    const runtime = await start(deposit);
    await pay({ id: 't1', account: 'fay', amount: 1 }, 0, {
      traceparent: '00-fedcba9876543210fedcba9876543210-0123456789abcdef-01',
    });
    // On the cluster shape the ledger record reaches its topic through the relay, after the commit.
    await fixture.eventually(async () => handled(runtime) === 1 && (await readAll(ledger)).length === 1);
    const [entry] = await readAll(ledger);
    const trace = parseTraceparent(entry!.headers.traceparent)!;
    expect(trace.traceId).toBe('fedcba9876543210fedcba9876543210');
    expect(trace.spanId).not.toBe('0123456789abcdef');
  });
});
