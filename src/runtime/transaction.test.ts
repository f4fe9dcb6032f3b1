// runtime.transaction: app work joins the group commit, isolated in its own savepoint, fenced,
// and settles only once its transaction committed. They run on both shapes: embedded and a
// one-node cluster (PostgreSQL + Kafka).
import { afterEach, expect, it } from 'vitest';
import { ClosedError } from '../errors.ts';
import { entity } from './definitions.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const Counter = entity('Counter', {
  initial: { count: 0 },
  commands: {
    add(state, input: { by: number }) {
      return { state: { count: state.count + input.by }, reply: state.count + input.by };
    },
  },
});

describeShapes('runtime.transaction', (shape) => {
  let fixture: ShapeFixture | undefined;
  afterEach(async () => {
    await fixture?.destroy();
    fixture = undefined;
  });

  it('shares one transaction with concurrent commands and sees their writes', async () => {
    fixture = await openShape(shape);
    const runtime = await fixture.start(fixture.runtime().register(Counter));
    const before = runtime.stats.commits.transactions;
    const [, , seen] = await Promise.all([
      runtime.send(Counter, 'c', 'add', { by: 1 }),
      runtime.transaction((tx) =>
        tx.idempotency.reserve({
          scope: 's',
          key: 'k',
          fingerprint: 'f',
          nowMs: 1,
          leaseMs: 10,
          expiresAt: 100,
        }),
      ),
      runtime.transaction((tx) => tx.entities.get('Counter', 'c')),
    ]);
    expect(runtime.stats.commits.transactions - before).toBe(1);
    expect(seen?.state).toEqual({ count: 1 });
    const again = await runtime.transaction((tx) =>
      tx.idempotency.reserve({
        scope: 's',
        key: 'k',
        fingerprint: 'f',
        nowMs: 2,
        leaseMs: 10,
        expiresAt: 100,
      }),
    );
    expect(again).toEqual({ outcome: 'in_flight', leaseUntil: 11 });
  });

  it('rolls back only its own writes when its work throws', async () => {
    fixture = await openShape(shape);
    const runtime = await fixture.start(fixture.runtime().register(Counter));
    const failing = runtime.transaction(async (tx) => {
      await tx.entities.put('Note', 'n', { text: 'lost' }, 0);
      throw new Error('changed my mind');
    });
    const [sent, failed] = await Promise.allSettled([runtime.send(Counter, 'c', 'add', { by: 2 }), failing]);
    expect(sent).toEqual({ status: 'fulfilled', value: 2 });
    expect(failed.status).toBe('rejected');
    expect(await runtime.transaction((tx) => tx.entities.get('Note', 'n'))).toBeNull();
  });

  it('refuses work once the runtime stopped', async () => {
    fixture = await openShape(shape);
    const runtime = await fixture.start(fixture.runtime());
    await runtime.stop();
    await expect(runtime.transaction(async () => 1)).rejects.toBeInstanceOf(ClosedError);
  });
});
