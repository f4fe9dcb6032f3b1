// Saga steps run under resilience policies: an open circuit refuses the outside call without
// running it (and the step's durable retry takes it from there), and a policy timeout aborts the
// step through its signal. They run on both shapes: embedded and a one-node cluster.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { circuitBreaker, timeout } from '../resilience/index.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { saga } from './definitions.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

describeShapes('step policies', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;

  beforeEach(async () => {
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(7) });
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  it('an open circuit refuses later calls without running them, and the step fails with the refusal', async () => {
    const breaker = circuitBreaker({
      mode: 'consecutive',
      failureThreshold: 2,
      openDurationMs: 60_000,
      clock,
    });
    let calls = 0;
    const flow = saga('Charge', async (ctx) =>
      ctx.step(
        'charge',
        () => {
          calls++;
          throw new Error('gateway down');
        },
        { policy: breaker, retry: { maxAttempts: 4, initialDelayMs: 10, jitter: 'none' } },
      ),
    );
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(flow));
    const handle = await runtime.startSaga(flow, 'c1', undefined);
    await fixture.advance(clock, 1000);
    await expect(handle.result()).rejects.toThrow(/failed after 4 attempt/);
    expect(calls).toBe(2);
    expect(breaker.state).toBe('open');
    const journal = await runtime.journal('c1');
    expect(journal.find((entry) => entry.name === 'charge')).toMatchObject({ status: 'failed', attempts: 4 });
  });

  it('a policy timeout aborts the step through its signal, and the retry runs it again', async () => {
    const aborted: boolean[] = [];
    let attempt = 0;
    const flow = saga('Slow', async (ctx) =>
      ctx.step(
        'call',
        (step) => {
          attempt++;
          if (attempt > 1) return 'fast the second time';
          return new Promise<string>((_, reject) => {
            step.signal.addEventListener('abort', () => {
              aborted.push(step.signal.aborted);
              reject(step.signal.reason);
            });
          });
        },
        {
          policy: timeout({ timeoutMs: 50, strategy: 'cooperative', clock, timers: clock }),
          retry: { maxAttempts: 3, initialDelayMs: 10, jitter: 'none' },
        },
      ),
    );
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(flow));
    const handle = await runtime.startSaga(flow, 's1', undefined);
    await fixture.advance(clock, 500);
    await expect(handle.result()).resolves.toBe('fast the second time');
    expect(aborted).toEqual([true]);
  });
});
