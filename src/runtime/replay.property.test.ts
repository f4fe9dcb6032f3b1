// Replay, as a property: for any generated saga program and any set of crash points (a crash
// right after a step's external effect, before its result is journaled), the saga ends with the
// same journal, status and output as a run without crashes; every entity send applies exactly
// once; every emit is published once; and the outside world only ever sees the keys of the
// crash-free run (a retry after a crash reuses its step's idempotency key). It runs on both
// shapes; on the cluster shape (real PostgreSQL and Kafka, where every run and restart costs
// real I/O and a group join) with fewer runs of the same seed, to keep CI time reasonable:
// MERIDIAN_CLUSTER_PROPERTY_RUNS raises them.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import type { JournalEntry } from '../store/types.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { Counter, FakeService, type ModelRun, type Operation, programSaga, runToEnd } from './saga-model.ts';
import { clusterPropertyRuns, describeShapes, openShape, type ShapeName } from './shapes.ts';

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

async function execute(
  shape: ShapeName,
  program: readonly Operation[],
  crashAt: ReadonlySet<number>,
): Promise<Outcome> {
  const clock = new ManualClock(1_000_000);
  const fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(11) });
  try {
    const events = fixture.topic('model.events');
    await fixture.log.createTopic(events, { partitions: 1 });
    const run: ModelRun = { service: new FakeService(), crashAt, calls: 0, crashed: false };
    const definition = programSaga('Program', program, run, events);
    const restarts = await runToEnd(
      fixture,
      clock,
      async () => {
        return fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Counter, definition));
      },
      async (runtime) => {
        await runtime.startSaga(definition, 'model-1', undefined);
      },
      'model-1',
      run,
    );
    await fixture.published();
    const journal = await fixture.store.transaction((tx) => tx.sagas.journal('model-1'));
    const record = await fixture.store.transaction((tx) => tx.sagas.get('model-1'));
    const counter = await fixture.store.transaction((tx) => tx.entities.get('Counter', 'counter'));
    return {
      // A sleep's wake time depends on when it began, which crashes delay: compare the rest.
      // An emit's entry names its topic, which is unique per run on the cluster shape.
      journal: journal.map(({ kind, name, status, result, error }) => ({
        kind,
        name: name === `emit:${events}` ? 'emit:model.events' : name,
        status,
        result: kind === 'sleep' ? { timerId: (result as { timerId: string }).timerId } : result,
        error,
      })),
      status: record?.status,
      output: record?.output,
      counter: counter?.state ?? null,
      keys: [...new Set(run.service.calls)].sort(),
      emitted: (await fixture.log.offsets(events, 0)).end,
      restarts,
    };
  } finally {
    await fixture.destroy();
  }
}

describeShapes('replay (property)', (shape) => {
  it('ends with the same journal and effects whatever the crash points', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(operation, { minLength: 1, maxLength: 8 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 12 }), { maxLength: 4 }),
        async (program, crashes) => {
          const reference = await execute(shape, program, new Set());
          const crashed = await execute(shape, program, new Set(crashes));
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
      {
        numRuns: shape === 'embedded' ? 30 : clusterPropertyRuns,
        seed: Number(process.env.MERIDIAN_PROPERTY_SEED ?? 20261123),
      },
    );
  }, 240_000);
});
