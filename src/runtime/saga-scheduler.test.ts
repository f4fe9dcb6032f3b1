// The saga scheduler on its own: admission within its slots, resume of given ids, eviction that
// resolves once the evicted runs have parked, and sleepers giving their slot back.
import { describe, expect, it } from 'vitest';
import type { SagaDefinition } from './definitions.ts';
import type { ExecutionResult } from './saga-execution.ts';
import { type LoadedSaga, SagaScheduler } from './saga-scheduler.ts';

const completed: ExecutionResult = { outcome: 'completed', output: null, reason: null };
const parked: ExecutionResult = { outcome: 'parked', output: null, reason: null };

/** One turn of the event loop: lets the scheduler's promises run. No time passes. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function loaded(id: string): LoadedSaga {
  return {
    definition: { kind: 'saga', name: 'test' } as unknown as SagaDefinition,
    record: {
      id,
      type: 'test',
      status: 'running',
      input: null,
      output: null,
      reason: null,
      createdAt: 0,
      updatedAt: 0,
      version: 1,
    },
    journal: [],
  };
}

/** A scheduler whose runs end when the test says so, or park when asked to. */
function harness(maxActive: number, options: { sleepAt?: number } = {}) {
  const running = new Map<string, { finish: () => void; wake?: Promise<void> }>();
  const loads: string[] = [];
  const scheduler: SagaScheduler = new SagaScheduler({
    maxActive,
    load: async (id) => {
      loads.push(id);
      return loaded(id);
    },
    execute: (saga, parking) => ({
      run: () =>
        new Promise<ExecutionResult>((resolve) => {
          const id = saga.record.id;
          const entry: { finish: () => void; wake?: Promise<void> } = { finish: () => resolve(completed) };
          running.set(id, entry);
          // Like an execution, a run parks at its next durable call: a sleeper once its sleep returns.
          const parkOnAbort = () => {
            if (parking.aborted) resolve(parked);
            else parking.addEventListener('abort', () => resolve(parked), { once: true });
          };
          if (options.sleepAt === undefined) parkOnAbort();
          else entry.wake = scheduler.sleep(id, options.sleepAt).then(parkOnAbort);
        }),
    }),
    report: (problem) => {
      throw problem.error;
    },
  });
  scheduler.open();
  return { scheduler, running, loads };
}

describe('SagaScheduler', () => {
  it('runs at most maxActive sagas, queues the rest, and admits the next when one ends', async () => {
    const { scheduler, running } = harness(2);
    for (const id of ['a', 'b', 'c']) scheduler.enqueue({ sagaId: id });
    await turn();
    expect([...running.keys()]).toEqual(['a', 'b']);
    expect(scheduler.stats).toEqual({ active: 2, sleeping: 0, queued: 1 });
    const a = scheduler.settled('a');
    running.get('a')!.finish();
    expect(await a).toEqual(completed);
    await turn();
    expect([...running.keys()]).toEqual(['a', 'b', 'c']);
    expect(scheduler.stats).toEqual({ active: 2, sleeping: 0, queued: 0 });
  });

  it('resumes the given ids from their journals, once each', async () => {
    const { scheduler, running, loads } = harness(10);
    scheduler.resume(['x', 'y', 'x']);
    await turn();
    expect(loads).toEqual(['x', 'y']);
    expect([...running.keys()]).toEqual(['x', 'y']);
    scheduler.resume(['x']);
    await turn();
    expect(loads).toEqual(['x', 'y']);
  });

  it('evicts the selected sagas: resolves once their runs parked, drops them from the queue, leaves the others', async () => {
    const { scheduler } = harness(2);
    for (const id of ['p1', 'q1', 'p2']) scheduler.enqueue({ sagaId: id });
    await turn();
    const queuedWaiter = scheduler.settled('p2');
    const evicted = await scheduler.evict((id) => id.startsWith('p'));
    expect(evicted.sort()).toEqual(['p1', 'p2']);
    expect(await queuedWaiter).toEqual(parked);
    expect(scheduler.has('p1')).toBe(false);
    expect(scheduler.has('p2')).toBe(false);
    expect(scheduler.has('q1')).toBe(true);
    // The freed slot is usable, and an evicted saga can be resumed again on request.
    scheduler.resume(['p1']);
    await turn();
    expect(scheduler.stats.active).toBe(2);
  });

  it('evicts a sleeping saga: it wakes to park, and the slot count stays balanced', async () => {
    const { scheduler, running } = harness(1, { sleepAt: Number.MAX_SAFE_INTEGER });
    scheduler.enqueue({ sagaId: 's1' });
    await turn();
    expect(scheduler.stats).toEqual({ active: 1, sleeping: 1, queued: 0 });
    // The sleeper gave its slot back: another saga runs meanwhile.
    scheduler.enqueue({ sagaId: 's2' });
    await turn();
    expect(running.has('s2')).toBe(true);
    expect(await scheduler.evict((id) => id === 's1')).toEqual(['s1']);
    await running.get('s1')!.wake;
    // s2 sleeps too (every run here does): it is the one left.
    expect(scheduler.stats).toEqual({ active: 1, sleeping: 1, queued: 0 });
    await scheduler.evict(() => true);
    scheduler.resume(['s3']);
    await turn();
    expect(running.has('s3')).toBe(true);
  });

  it('wakes a sleeper when its timer fires, and resumes a saga not in memory', async () => {
    const { scheduler, running, loads } = harness(1, { sleepAt: 100 });
    scheduler.enqueue({ sagaId: 'w' });
    await turn();
    scheduler.timerFired('w', 50);
    expect(scheduler.stats.sleeping).toBe(1);
    scheduler.timerFired('w', 100);
    await running.get('w')!.wake;
    expect(scheduler.stats.sleeping).toBe(0);
    // Not in memory: queued behind the awake saga, which holds the one slot.
    scheduler.timerFired('elsewhere', 100);
    expect(scheduler.stats.queued).toBe(1);
    running.get('w')!.finish();
    await turn();
    expect(loads).toContain('elsewhere');
  });

  it('stop parks every run; idle resolves when they ended; waiters left are rejected', async () => {
    const { scheduler } = harness(1);
    scheduler.enqueue({ sagaId: 'a' });
    scheduler.enqueue({ sagaId: 'b' });
    await turn();
    const a = scheduler.settled('a');
    const b = scheduler.settled('b');
    scheduler.stop();
    await scheduler.idle();
    expect(await a).toEqual(parked);
    scheduler.enqueue({ sagaId: 'c' });
    expect(scheduler.has('c')).toBe(false);
    scheduler.rejectWaiters((id) => new Error(`stopped before ${id}`));
    expect(await b).toEqual(new Error('stopped before b'));
  });
});
