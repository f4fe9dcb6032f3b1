import { describe, expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { circuitBreaker, type OpenEvent, type StateChangeEvent } from './circuit-breaker.ts';
import { BrokenCircuitError, isBrokenCircuitError } from './errors.ts';

const fail = () => Promise.reject(new Error('dependency down'));
const succeed = () => Promise.resolve('ok');

async function outcome(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => value,
    (error: unknown) => error,
  );
}

describe('circuit breaker', () => {
  it('consecutive: opens after failureThreshold failures in a row, refuses calls without running them, then probes and closes', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({ mode: 'consecutive', failureThreshold: 3, openDurationMs: 1000, clock });
    const changes: string[] = [];
    breaker.onStateChange(({ from, to }) => changes.push(`${from}->${to}`));
    await outcome(breaker.execute(fail));
    await outcome(breaker.execute(fail));
    await breaker.execute(succeed);
    await outcome(breaker.execute(fail));
    await outcome(breaker.execute(fail));
    expect(breaker.state).toBe('closed');
    await outcome(breaker.execute(fail));
    expect(breaker.state).toBe('open');

    let calls = 0;
    const refused = await outcome(breaker.execute(() => ++calls));
    expect(refused).toBeInstanceOf(BrokenCircuitError);
    expect(refused).toMatchObject({ code: 'CIRCUIT_OPEN', state: 'open', retryAfterMs: 1000 });
    expect(calls).toBe(0);

    clock.advance(400);
    expect(await outcome(breaker.execute(succeed))).toMatchObject({ retryAfterMs: 600 });
    clock.advance(600);
    expect(breaker.state).toBe('half-open');
    await expect(breaker.execute(succeed)).resolves.toBe('ok');
    expect(breaker.state).toBe('closed');
    expect(changes).toEqual(['closed->open', 'open->half-open', 'half-open->closed']);
  });

  it('half-open: admits at most halfOpenMaxCalls probes at once and reopens on a failed probe', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({
      mode: 'consecutive',
      failureThreshold: 1,
      openDurationMs: 100,
      halfOpenMaxCalls: 2,
      clock,
    });
    const opens: OpenEvent[] = [];
    breaker.onOpen((event) => opens.push(event));
    await outcome(breaker.execute(fail));
    clock.advance(100);
    const first = Promise.withResolvers<string>();
    const second = Promise.withResolvers<string>();
    const probe1 = breaker.execute(() => first.promise);
    const probe2 = outcome(breaker.execute(() => second.promise));
    const third = await outcome(breaker.execute(succeed));
    expect(third).toMatchObject({ code: 'CIRCUIT_OPEN', state: 'half-open' });
    first.resolve('fine');
    await probe1;
    expect(breaker.state).toBe('half-open');
    second.reject(new Error('still broken'));
    await probe2;
    expect(breaker.state).toBe('open');
    expect(opens.map((event) => event.reason)).toEqual(['consecutive-failures', 'probe-failed']);
  });

  it('half-open: closes only after halfOpenMaxCalls successful probes', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({
      mode: 'consecutive',
      failureThreshold: 1,
      openDurationMs: 100,
      halfOpenMaxCalls: 3,
      clock,
    });
    await outcome(breaker.execute(fail));
    clock.advance(100);
    await breaker.execute(succeed);
    await breaker.execute(succeed);
    expect(breaker.state).toBe('half-open');
    await breaker.execute(succeed);
    expect(breaker.state).toBe('closed');
  });

  it('count-window: opens when the failure rate over the last windowSize calls reaches the threshold, once minimumCalls were made', async () => {
    const breaker = circuitBreaker({
      mode: 'count-window',
      windowSize: 10,
      minimumCalls: 4,
      failureRateThreshold: 0.5,
    });
    await outcome(breaker.execute(fail));
    await outcome(breaker.execute(fail));
    await outcome(breaker.execute(fail));
    expect(breaker.state).toBe('closed');
    await breaker.execute(succeed);
    // 3 failures of 4 calls: 75% >= 50%.
    expect(breaker.state).toBe('open');
  });

  it('count-window: stays closed while the failure rate is below the threshold', async () => {
    const breaker = circuitBreaker({
      mode: 'count-window',
      windowSize: 4,
      minimumCalls: 4,
      failureRateThreshold: 0.5,
    });
    for (let index = 0; index < 20; index++) {
      await outcome(breaker.execute(index % 4 === 0 ? fail : succeed));
    }
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ calls: 4, failures: 1, failureRate: 0.25 });
  });

  it('time-window: opens on the slow-call rate when calls succeed but take too long', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({
      mode: 'time-window',
      windowMs: 10_000,
      minimumCalls: 3,
      slowCallDurationMs: 1000,
      slowCallRateThreshold: 0.6,
      clock,
    });
    const opens: OpenEvent[] = [];
    breaker.onOpen((event) => opens.push(event));
    const slow = () => new Promise<string>((resolve) => clock.setTimeout(() => resolve('slow ok'), 1500));
    const call1 = breaker.execute(slow);
    await clock.advanceAsync(1500);
    await call1;
    await breaker.execute(succeed);
    const call3 = breaker.execute(slow);
    await clock.advanceAsync(1500);
    await call3;
    expect(breaker.state).toBe('open');
    expect(opens[0]).toMatchObject({ reason: 'slow-call-rate', failureRate: 0 });
    expect(opens[0]?.slowCallRate).toBeCloseTo(2 / 3);
  });

  it('time-window: forgets failures older than the window', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({
      mode: 'time-window',
      windowMs: 1000,
      windowBucketCount: 10,
      minimumCalls: 3,
      clock,
    });
    await outcome(breaker.execute(fail));
    await outcome(breaker.execute(fail));
    clock.advance(1000);
    await outcome(breaker.execute(fail));
    await breaker.execute(succeed);
    await breaker.execute(succeed);
    // Only the last three calls are in the window: 1 failure of 3.
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ calls: 3, failures: 1 });
  });

  it('does not count terminal errors or cancelled calls against the dependency', async () => {
    const breaker = circuitBreaker({ mode: 'consecutive', failureThreshold: 1 });
    await outcome(breaker.execute(() => Promise.reject(new TerminalError('card declined'))));
    const caller = new AbortController();
    const cancelled = breaker.execute(({ signal }) => {
      caller.abort();
      return Promise.reject(signal.reason);
    }, caller.signal);
    await outcome(cancelled);
    expect(breaker.state).toBe('closed');
  });

  it('ignores the outcome of a call admitted in an earlier state', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({ mode: 'consecutive', failureThreshold: 1, openDurationMs: 100, clock });
    const slowFailure = Promise.withResolvers<never>();
    const early = outcome(breaker.execute(() => slowFailure.promise));
    await outcome(breaker.execute(fail));
    clock.advance(100);
    expect(breaker.state).toBe('half-open');
    slowFailure.reject(new Error('late'));
    await early;
    expect(breaker.state).toBe('half-open');
  });

  it('isolate holds the circuit open until every isolation is disposed, then closes it', async () => {
    const breaker = circuitBreaker({ mode: 'consecutive' });
    const events: StateChangeEvent[] = [];
    breaker.onStateChange((event) => events.push(event));
    const first = breaker.isolate();
    const second = breaker.isolate();
    const refused = await outcome(breaker.execute(succeed));
    expect(isBrokenCircuitError(refused) && refused.state).toBe('isolated');
    first.dispose();
    expect(breaker.state).toBe('isolated');
    second[Symbol.dispose]();
    expect(breaker.state).toBe('closed');
    expect(events.map(({ to }) => to)).toEqual(['isolated', 'closed']);
  });

  it('emits onReject for every refused call', async () => {
    const breaker = circuitBreaker({ mode: 'consecutive' });
    const rejects: string[] = [];
    using _sub = breaker.onReject(({ state }) => rejects.push(state));
    const isolation = breaker.isolate();
    await outcome(breaker.execute(succeed));
    await outcome(breaker.execute(succeed));
    isolation.dispose();
    expect(rejects).toEqual(['isolated', 'isolated']);
  });

  it('validates options and refuses ones that do not apply to the mode', () => {
    expect(() => circuitBreaker({} as { mode: 'consecutive' })).toThrow("'mode' must be given explicitly");
    expect(() => circuitBreaker({ mode: 'consecutive', windowSize: 10 })).toThrow(
      "'windowSize' must be left out for mode 'consecutive'",
    );
    expect(() => circuitBreaker({ mode: 'count-window', failureThreshold: 3 })).toThrow(
      "'failureThreshold' must be left out",
    );
    expect(() => circuitBreaker({ mode: 'count-window', windowSize: 10, minimumCalls: 11 })).toThrow(
      "'minimumCalls' must be <= 10: current value is 11",
    );
    expect(() => circuitBreaker({ mode: 'time-window', slowCallRateThreshold: 0.5 })).toThrow(
      "'slowCallRateThreshold' must be left out unless 'slowCallDurationMs' is set",
    );
    expect(() => circuitBreaker({ mode: 'count-window', failureRateThreshold: 1.5 })).toThrow(
      "'failureRateThreshold' must be <= 1",
    );
  });
});
