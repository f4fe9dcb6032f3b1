// The semantics of sagas under a ManualClock: journaling and replay, retries and deadlines,
// compensation, durable sleep, non-determinism detection, exactly-once sends and emits. They
// run on both shapes: embedded (SQLite) and a one-node cluster (PostgreSQL + Kafka).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, RetryableError, TerminalError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { decodeJson } from './codec.ts';
import { entity, saga } from './definitions.ts';
import { SagaNotCompletedError, StepFailedError } from './errors.ts';
import type { Runtime, RuntimeOptions } from './runtime.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';
import { parseTraceparent } from './trace.ts';

/** Its events go to `eventsTopic`: unique per test on the cluster shape, whose broker is shared. */
const stockEntity = (eventsTopic: string) =>
  entity('Stock', {
    eventsTopic,
    initial: { available: 10 },
    commands: {
      reserve(state, input: { qty: number }) {
        if (state.available < input.qty) throw new TerminalError(`only ${state.available} left`);
        return {
          state: { available: state.available - input.qty },
          reply: { left: state.available - input.qty, qty: input.qty },
        };
      },
      release(state, input: { qty: number }) {
        return { state: { available: state.available + input.qty }, events: [{ released: input.qty }] };
      },
    },
  });

function never(): Promise<never> {
  return new Promise<never>(() => {});
}

