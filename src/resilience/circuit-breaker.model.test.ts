/**
 * The circuit breaker's state machine checked against a small reference model: random sequences
 * of successful, failing, slow and terminal-error calls, clock jumps and isolations must leave
 * the breaker and the model in the same state, refusing and admitting the same calls.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { type CircuitBreakerOptions, type CircuitState, circuitBreaker } from './circuit-breaker.ts';

type Action =
  | { kind: 'call'; result: 'success' | 'failure' | 'terminal'; durationMs: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'isolate' }
  | { kind: 'release' };

interface ModelConfig {
  mode: 'consecutive' | 'count-window' | 'time-window';
  failureThreshold: number;
  windowSize: number;
  windowMs: number;
  bucketCount: number;
  minimumCalls: number;
  failureRateThreshold: number;
  slowCallDurationMs: number | undefined;
  slowCallRateThreshold: number;
  openDurationMs: number;
  halfOpenMaxCalls: number;
}

/** The reference: the rules of docs/resilience.md written as plainly as possible, calls one at a time. */
class Model {
  state: CircuitState = 'closed';
  openUntilMs = 0;
  consecutive = 0;
  outcomes: { atMs: number; failed: boolean; slow: boolean }[] = [];
  probesSucceeded = 0;
  isolations = 0;
  readonly config: ModelConfig;

  constructor(config: ModelConfig) {
    this.config = config;
  }

  refresh(nowMs: number): void {
    if (this.state === 'open' && nowMs >= this.openUntilMs) this.enter('half-open');
  }

  enter(state: CircuitState): void {
    this.state = state;
    this.consecutive = 0;
    this.outcomes = [];
    this.probesSucceeded = 0;
  }

  /** Whether a call starting at `nowMs` is admitted. */
  admits(nowMs: number): boolean {
    this.refresh(nowMs);
    if (this.state === 'open' || this.state === 'isolated') return false;
    if (this.state === 'half-open') return this.probesSucceeded < this.config.halfOpenMaxCalls;
    return true;
  }

  record(failed: boolean, slow: boolean, nowMs: number): void {
    const c = this.config;
    if (this.state === 'half-open') {
      if (failed || slow) this.open(nowMs);
      else if (++this.probesSucceeded >= c.halfOpenMaxCalls) this.enter('closed');
      return;
    }
    if (c.mode === 'consecutive') {
      this.consecutive = failed ? this.consecutive + 1 : 0;
      if (this.consecutive >= c.failureThreshold) this.open(nowMs);
      return;
    }
    this.outcomes.push({ atMs: nowMs, failed, slow });
    let window = this.outcomes;
    if (c.mode === 'count-window') window = window.slice(-c.windowSize);
    else {
      const bucketMs = c.windowMs / c.bucketCount;
      const oldestBucket = Math.floor(nowMs / bucketMs) - c.bucketCount + 1;
      window = window.filter((o) => Math.floor(o.atMs / bucketMs) >= oldestBucket);
    }
    if (window.length < c.minimumCalls) return;
    const failureRate = window.filter((o) => o.failed).length / window.length;
    const slowRate = window.filter((o) => o.slow).length / window.length;
    if (failureRate >= c.failureRateThreshold) this.open(nowMs);
    else if (c.slowCallDurationMs !== undefined && slowRate >= c.slowCallRateThreshold) this.open(nowMs);
  }

  open(nowMs: number): void {
    this.enter('open');
    this.openUntilMs = nowMs + this.config.openDurationMs;
  }
}

const configs: fc.Arbitrary<ModelConfig> = fc.record({
  mode: fc.constantFrom('consecutive' as const, 'count-window' as const, 'time-window' as const),
  failureThreshold: fc.integer({ min: 1, max: 5 }),
  windowSize: fc.integer({ min: 1, max: 8 }),
  windowMs: fc.constantFrom(1000, 2000),
  bucketCount: fc.constantFrom(1, 4, 10),
  minimumCalls: fc.integer({ min: 1, max: 8 }),
  failureRateThreshold: fc.constantFrom(0.25, 0.5, 1),
  slowCallDurationMs: fc.option(fc.constantFrom(50, 100), { nil: undefined }),
  slowCallRateThreshold: fc.constantFrom(0.5, 1),
  openDurationMs: fc.constantFrom(100, 500),
  halfOpenMaxCalls: fc.integer({ min: 1, max: 3 }),
});

