// Compensation order, as a property: when a step fails for good, exactly the compensations of
// the operations that finished before it run, in reverse order of completion — even when the
// runtime crashes in the middle of compensating — and each one's effect applies once. It runs
// on both shapes; on the cluster shape with fewer runs of the same seed (see
// replay.property.test.ts).
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { ManualClock, seededRandom } from '../time.ts';
import { Counter, FakeService, type ModelRun, type Operation, programSaga, runToEnd } from './saga-model.ts';
import { clusterPropertyRuns, describeShapes, openShape } from './shapes.ts';

const finishing: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({
    kind: fc.constant('step' as const),
    failures: fc.integer({ min: 0, max: 1 }),
    terminal: fc.constant(false),
    compensate: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('send' as const),
    amount: fc.integer({ min: 1, max: 9 }),
    compensate: fc.boolean(),
  }),
);

describeShapes('compensation order (property)', (shape) => {
  it('undoes exactly the finished operations, last finished first, once each, across crashes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(finishing, { minLength: 0, maxLength: 6 }),
        fc.array(finishing, { maxLength: 2 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 14 }), { maxLength: 3 }),
        async (before, after, crashes) => {
          const failing: Operation = { kind: 'step', failures: 0, terminal: true, compensate: true };
          const program = [...before, failing, ...after];
          const clock = new ManualClock(1_000_000);
          const fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(5) });
          try {
            const run: ModelRun = {
              service: new FakeService(),
              crashAt: new Set(crashes),
              calls: 0,
              crashed: false,
            };
            const definition = programSaga('Compensating', program, run);
            await runToEnd(
              fixture,
              clock,
              async () => {
                const runtime = fixture.runtime({
                  drainTimeoutMs: 0,
                  compensationRetry: { initialDelayMs: 10, maxDelayMs: 10 },
                });
                runtime.register(Counter, definition);
                return fixture.start(runtime);
              },
              async (runtime) => {
                await runtime.startSaga(definition, 'c-1', undefined);
              },
              'c-1',
              run,
            );
            // What should be undone: the operations before the failing one that registered a
            // compensation, last first. The failing step itself never finished.
            const expected = before
              .map((operation, index) => ({ operation, index }))
              .filter(
                ({ operation }) =>
                  operation.kind !== 'emit' && operation.kind !== 'sleep' && operation.compensate,
              )
              .reverse();
            const expectedNames = expected.map(({ operation, index }) =>
              operation.kind === 'send' ? 'Counter.add' : `op${index}`,
            );
            const journal = await fixture.store.transaction((tx) => tx.sagas.journal('c-1'));
            expect(
              journal.filter((entry) => entry.kind === 'compensation').map((entry) => entry.name),
            ).toEqual(expectedNames);
            const record = await fixture.store.transaction((tx) => tx.sagas.get('c-1'));
            expect(record?.status).toBe('compensated');
            // Step compensations reached the outside world in that order, each key once.
            const stepUndos = expected
              .filter(({ operation }) => operation.kind === 'step')
              .map(({ index }) => `c-1/op${index}/compensate`);
            expect(run.service.order.filter((key) => key.endsWith('/compensate'))).toEqual(stepUndos);
            // Send compensations applied exactly once each: the counter is back where it should be.
            const counter = await fixture.store.transaction((tx) => tx.entities.get('Counter', 'counter'));
            const sends = before.filter((operation) => operation.kind === 'send');
            const undone = sends.filter((operation) => operation.compensate);
            const net =
              sends.reduce((sum, operation) => sum + operation.amount, 0) -
              undone.reduce((sum, operation) => sum + operation.amount, 0);
            expect(counter?.state ?? { total: 0, undone: 0 }).toEqual({ total: net, undone: undone.length });
          } finally {
            await fixture.destroy();
          }
        },
      ),
      {
        numRuns: shape === 'embedded' ? 30 : clusterPropertyRuns,
        seed: Number(process.env.MERIDIAN_PROPERTY_SEED ?? 20261123),
      },
    );
  }, 240_000);
});
