import fc from 'fast-check';
import { TerminalError } from '../errors.ts';
import type { JournalEntry, Json } from '../store/types.ts';
import { endedSagaStatuses } from '../store/types.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { entity, type SagaContext, type SagaDefinition, saga } from './definitions.ts';
import type { Runtime } from './runtime.ts';
import { openShape, type ShapeFixture, type ShapeName } from './shapes.ts';

/**
 * A generated saga program and a driver that runs it with simulated crashes, for the runtime's
 * property tests (replay, compensation order). Not part of the API.
 *
 * A "crash" happens inside a step or compensation function, after its external effect has been
 * applied and before it returns: the runtime is stopped at once (abandoning the call) and a new
 * runtime resumes the saga from its journal — the worst moment for a step, since its effect
 * exists but its journal entry does not.
 */
export type Operation =
  | {
      readonly kind: 'step';
      /** Transient failures before the step succeeds. */
      readonly failures: number;
      /** Fails terminally instead (after its transient failures). */
      readonly terminal: boolean;
      readonly compensate: boolean;
    }
  | { readonly kind: 'send'; readonly amount: number; readonly compensate: boolean }
  | { readonly kind: 'sleep'; readonly durationMs: number }
  | { readonly kind: 'emit' };

/** Generators of the operations both replay properties draw (replay, concurrent replay). */
export const sendArbitrary = fc.record({
  kind: fc.constant('send' as const),
  amount: fc.integer({ min: 1, max: 100 }),
  compensate: fc.boolean(),
});
export const sleepArbitrary = fc.record({
  kind: fc.constant('sleep' as const),
  durationMs: fc.integer({ min: 0, max: 50 }),
});
export const emitArbitrary = fc.record({ kind: fc.constant('emit' as const) });

/** The outside world: an idempotent service that remembers every key it applied. */
export class FakeService {
  readonly calls: string[] = [];
  readonly applied = new Map<string, number>();
  /** Keys applied, in the order first applied. */
  readonly order: string[] = [];

  apply(key: string): void {
    this.calls.push(key);
    if (!this.applied.has(key)) this.order.push(key);
    this.applied.set(key, (this.applied.get(key) ?? 0) + 1);
  }

  /** Applies once per key, like a real idempotent API: a repeated key changes nothing. */
  applyOnce(key: string): void {
    this.calls.push(key);
    if (this.applied.has(key)) return;
    this.order.push(key);
    this.applied.set(key, 1);
  }
}

export const Counter = entity('Counter', {
  initial: { total: 0, undone: 0 },
  commands: {
    add(state, input: { amount: number }) {
      return { state: { ...state, total: state.total + input.amount }, reply: state.total + input.amount };
    },
    undo(state, input: { amount: number }) {
      return { state: { total: state.total - input.amount, undone: state.undone + 1 } };
    },
  },
});

export interface ModelRun {
  readonly service: FakeService;
  /** Calls (step and compensation attempts) at which to crash, counted from 0 across the run. */
  readonly crashAt: ReadonlySet<number>;
  calls: number;
  crashed: boolean;
}

/** Applies an effect once per key; at a crash point, then hangs forever (the runtime is about to stop). */
export function crashingEffect(run: ModelRun): (key: string) => Promise<void> {
  return async (key) => {
    const index = run.calls++;
    run.service.applyOnce(key);
    if (run.crashAt.has(index)) {
      run.crashed = true;
      await new Promise<never>(() => {});
    }
  };
}

/**
 * The saga that runs `program`. Step `i` is named `op{i}`; its effect key is its idempotency key.
 * Emits go to `eventsTopic`.
 */