const actions: fc.Arbitrary<Action[]> = fc.array(
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('call' as const),
        result: fc.constantFrom('success' as const, 'failure' as const, 'terminal' as const),
        durationMs: fc.constantFrom(0, 10, 60, 150),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 700 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'isolate' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'release' as const }) },
  ),
  { maxLength: 60 },
);

function optionsFor(config: ModelConfig, clock: ManualClock): CircuitBreakerOptions {
  const common = { openDurationMs: config.openDurationMs, halfOpenMaxCalls: config.halfOpenMaxCalls, clock };
  if (config.mode === 'consecutive')
    return { ...common, mode: 'consecutive', failureThreshold: config.failureThreshold };
  const rates = {
    minimumCalls:
      config.mode === 'count-window' ? Math.min(config.minimumCalls, config.windowSize) : config.minimumCalls,
    failureRateThreshold: config.failureRateThreshold,
    ...(config.slowCallDurationMs === undefined
      ? {}
      : {
          slowCallDurationMs: config.slowCallDurationMs,
          slowCallRateThreshold: config.slowCallRateThreshold,
        }),
  };
  if (config.mode === 'count-window')
    return { ...common, ...rates, mode: 'count-window', windowSize: config.windowSize };
  return {
    ...common,
    ...rates,
    mode: 'time-window',
    windowMs: config.windowMs,
    windowBucketCount: config.bucketCount,
  };
}

describe('circuit breaker state machine (model-based)', () => {
  it('agrees with the reference model on every state and every admission', async () => {
    await fc.assert(
      fc.asyncProperty(configs, actions, async (rawConfig, script) => {
        const config = {
          ...rawConfig,
          minimumCalls:
            rawConfig.mode === 'count-window'
              ? Math.min(rawConfig.minimumCalls, rawConfig.windowSize)
              : rawConfig.minimumCalls,
        };
        const clock = new ManualClock();
        const breaker = circuitBreaker(optionsFor(config, clock));
        const model = new Model(config);
        const isolations: Disposable[] = [];
        for (const action of script) {
          if (action.kind === 'advance') {
            clock.advance(action.ms);
          } else if (action.kind === 'isolate') {
            isolations.push(breaker.isolate());
            if (model.state !== 'isolated') model.enter('isolated');
            model.isolations++;
          } else if (action.kind === 'release') {
            const isolation = isolations.pop();
            if (isolation !== undefined) {
              isolation[Symbol.dispose]();
              if (--model.isolations === 0) model.enter('closed');
            }
          } else {
            const admitted = model.admits(clock.monotonicNow());
            let ran = false;
            const call = breaker
              .execute(async () => {
                ran = true;
                if (action.durationMs > 0) {
                  await new Promise((resolve) =>
                    clock.setTimeout(() => resolve(undefined), action.durationMs),
                  );
                }
                if (action.result === 'failure') throw new Error('failure');
                if (action.result === 'terminal') throw new TerminalError('terminal');
                return 'ok';
              })
              .catch(() => undefined);
            await clock.advanceAsync(action.durationMs);
            await call;
            expect(ran).toBe(admitted);
            if (admitted) {
              const slow =
                config.mode !== 'consecutive' &&
                config.slowCallDurationMs !== undefined &&
                action.durationMs >= config.slowCallDurationMs;
              model.record(action.result === 'failure', slow, clock.monotonicNow());
            }
          }
          model.refresh(clock.monotonicNow());
          expect(breaker.state).toBe(model.state);
        }
      }),
      { numRuns: 300 },
    );
  });
});
