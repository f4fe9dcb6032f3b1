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
import {
  emitArbitrary,
  executeModel,
  type Operation,
  programSaga,
  sendArbitrary,
  sleepArbitrary,
} from './saga-model.ts';
import { clusterPropertyRuns, describeShapes, type ShapeName } from './shapes.ts';

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
  { weight: 3, arbitrary: sendArbitrary },
  { weight: 1, arbitrary: sleepArbitrary },
  { weight: 1, arbitrary: emitArbitrary },
);

/** A model run, its journal reduced to what crashes cannot change. */
async function execute(shape: ShapeName, program: readonly Operation[], crashAt: ReadonlySet<number>) {
  const outcome = await executeModel(shape, { crashAt, seed: 11, id: 'model-1' }, (run, events) =>
    programSaga('Program', program, run, events),
  );
  return {
    ...outcome,
    // A sleep's wake time depends on when it began, which crashes delay: compare the rest.
    // An emit's entry names its topic, which is unique per run on the cluster shape.
    journal: outcome.journal.map(({ kind, name, status, result, error }) => ({
      kind,
      name: name === `emit:${outcome.eventsTopic}` ? 'emit:model.events' : name,
      status,
      result: kind === 'sleep' ? { timerId: (result as { timerId: string }).timerId } : result,
      error,
    })),
  };
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
