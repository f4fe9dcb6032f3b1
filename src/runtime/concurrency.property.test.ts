// Replay of concurrent calls, as a property: for any generated saga whose code runs branches of
// steps, sends, sleeps, emits, ctx.now() and ctx.random() under Promise.all (a branch's later
// calls made only once its earlier ones answered, so the calls' order depends on which answered
// first), and any set of crash points (right after a step's external effect, before its result
// is journaled), every call returns on every replay exactly what it returned when it ran; the
// saga ends as a crash-free run does, with the same calls journaled once each; every send
// applies once; and the outside world sees the same idempotency keys. Seeded
// (MERIDIAN_PROPERTY_SEED). On the cluster shape with fewer runs (MERIDIAN_CLUSTER_PROPERTY_RUNS).
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { type SagaContext, saga } from './definitions.ts';
import { untag } from './saga-calls.ts';
import {
  Counter,
  crashingEffect,
  emitArbitrary,
  executeModel,
  type ModelRun,
  sendArbitrary,
  sleepArbitrary,
} from './saga-model.ts';
import { clusterPropertyRuns, describeShapes, type ShapeName } from './shapes.ts';

type Call =
  | { readonly kind: 'step'; readonly failures: number; readonly compensate: boolean }
  | { readonly kind: 'send'; readonly amount: number; readonly compensate: boolean }
  | { readonly kind: 'sleep'; readonly durationMs: number }
  | { readonly kind: 'emit' }
  | { readonly kind: 'now' }
  | { readonly kind: 'random' };

/** A segment runs one call, one call that fails for good, or branches of calls concurrently. */
type Segment =
  | { readonly kind: 'one'; readonly call: Call }
  | { readonly kind: 'terminal' }
  | { readonly kind: 'parallel'; readonly branches: readonly (readonly Call[])[] };

const call: fc.Arbitrary<Call> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('step' as const),
      failures: fc.integer({ min: 0, max: 2 }),
      compensate: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: sendArbitrary },
  { weight: 1, arbitrary: sleepArbitrary },
  { weight: 1, arbitrary: emitArbitrary },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('now' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('random' as const) }) },
);

const segment: fc.Arbitrary<Segment> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('one' as const), call }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('terminal' as const) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('parallel' as const),
      branches: fc.array(fc.array(call, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 3 }),
    }),
  },
);

interface Observed {
  /** What each call returned, every time the code ran it (live, then on each replay). */
  readonly returned: Map<string, unknown[]>;
}

/** The saga that runs `program`; call `name`s are unique, so returns can be compared by name. */
function programSaga(program: readonly Segment[], run: ModelRun, observed: Observed, eventsTopic: string) {
  const effect = crashingEffect(run);
  const note = (name: string, value: unknown) => {
    const seen = observed.returned.get(name) ?? [];
    seen.push(value);
    observed.returned.set(name, seen);
    return value;
  };
  const perform = async (ctx: SagaContext, name: string, spec: Call): Promise<unknown> => {
    switch (spec.kind) {
      case 'step': {
        let failuresLeft = spec.failures;
        return ctx.step(
          name,
          async (step) => {
            if (failuresLeft-- > 0) throw new Error(`transient failure of ${name}`);
            await effect(step.idempotencyKey);
            return name.length;
          },
          {
            retry: { initialDelayMs: 10, jitter: 'none', maxAttempts: 5 },
            ...(spec.compensate ? { compensate: (step) => effect(step.idempotencyKey) } : {}),
          },
        );
      }
      case 'send':
        return ctx.send(
          Counter,
          'counter',
          'add',
          { amount: spec.amount },
          spec.compensate ? { compensate: { command: 'undo', input: { amount: spec.amount } } } : {},
        );
      case 'sleep':
        return ctx.sleep(name, spec.durationMs);
      case 'emit':
        return ctx.emit(eventsTopic, { key: ctx.sagaId, value: { name } });
      case 'now':
        return ctx.now();
      case 'random':
        return ctx.random();
    }
  };
  return saga('ConcurrentProgram', async (ctx) => {
    const results: unknown[] = [];
    for (const [index, part] of program.entries()) {
      if (part.kind === 'terminal') {
        await ctx.step(`op${index}`, () => {
          throw new TerminalError(`op${index} fails for good`);
        });
      } else if (part.kind === 'one') {
        results.push(note(`op${index}`, await perform(ctx, `op${index}`, part.call)));
      } else {
        const branches = part.branches.map(async (calls, branch) => {
          const values: unknown[] = [];
          for (const [position, spec] of calls.entries()) {
            const name = `op${index}.${branch}.${position}`;
            values.push(note(name, await perform(ctx, name, spec)));
          }
          return values;
        });
        results.push(await Promise.all(branches));
      }
    }
    return results.length;
  });
}

/** A model run, with what each call returned and its journal as a sorted list of calls. */
async function execute(shape: ShapeName, program: readonly Segment[], crashAt: ReadonlySet<number>) {
  const observed: Observed = { returned: new Map() };
  const outcome = await executeModel(shape, { crashAt, seed: 5, id: 'concurrent-1' }, (run, events) =>
    programSaga(program, run, observed, events),
  );
  return {
    ...outcome,
    observed,
    // Which calls were journaled, and how they ended: in any order (they ran concurrently). A
    // sleep's end is journaled only when something ran beside it, which timing decides. An
    // emit's entry names its topic, which is unique per run on the cluster shape.
    journaled: outcome.journal
      .map(
        (entry) =>
          `${entry.kind} ${untag(entry.name).name.replace(outcome.eventsTopic, 'events')} ${entry.status}`,
      )
      .filter((entry) => !entry.startsWith('event $wake:'))
      .sort(),
  };
}

describeShapes('concurrent replay (property)', (shape) => {
  it('every call returns on replay what it returned when it ran, and the saga ends as without crashes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 14 }), { maxLength: 4 }),
        async (program, crashes) => {
          const reference = await execute(shape, program, new Set());
          const crashed = await execute(shape, program, new Set(crashes));
          for (const run of [reference, crashed]) {
            for (const [name, values] of run.observed.returned) {
              expect(
                values.every((value) => Object.is(value, values[0])),
                `${name} returned ${values}`,
              ).toBe(true);
            }
          }
          expect(crashed.status).toBe(reference.status);
          expect(crashed.journaled).toEqual(reference.journaled);
          expect(crashed.counter).toEqual(reference.counter);
          expect(crashed.keys).toEqual(reference.keys);
          expect(crashed.emitted).toBe(reference.emitted);
          const reachable = crashes.filter((index) => index < reference.keys.length);
          if (reachable.length > 0) expect(crashed.restarts).toBeGreaterThan(0);
        },
      ),
      {
        numRuns: shape === 'embedded' ? 40 : clusterPropertyRuns,
        seed: Number(process.env.MERIDIAN_PROPERTY_SEED ?? 20261206),
      },
    );
  }, 240_000);
});
