import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { aimdLimit } from './aimd-limit.ts';
import { bulkhead } from './bulkhead.ts';
import { circuitBreaker } from './circuit-breaker.ts';
import type { CallContext } from './context.ts';
import { BulkheadRejectedError, TimeoutError } from './errors.ts';
import { GatePolicy } from './gate.ts';
import { loadShedder } from './load-shedder.ts';
import { pipeline } from './pipeline.ts';
import type { Operation, Policy } from './policy.ts';
import { timeout } from './timeout.ts';

/** A gate that logs its entries and exits, refusing when told to. */
class LoggingGate extends GatePolicy<string> {
  readonly name: string;
  readonly log: string[];
  refuse = false;
  constructor(name: string, log: string[]) {
    super();
    this.name = name;
    this.log = log;
  }
  enter(_context: CallContext): string {
    if (this.refuse) {
      this.log.push(`${this.name} refuses`);
      throw new Error(`refused by ${this.name}`);
    }
    this.log.push(`${this.name} enter`);
    return `${this.name}-ticket`;
  }
  exit(ticket: string, failed: boolean, error: unknown): unknown {
    this.log.push(`${this.name} exit ${ticket} ${failed ? (error as Error).message : 'ok'}`);
    return error;
  }
}

/** Hides a policy's gate nature so a pipeline nests it instead of fusing it. */
function nested(policy: Policy<unknown>): Policy<unknown> {
  return {
    execute: (operation, signal) => policy.execute(operation, signal),
    run: (operation, context) => policy.run(operation, context),
  };
}

describe('gates fused in a pipeline', () => {
  it('enter in order, exit in reverse, and unwind only the gates that admitted a refused call', async () => {
    const log: string[] = [];
    const outer = new LoggingGate('outer', log);
    const middle = new LoggingGate('middle', log);
    const inner = new LoggingGate('inner', log);
    const policy = pipeline(outer, middle, inner);
    await policy.execute(() => log.push('call'));
    expect(log.splice(0)).toEqual([
      'outer enter',
      'middle enter',
      'inner enter',
      'call',
      'inner exit inner-ticket ok',
      'middle exit middle-ticket ok',
      'outer exit outer-ticket ok',
    ]);
    inner.refuse = true;
    await expect(policy.execute(() => log.push('call'))).rejects.toThrow('refused by inner');
    expect(log.splice(0)).toEqual([
      'outer enter',
      'middle enter',
      'inner refuses',
      'middle exit middle-ticket refused by inner',
      'outer exit outer-ticket refused by inner',
    ]);
  });

  it('starts an inner timeout only once a queued call is admitted by the bulkhead outside it', async () => {
    const clock = new ManualClock();
    const limit = bulkhead({ maxConcurrent: 1, maxQueued: 1 });
    const policy = pipeline(limit, timeout({ timeoutMs: 100, clock, timers: clock }));
    const first = Promise.withResolvers<string>();
    const running = policy.execute(() => first.promise);
    const queued = policy.execute(() => 'second');
    await clock.advanceAsync(90);
    first.resolve('first');
    await expect(running).resolves.toBe('first');
    await clock.advanceAsync(50);
    await expect(queued).resolves.toBe('second');
    expect(limit.snapshot()).toMatchObject({ active: 0, queued: 0 });
  });

  it('behaves exactly like the nested policies: same results, same breaker and shedder state', async () => {
    const run = async (fuse: boolean) => {
      const clock = new ManualClock();
      const breaker = circuitBreaker({
        mode: 'consecutive',
        failureThreshold: 2,
        openDurationMs: 1000,
        clock,
      });
      const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 3 }), clock });
      const limit = bulkhead({ maxConcurrent: 2 });
      const deadline = timeout({ timeoutMs: 50, clock, timers: clock });
      const parts: Policy<unknown>[] = [shedder, breaker, limit, deadline];
      const policy = pipeline(...(fuse ? parts : parts.map(nested)));
      // Indexed by call: fused gates settle in fewer microtask hops, so completion order may differ.
      const outcomes: string[] = [];
      const slowUntilAborted: Operation<string> = ({ signal }) =>
        new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new Error('aborted'))),
        );
      const calls = [
        policy.execute(() => 'a'),
        policy.execute(slowUntilAborted),
        policy.execute(slowUntilAborted),
        policy.execute(() => 'refused by bulkhead'),
      ].map((call, index) =>
        call.then(
          (value) => {
            outcomes[index] = String(value);
          },
          (error: unknown) => {
            outcomes[index] = (error as Error).constructor.name;
          },
        ),
      );
      await clock.advanceAsync(50);
      await Promise.all(calls);
      outcomes.push(breaker.state, String(shedder.limit), String(shedder.inFlight));
      const after = await policy
        .execute(() => 'after')
        .catch((error: unknown) => (error as Error).constructor.name);
      outcomes.push(String(after));
      return outcomes;
    };
    const fused = await run(true);
    expect(fused).toEqual(await run(false));
    // The second call times out, the third finds both bulkhead slots taken, the fourth is over
    // the shedder's limit of 3; the breaker saw one failure of two allowed.
    expect(fused).toEqual([
      'a',
      TimeoutError.name,
      BulkheadRejectedError.name,
      'ShedError',
      'closed',
      '2',
      '0',
      'after',
    ]);
  });
});