export function programSaga(
  name: string,
  program: readonly Operation[],
  run: ModelRun,
  eventsTopic = 'model.events',
) {
  const call = crashingEffect(run);
  return saga(name, async (ctx: SagaContext) => {
    let sum = 0;
    for (const [index, operation] of program.entries()) {
      const opName = `op${index}`;
      switch (operation.kind) {
        case 'step': {
          let failuresLeft = operation.failures;
          const result = await ctx.step(
            opName,
            async (step) => {
              if (failuresLeft > 0) {
                failuresLeft--;
                throw new Error(`transient failure of ${opName}`);
              }
              if (operation.terminal) throw new TerminalError(`${opName} fails for good`);
              await call(step.idempotencyKey);
              return index;
            },
            {
              retry: { initialDelayMs: 10, jitter: 'none', maxAttempts: 5 },
              ...(operation.compensate ? { compensate: (step) => call(step.idempotencyKey) } : {}),
            },
          );
          sum += result;
          break;
        }
        case 'send':
          sum += await ctx.send(
            Counter,
            'counter',
            'add',
            { amount: operation.amount },
            operation.compensate
              ? { compensate: { command: 'undo', input: { amount: operation.amount } } }
              : {},
          );
          break;
        case 'sleep':
          await ctx.sleep(opName, operation.durationMs);
          break;
        case 'emit':
          await ctx.emit(eventsTopic, { key: ctx.sagaId, value: { index } });
          break;
      }
    }
    return sum;
  });
}

/**
 * Runs saga `id` to its end on `fixture` (either shape), restarting the runtime at every crash,
 * and moving the ManualClock whenever nothing else can happen. Returns the number of restarts.
 */
export async function runToEnd(
  fixture: Pick<ShapeFixture, 'store' | 'turns'>,
  clock: ManualClock,
  makeRuntime: () => Promise<Runtime>,
  start: (runtime: Runtime) => Promise<void>,
  id: string,
  run: ModelRun,
): Promise<number> {
  let runtime = await makeRuntime();
  await start(runtime);
  let restarts = 0;
  for (let round = 0; round < 10_000; round++) {
    await fixture.turns(3);
    const record = await fixture.store.transaction((tx) => tx.sagas.get(id));
    if (record !== null && endedSagaStatuses.has(record.status)) {
      await runtime.stop();
      return restarts;
    }
    if (run.crashed) {
      run.crashed = false;
      await runtime.stop();
      restarts++;
      runtime = await makeRuntime();
      continue;
    }
    clock.advance(10);
  }
  throw new Error(`Saga '${id}' did not end`);
}

/** How a model saga's run ended, and what the outside world saw. */
export interface ModelOutcome {
  readonly journal: JournalEntry[];
  readonly status: string | undefined;
  readonly output: Json | undefined;
  readonly counter: Json;
  /** Idempotency keys the outside world saw, sorted. */
  readonly keys: string[];
  /** Records emitted to `eventsTopic`. */
  readonly emitted: number;
  readonly restarts: number;
  /** The events topic (unique per run on the cluster shape). */
  readonly eventsTopic: string;
}

/**
 * Runs saga `id`, made by `define` for a fresh fixture of `shape`, to its end with crashes at
 * `crashAt` (see runToEnd), and reads what it left: its journal and record, the Counter, the
 * keys the FakeService saw, the records on the events topic.
 */
export async function executeModel(
  shape: ShapeName,
  options: { crashAt: ReadonlySet<number>; seed: number; id: string },
  define: (run: ModelRun, eventsTopic: string) => SagaDefinition<undefined, unknown>,
): Promise<ModelOutcome> {
  const clock = new ManualClock(1_000_000);
  const fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(options.seed) });
  try {
    const eventsTopic = fixture.topic('model.events');
    await fixture.log.createTopic(eventsTopic, { partitions: 1 });
    const run: ModelRun = { service: new FakeService(), crashAt: options.crashAt, calls: 0, crashed: false };
    const definition = define(run, eventsTopic);
    const restarts = await runToEnd(
      fixture,
      clock,
      () => fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Counter, definition)),
      async (runtime) => {
        await runtime.startSaga(definition, options.id, undefined);
      },
      options.id,
      run,
    );
    await fixture.published();
    const { journal, record, counter } = await fixture.store.read(async (tx) => ({
      journal: await tx.sagas.journal(options.id),
      record: await tx.sagas.get(options.id),
      counter: await tx.entities.get('Counter', 'counter'),
    }));
    return {
      journal,
      status: record?.status,
      output: record?.output,
      counter: counter?.state ?? null,
      keys: [...new Set(run.service.calls)].sort(),
      emitted: (await fixture.log.offsets(eventsTopic, 0)).end,
      restarts,
      eventsTopic,
    };
  } finally {
    await fixture.destroy();
  }
}