describeShapes('sagas', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;
  let Stock: ReturnType<typeof stockEntity>;

  beforeEach(async () => {
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(42) });
    Stock = stockEntity(fixture.topic('Stock.events'));
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  /** A runtime on the shared fixture; `drainTimeoutMs: 0` so stopping abandons blocked steps at once. */
  async function runtimeWith(
    definitions: Parameters<Runtime['register']>,
    options: Partial<RuntimeOptions> = {},
  ) {
    return fixture.start(fixture.runtime({ drainTimeoutMs: 0, ...options }).register(...definitions));
  }

  async function journalOf(id: string) {
    const entries = await fixture.store.transaction((tx) => tx.sagas.journal(id));
    return entries.map((entry) => `${entry.kind}:${entry.name}:${entry.status}`);
  }

  describe('journal and replay', () => {
    it('resumes after a restart from the journal: finished steps return their result without running again', async () => {
      const calls = { a: 0, b: 0, c: [] as string[] };
      let blockC = true;
      const flow = saga('Resume', async (ctx, input: { n: number }) => {
        const a = await ctx.step('a', () => {
          calls.a++;
          return input.n + 1;
        });
        const b = await ctx.step('b', () => {
          calls.b++;
          return a * 2;
        });
        const c = await ctx.step('c', (step) => {
          calls.c.push(step.idempotencyKey);
          return blockC ? never() : `${b}!`;
        });
        return c;
      });
      const first = await runtimeWith([flow]);
      await first.startSaga(flow, 's1', { n: 1 });
      await fixture.eventually(() => calls.c.length === 1);
      await first.stop();
      expect(await journalOf('s1')).toEqual([
        'event:$start:completed',
        'step:a:completed',
        'step:b:completed',
      ]);

      blockC = false;
      const second = await runtimeWith([flow]);
      await expect(second.handle('s1').result()).resolves.toBe('4!');
      expect(calls).toEqual({ a: 1, b: 1, c: ['s1/c', 's1/c'] });
      expect((await second.saga('s1'))?.status).toBe('completed');
    });

    it('starts a saga once per id: the same id and input returns the same saga; another input is a conflict', async () => {
      let runs = 0;
      const once = saga('Once', async (ctx, input: { x: number }) =>
        ctx.step('only', () => ++runs + input.x),
      );
      const other = saga('Other', async () => 0);
      const runtime = await runtimeWith([once, other]);
      const first = await runtime.startSaga(once, 'id-1', { x: 10 });
      const again = await runtime.startSaga(once, 'id-1', { x: 10 });
      await expect(first.result()).resolves.toBe(11);
      await expect(again.result()).resolves.toBe(11);
      expect(runs).toBe(1);
      await expect(runtime.startSaga(once, 'id-1', { x: 11 })).rejects.toBeInstanceOf(ConflictError);
      await expect(runtime.startSaga(other, 'id-1', undefined)).rejects.toBeInstanceOf(ConflictError);
    });

    it('detects non-determinism on resume and marks the saga failed with the reason, undoing nothing', async () => {
      const ran: string[] = [];
      const v1 = saga('Evolving', async (ctx) => {
        await ctx.step('a', () => ran.push('a'), { compensate: () => void ran.push('undo a') });
        await ctx.step('b', () => ran.push('b'));
        await ctx.step('c', () => never());
      });
      const first = await runtimeWith([v1]);
      await first.startSaga(v1, 'e1', undefined);
      await fixture.eventually(async () => (await journalOf('e1')).length === 3);
      await first.stop();

      const v2 = saga('Evolving', async (ctx) => {
        await ctx.step('a', () => ran.push('a'));
        await ctx.step('x', () => ran.push('x'));
      });
      const second = await runtimeWith([v2]);
      const error = await second
        .handle('e1')
        .result()
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SagaNotCompletedError);
      expect((error as SagaNotCompletedError).status).toBe('failed');
      const record = await second.saga('e1');
      expect(record?.status).toBe('failed');
      expect(record?.reason).toMatch(
        /not deterministic: at journal position 2 the code asked for step 'x' but the journal holds step 'b'/,
      );
      expect(ran).toEqual(['a', 'b']);
      expect((await second.sagas({ status: 'failed' })).map((saga) => saga.id)).toEqual(['e1']);
    });

    it('detects a saga that returns early on resume, while its journal holds more', async () => {
      const v1 = saga('Shrinking', async (ctx) => {
        await ctx.step('a', () => 1);
        await ctx.step('b', () => 2);
        await ctx.step('c', () => never());
      });
      const first = await runtimeWith([v1]);
      await first.startSaga(v1, 'r1', undefined);
      await fixture.eventually(async () => (await journalOf('r1')).length === 3);
      await first.stop();
      const v2 = saga('Shrinking', async (ctx) => {
        await ctx.step('a', () => 1);
        return 'done early';
      });
      const second = await runtimeWith([v2]);
      await expect(second.handle('r1').result()).rejects.toThrow(
        /journal has more entries from position 2 \('step' 'b'\)/,
      );
    });

    it("lets the saga's code catch a failed step and take another path", async () => {
      const flow = saga('Fallback', async (ctx) => {
        try {
          return await ctx.step('primary', () => {
            throw new TerminalError('primary is down');
          });
        } catch (error) {
          expect(error).toBeInstanceOf(StepFailedError);
          return ctx.step('secondary', () => 'from secondary');
        }
      });
      const runtime = await runtimeWith([flow]);
      await expect((await runtime.startSaga(flow, 'f1', undefined)).result()).resolves.toBe('from secondary');
      expect(await journalOf('f1')).toEqual([
        'event:$start:completed',
        'step:primary:failed',
        'step:secondary:completed',
      ]);
    });

    it('fails a saga whose code returns while one of its calls still runs: every ctx call must be awaited', async () => {
      const flow = saga('Forgetful', async (ctx) => {
        void ctx.step('forgotten', () => never());
        await ctx.step('a', () => 1);
      });
      const runtime = await runtimeWith([flow]);
      const error = await (await runtime.startSaga(flow, 'p1', undefined))
        .result()
        .catch((caught: unknown) => caught);
      expect((error as SagaNotCompletedError).reason).toMatch(/step 'forgotten' was still running: await/);
    });

    it('refuses a step name used twice, because the name makes the idempotency key', async () => {
      const flow = saga('Twice', async (ctx) => {
        await ctx.step('charge', () => 1);
        await ctx.step('charge', () => 2);
      });
      const runtime = await runtimeWith([flow]);
      await expect((await runtime.startSaga(flow, 't1', undefined)).result()).rejects.toThrow(
        /unique within a saga/,
      );
    });
  });

  describe('retries and deadlines', () => {
    it('retries a failing step with exponential backoff on the Timers port, and journals the attempts', async () => {
      const attemptsAt: number[] = [];
      const flow = saga('Flaky', async (ctx) =>
        ctx.step(
          'flaky',
          (step) => {
            attemptsAt.push(clock.now());
            expect(step.attempt).toBe(attemptsAt.length);
            if (attemptsAt.length < 3) throw new Error('transient');
            return 'ok';
          },
          { retry: { initialDelayMs: 100, jitter: 'none' } },
        ),
      );
      const runtime = await runtimeWith([flow]);
      const handle = await runtime.startSaga(flow, 'r1', undefined);
      await fixture.advance(clock, 400);
      await expect(handle.result()).resolves.toBe('ok');
      const start = attemptsAt[0]!;
      expect(attemptsAt.map((at) => at - start)).toEqual([0, 100, 300]);
      const journal = await runtime.journal('r1');
      expect(journal[1]).toMatchObject({ name: 'flaky', status: 'completed', attempts: 3 });
    });

    it('never retries a TerminalError', async () => {
      let attempts = 0;
      const flow = saga('Terminal', async (ctx) =>
        ctx.step('declined', () => {
          attempts++;
          throw new TerminalError('card declined');
        }),
      );
      const runtime = await runtimeWith([flow]);
      await expect((await runtime.startSaga(flow, 't1', undefined)).result()).rejects.toThrow(
        "Step 'declined' failed after 1 attempt(s): card declined",
      );
      expect(attempts).toBe(1);
    });

    it('waits at least RetryableError.retryAfterMs before the next attempt', async () => {
      const attemptsAt: number[] = [];
      const flow = saga('Later', async (ctx) =>
        ctx.step(
          'rate-limited',
          () => {
            attemptsAt.push(clock.now());
            if (attemptsAt.length === 1) throw new RetryableError('slow down', { retryAfterMs: 2000 });
            return 'ok';
          },
          { retry: { initialDelayMs: 10, jitter: 'none' } },
        ),
      );
      const runtime = await runtimeWith([flow]);
      const handle = await runtime.startSaga(flow, 'l1', undefined);
      await fixture.advance(clock, 1990);
      expect(attemptsAt).toHaveLength(1);
      await fixture.advance(clock, 20);
      await expect(handle.result()).resolves.toBe('ok');
      expect(attemptsAt[1]! - attemptsAt[0]!).toBe(2000);
    });

    it('fails a step at its deadline, whatever its retry policy would still allow', async () => {
      const attemptsAt: number[] = [];
      const flow = saga('Deadline', async (ctx) =>
        ctx.step(
          'slow',
          () => {
            attemptsAt.push(clock.now());
            throw new Error('still down');
          },
          { timeoutMs: 1000, retry: { initialDelayMs: 400, jitter: 'none', maxAttempts: 100 } },
        ),
      );
      const runtime = await runtimeWith([flow]);
      const handle = await runtime.startSaga(flow, 'd1', undefined);
      await fixture.advance(clock, 1100);
      const error = await handle.result().catch((caught: unknown) => caught);
      expect((error as SagaNotCompletedError).reason).toMatch(
        /Step 'slow' failed after 2 attempt\(s\): .*passed its deadline/,
      );
      expect(attemptsAt.map((at) => at - attemptsAt[0]!)).toEqual([0, 400]);
    });

    it('aborts an attempt that hangs past the deadline, through its AbortSignal', async () => {
      let signal: AbortSignal | undefined;
      const flow = saga('Hang', async (ctx) =>
        ctx.step(
          'hang',
          (step) => {
            signal = step.signal;
            return never();
          },
          { timeoutMs: 500 },
        ),
      );
      const runtime = await runtimeWith([flow]);
      const handle = await runtime.startSaga(flow, 'h1', undefined);
      await fixture.advance(clock, 600);
      await expect(handle.result()).rejects.toThrow(/deadline/);
      expect(signal?.aborted).toBe(true);
    });

    it('keeps a step deadline across a restart: time spent down counts', async () => {
      let attempts = 0;
      const flow = saga('LongDeadline', async (ctx) =>
        ctx.step(
          'slow',
          () => {
            attempts++;
            return never();
          },
          { timeoutMs: 10_000 },
        ),
      );
      const first = await runtimeWith([flow]);
      await first.startSaga(flow, 'ld1', undefined);
      await fixture.eventually(() => attempts === 1);
      await first.stop();
      clock.advance(20_000);
      const second = await runtimeWith([flow]);
      await expect(second.handle('ld1').result()).rejects.toThrow(
        /failed after 0 attempt\(s\).*passed its deadline/,
      );
      expect(attempts).toBe(1);
    });
  });

  describe('compensation', () => {
    it('undoes the finished steps in reverse order when a later step fails for good, and keeps the reason', async () => {
      const events: string[] = [];
      const flow = saga('Order', async (ctx) => {
        await ctx.step('reserve', () => events.push('reserve') && 'R', {
          compensate: (step, result) => void events.push(`undo reserve ${result} as ${step.idempotencyKey}`),
        });
        await ctx.step('charge', () => events.push('charge') && 'C', {
          compensate: (_step, result) => void events.push(`undo charge ${result}`),
        });
        await ctx.step('log', () => void events.push('log'));
        await ctx.step('ship', () => {
          throw new TerminalError('no courier');
        });
      });
      const runtime = await runtimeWith([flow]);
      const error = await (await runtime.startSaga(flow, 'o1', undefined))
        .result()
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SagaNotCompletedError);
      expect(events).toEqual([
        'reserve',
        'charge',
        'log',
        'undo charge C',
        'undo reserve R as o1/reserve/compensate',
      ]);
      const record = await runtime.saga('o1');
      expect(record).toMatchObject({
        status: 'compensated',
        reason: "Step 'ship' failed after 1 attempt(s): no courier",
      });
      expect(await journalOf('o1')).toEqual([
        'event:$start:completed',
        'step:reserve:completed',
        'step:charge:completed',
        'step:log:completed',
        'step:ship:failed',
        'event:$failed:failed',
        'compensation:charge:completed',
        'compensation:reserve:completed',
      ]);
    });

    it('retries a failing compensation until it succeeds, showing the failure in the reason meanwhile', async () => {
      let failuresLeft = 3;
      let undone = 0;
      const flow = saga('Stubborn', async (ctx) => {
        await ctx.step('a', () => 'A', {
          compensate: () => {
            if (failuresLeft-- > 0) throw new Error('undo service down');
            undone++;
          },
        });
        await ctx.step('b', () => {
          throw new TerminalError('no');
        });
      });
      const runtime = await runtimeWith([flow], {
        compensationRetry: { initialDelayMs: 100, maxDelayMs: 100 },
      });
      const handle = await runtime.startSaga(flow, 'st1', undefined);
      await fixture.eventually(
        async () => (await runtime.saga('st1'))?.reason?.includes('attempt 1') === true,
      );
      expect(await runtime.saga('st1')).toMatchObject({
        status: 'compensating',
        reason:
          "Step 'b' failed after 1 attempt(s): no; compensation of 'a' failed (attempt 1, retrying): undo service down",
      });
      await fixture.advance(clock, 1000);
      await expect(handle.result()).rejects.toBeInstanceOf(SagaNotCompletedError);
      expect(undone).toBe(1);
      expect(await runtime.saga('st1')).toMatchObject({
        status: 'compensated',
        reason: "Step 'b' failed after 1 attempt(s): no",
      });
    });

    it('marks the saga failed, with both reasons, when a compensation fails terminally', async () => {
      const flow = saga('Unrefundable', async (ctx) => {
        await ctx.step('charge', () => 'C', {
          compensate: () => {
            throw new TerminalError('refund window closed');
          },
        });
        await ctx.step('ship', () => {
          throw new TerminalError('no courier');
        });
      });
      const runtime = await runtimeWith([flow]);
      await expect((await runtime.startSaga(flow, 'u1', undefined)).result()).rejects.toThrow(/failed/);
      expect(await runtime.saga('u1')).toMatchObject({
        status: 'failed',
        reason:
          "Step 'ship' failed after 1 attempt(s): no courier; then compensation of 'charge' failed terminally: refund window closed",
      });
    });

    it('resumes compensating after a restart, without repeating finished compensations', async () => {
      const undone: string[] = [];
      let blockUndoA = true;
      const flow = saga('HalfUndone', async (ctx) => {
        await ctx.step('a', () => 'A', { compensate: () => (blockUndoA ? never() : void undone.push('a')) });
        await ctx.step('b', () => 'B', { compensate: () => void undone.push('b') });
        await ctx.step('c', () => {
          throw new TerminalError('fail');
        });
      });
      const first = await runtimeWith([flow]);
      await first.startSaga(flow, 'hu1', undefined);
      await fixture.eventually(() => undone.length === 1);
      await first.stop();
      expect((await first.saga('hu1'))?.status).toBe('compensating');
      blockUndoA = false;
      const second = await runtimeWith([flow]);
      await expect(second.handle('hu1').result()).rejects.toBeInstanceOf(SagaNotCompletedError);
      expect(undone).toEqual(['b', 'a']);
    });
  });

  describe('entity sends', () => {
    it("applies a send exactly once with its journal entry, and compensates it with the entity's own command", async () => {
      const flow = saga('Reserve', async (ctx) => {
        const reply = await ctx.send(
          Stock,
          'sku-1',
          'reserve',
          { qty: 3 },
          {
            compensate: { command: 'release', input: (r) => ({ qty: r.qty }) },
          },
        );
        expect(reply).toEqual({ left: 7, qty: 3 });
        await ctx.step('pay', () => {
          throw new TerminalError('declined');
        });
      });
      const runtime = await runtimeWith([Stock, flow]);
      await expect((await runtime.startSaga(flow, 'rs1', undefined)).result()).rejects.toBeInstanceOf(
        SagaNotCompletedError,
      );
      expect(await runtime.state(Stock, 'sku-1')).toMatchObject({ state: { available: 10 }, version: 2 });
      expect(await journalOf('rs1')).toEqual([
        'event:$start:completed',
        'step:Stock.reserve:completed',
        'step:pay:failed',
        'event:$failed:failed',
        'compensation:Stock.reserve:completed',
      ]);
    });

    it('fails a rejected send as a step, and undoes only what finished before it', async () => {
      const undone: string[] = [];
      const flow = saga('Oversell', async (ctx) => {
        await ctx.step('hold', () => 'H', { compensate: () => void undone.push('hold') });
        await ctx.send(
          Stock,
          'sku-2',
          'reserve',
          { qty: 11 },
          { compensate: { command: 'release', input: { qty: 11 } } },
        );
      });
      const runtime = await runtimeWith([Stock, flow]);
      const error = await (await runtime.startSaga(flow, 'ov1', undefined))
        .result()
        .catch((caught: unknown) => caught);
      expect((error as SagaNotCompletedError).reason).toBe(
        "Step 'Stock.reserve' failed after 1 attempt(s): only 10 left",
      );
      expect(undone).toEqual(['hold']);
      expect(await runtime.state(Stock, 'sku-2')).toBeNull();
    });
  });

  describe('durable sleep', () => {
    it('sleeps on a durable timer that survives a restart: neither shortened nor restarted', async () => {
      const ran = { before: 0, after: 0 };
      const flow = saga('Sleeper', async (ctx) => {
        await ctx.step('before', () => void ran.before++);
        await ctx.sleep('cool-off', 60_000);
        await ctx.step('after', () => void ran.after++);
        return 'done';
      });
      const first = await runtimeWith([flow]);
      await first.startSaga(flow, 'z1', undefined);
      await fixture.eventually(async () => (await journalOf('z1')).includes('sleep:cool-off:completed'));
      // A saga gives its slot back a turn after all its calls wait (it may make another first).
      await fixture.eventually(() => first.stats.sleepingSagas === 1);
      await first.stop();
      clock.advance(30_000);

      const second = await runtimeWith([flow]);
      await fixture.eventually(() => second.stats.sleepingSagas === 1);
      await fixture.advance(clock, 29_000, 1000);
      expect(ran.after).toBe(0);
      await fixture.advance(clock, 1_000, 100);
      await expect(second.handle('z1').result()).resolves.toBe('done');
      expect(ran).toEqual({ before: 1, after: 1 });
    });

    it('gives a sleeping saga’s slot to another saga meanwhile', async () => {
      const sleeper = saga('LongNap', async (ctx) => {
        await ctx.sleep('nap', 10_000);
        return 'rested';
      });
      const quick = saga('Quick', async (ctx) => ctx.step('work', () => 'worked'));
      const runtime = await runtimeWith([sleeper, quick], { maxActiveSagas: 1 });
      const napping = await runtime.startSaga(sleeper, 'n1', undefined);
      await fixture.eventually(() => runtime.stats.sleepingSagas === 1);
      await expect((await runtime.startSaga(quick, 'q1', undefined)).result()).resolves.toBe('worked');
      await fixture.advance(clock, 10_000, 1000);
      await expect(napping.result()).resolves.toBe('rested');
    });

    it('stops waiting for a result when its signal aborts, leaving the saga running', async () => {
      const sleeper = saga('Doze', async (ctx) => {
        await ctx.sleep('doze', 10_000);
        return 'awake';
      });
      const runtime = await runtimeWith([sleeper]);
      const handle = await runtime.startSaga(sleeper, 'd1', undefined);
      await fixture.eventually(() => runtime.stats.sleepingSagas === 1);
      const controller = new AbortController();
      const waiting = handle.result({ signal: controller.signal });
      const stillWaiting = handle.result();
      controller.abort(new Error('gave up'));
      await expect(waiting).rejects.toThrow('gave up');
      const aborted = new AbortController();
      aborted.abort(new Error('already'));
      await expect(handle.result({ signal: aborted.signal })).rejects.toThrow('already');
      await fixture.advance(clock, 10_000, 1000);
      await expect(stillWaiting).resolves.toBe('awake');
    });

    it('with commitLingerMs, each transaction waits that long on the runtime timers for more work', async () => {
      const flow = saga('Lingering', async (ctx) => {
        const first = await ctx.step('one', () => 1);
        const second = await ctx.step('two', () => 2);
        return first + second;
      });
      const runtime = fixture.runtime({ drainTimeoutMs: 0, commitLingerMs: 5 }).register(flow);
      let done = false;
      const started = fixture.start(runtime).finally(() => {
        done = true;
      });
      await fixture.advance(clock, 20, 5);
      // On the cluster shape, starting also waits for real I/O (the topics, the group, the
      // claims): keep the clock moving 5 ms at a time until the runtime has started.
      await fixture.eventually(async () => {
        if (!done) await fixture.advance(clock, 5, 5);
        return done;
      });
      await started;
      const handle = runtime.startSaga(flow, 'l1', undefined);
      await fixture.turns(20);
      // Nothing commits while the clock stands still: the saga's start waits for its linger.
      expect(await fixture.store.transaction((tx) => tx.sagas.get('l1'))).toBeNull();
      await fixture.advance(clock, 100, 5);
      await expect((await handle).result()).resolves.toBe(3);
      expect(() => fixture.runtime({ commitLingerMs: 1001 })).toThrow(
        "'commitLingerMs' must be <= 1000: current value is 1001",
      );
    });

    it('runs at most maxActiveSagas sagas at once; the others wait their turn', async () => {
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let running = 0;
      let maxRunning = 0;
      const gated = saga('Gated', async (ctx, input: number) =>
        ctx.step('wait', async () => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          await gate;
          running--;
          return input;
        }),
      );
      const runtime = await runtimeWith([gated], { maxActiveSagas: 2 });
      const handles = await Promise.all([1, 2, 3, 4, 5].map((n) => runtime.startSaga(gated, `g${n}`, n)));
      await fixture.turns(50);
      expect(runtime.stats).toMatchObject({ activeSagas: 2, queuedSagas: 3 });
      expect(runtime.sagasInProgress).toBe(5);
      release();
      await expect(Promise.all(handles.map((handle) => handle.result()))).resolves.toEqual([1, 2, 3, 4, 5]);
      expect(maxRunning).toBe(2);
    });
  });

  describe('emits and trace context', () => {
    it("publishes an emitted record exactly once, in the caller's trace", async () => {
      const topic = fixture.topic('orders.completed');
      const flow = saga('Emitter', async (ctx) => {
        await ctx.emit(topic, {
          key: ctx.sagaId,
          value: { ok: true },
          headers: { 'x-app': 'test' },
        });
        await ctx.step('after', () => never());
      });
      const first = await runtimeWith([flow]);
      const traceparent = '00-11112222333344445555666677778888-00f067aa0ba902b7-01';
      await first.startSaga(flow, 'em1', undefined, { traceparent });
      await fixture.eventually(async () =>
        (await journalOf('em1')).includes(`event:emit:${topic}:completed`),
      );
      await first.stop();
      // A restart replays the emit from the journal instead of publishing it again.
      const second = await runtimeWith([flow]);
      await fixture.turns(50);
      await second.stop();
      await fixture.published();
      const records = [];
      for (let partition = 0; partition < 8; partition++) {
        records.push(...(await fixture.log.read(topic, partition, 0)));
      }
      expect(records).toHaveLength(1);
      expect(decodeJson(records[0]!.value)).toEqual({ ok: true });
      expect(records[0]!.headers).toMatchObject({
        'x-app': 'test',
        'meridian-saga': 'em1',
        'meridian-saga-type': 'Emitter',
      });
      expect(parseTraceparent(records[0]!.headers.traceparent)?.traceId).toBe(
        '11112222333344445555666677778888',
      );
    });

    it("gives each step the saga's trace, and the entity events a send causes too", async () => {
      let stepTraceparent = '';
      const flow = saga('Traced', async (ctx) => {
        await ctx.step('look', (step) => {
          stepTraceparent = step.traceparent;
        });
        await ctx.send(Stock, 'sku-t', 'release', { qty: 1 });
      });
      const runtime = await runtimeWith([Stock, flow]);
      const traceparent = '00-aaaabbbbccccddddeeeeffff00001111-00f067aa0ba902b7-01';
      await (await runtime.startSaga(flow, 'tr1', undefined, { traceparent })).result();
      expect(parseTraceparent(stepTraceparent)?.traceId).toBe('aaaabbbbccccddddeeeeffff00001111');
      await fixture.published();
      const events = [];
      for (let partition = 0; partition < 8; partition++)
        events.push(...(await fixture.log.read(Stock.eventsTopic, partition, 0)));
      expect(parseTraceparent(events[0]!.headers.traceparent)?.traceId).toBe(
        'aaaabbbbccccddddeeeeffff00001111',
      );
    });
  });

  describe('queries', () => {
    it('lists sagas by status and type, and returns one saga’s journal', async () => {
      const ok = saga('Ok', async (ctx) => ctx.step('s', () => 1));
      const bad = saga('Bad', async (ctx) =>
        ctx.step('s', () => {
          throw new TerminalError('bad');
        }),
      );
      const runtime = await runtimeWith([ok, bad]);
      await Promise.allSettled(
        [
          runtime.startSaga(ok, 'a1', undefined),
          runtime.startSaga(bad, 'b1', undefined),
          runtime.startSaga(ok, 'a2', undefined),
        ].map(async (handle) => (await handle).result()),
      );
      expect((await runtime.sagas({ status: 'completed' })).map((record) => record.id)).toEqual(['a1', 'a2']);
      expect((await runtime.sagas({ status: 'compensated' })).map((record) => record.id)).toEqual(['b1']);
      expect((await runtime.sagas({ type: 'Ok', limit: 1 })).map((record) => record.id)).toEqual(['a1']);
      expect((await runtime.sagas({ type: 'Ok', afterId: 'a1' })).map((record) => record.id)).toEqual(['a2']);
      expect((await runtime.journal('b1')).map((entry) => entry.error)).toEqual([
        null,
        'bad',
        "Step 's' failed after 1 attempt(s): bad",
      ]);
    });
  });

  describe('limits', () => {
    it('fails a step whose result is larger than the store keeps, instead of parking the saga', async () => {
      const flow = saga('Huge', async (ctx) => ctx.step('big', () => 'x'.repeat(1_100_000)));
      const runtime = await runtimeWith([flow]);
      await expect((await runtime.startSaga(flow, 'h1', undefined)).result()).rejects.toThrow(
        /at most 1048576 bytes of JSON/,
      );
      expect((await runtime.saga('h1'))?.status).toBe('compensated');
    });

    it('journals a very long error message cut to a bounded length', async () => {
      const flow = saga('Verbose', async (ctx) =>
        ctx.step('loud', () => {
          throw new TerminalError('e'.repeat(50_000));
        }),
      );
      const runtime = await runtimeWith([flow]);
      await expect((await runtime.startSaga(flow, 'v1', undefined)).result()).rejects.toBeInstanceOf(
        SagaNotCompletedError,
      );
      const failed = (await runtime.journal('v1')).find((entry) => entry.name === 'loud');
      expect(failed?.error).toHaveLength(4096);
      expect(failed?.error?.endsWith('... (truncated)')).toBe(true);
      expect((await runtime.saga('v1'))?.reason?.length).toBeLessThanOrEqual(4096);
    });
  });
});
