// Replay, as a property: for any generated saga program and any set of crash points (a crash
// right after a step's external effect, before its result is journaled), the saga ends with the
// same journal, status and output as a run without crashes; every entity send applies exactly
// once; every emit is published once; and the outside world only ever sees the keys of the
// crash-free run (a retry after a crash reuses its step's idempotency key).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JournalEntry } from '../store/types.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { openEmbedded } from './harness.ts';
import { Counter, FakeService, type ModelRun, type Operation, programSaga, runToEnd } from './saga-model.ts';

const operation: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('step' as const),
      failures: fc.integer({ min: 0, max: 2 }),
      terminal: fc.constant(false),
      compensate: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('step' as const),
      failures: fc.integer({ min: 0, max: 1 }),
      terminal: fc.constant(true),
      compensate: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      amount: fc.integer({ min: 1, max: 100 }),
      compensate: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('sleep' as const),
      durationMs: fc.integer({ min: 0, max: 50 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('emit' as const) }) },
);

interface Outcome {
  journal: Array<Pick<JournalEntry, 'kind' | 'name' | 'status' | 'result' | 'error'>>;
  status: string | undefined;
  output: unknown;
  counter: unknown;
  keys: string[];
  emitted: number;
  restarts: number;
}

async function execute(program: readonly Operation[], crashAt: ReadonlySet<number>): Promise<Outcome> {
  const clock = new ManualClock(1_000_000);
  const fixture = openEmbedded({ clock, timers: clock, random: seededRandom(11) });
  try {
    await fixture.log.createTopic('model.events', { partitions: 1 });
    const run: ModelRun = { service: new FakeService(), crashAt, calls: 0, crashed: false };
    const definition = programSaga('Program', program, run);
    const restarts = await runToEnd(
      fixture,
      clock,
      async () => {
        const runtime = fixture.runtime({ drainTimeoutMs: 0 }).register(Counter, definition);
        await runtime.start();
        return runtime;
      },
      async (runtime) => {
        await runtime.startSaga(definition, 'model-1', undefined);
      },
      'model-1',
      run,
    );
    const journal = await fixture.store.transaction((tx) => tx.sagas.journal('model-1'));
    const record = await fixture.store.transaction((tx) => tx.sagas.get('model-1'));
    const counter = await fixture.store.transaction((tx) => tx.entities.get('Counter', 'counter'));
    return {
      // A sleep's wake time depends on when it began, which crashes delay: compare the rest.
      journal: journal.map(({ kind, name, status, result, error }) => ({
        kind,
        name,
        status,
        result: kind === 'sleep' ? { timerId: (result as { timerId: string }).timerId } : result,
        error,
      })),
      status: record?.status,
      output: record?.output,
      counter: counter?.state ?? null,
      keys: [...new Set(run.service.calls)].sort(),
      emitted: (await fixture.log.offsets('model.events', 0)).end,
      restarts,
    };
  } finally {
    await fixture.destroy();
  }
}

describe('replay (property)', () => {
  it('ends with the same journal and effects whatever the crash points', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(operation, { minLength: 1, maxLength: 8 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 12 }), { maxLength: 4 }),
        async (program, crashes) => {
          const reference = await execute(program, new Set());
          const crashed = await execute(program, new Set(crashes));
          expect(reference.restarts).toBe(0);
          expect(crashed.journal).toEqual(reference.journal);
          expect(crashed.status).toBe(reference.status);
          expect(crashed.output).toEqual(reference.output);
          expect(crashed.counter).toEqual(reference.counter);
          expect(crashed.keys).toEqual(reference.keys);
          expect(crashed.emitted).toBe(reference.emitted);
          // The crashes really happened: every crash point the run reached restarted the runtime.
          const reachable = crashes.filter((index) => index < reference.keys.length);
          if (reachable.length > 0) expect(crashed.restarts).toBeGreaterThan(0);
        },
      ),
      { numRuns: 30, seed: Number(process.env.MERIDIAN_PROPERTY_SEED ?? 20261123) },
    );
  }, 120_000);
});
