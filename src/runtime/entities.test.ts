// Entities are the runtime's keyed state: these tests prove that a command's state, events and
// reply commit together, that a rejection changes nothing, that commands for one key never lose
// an update, that a superseded runtime cannot write, and that events carry the caller's trace.
// They run on both shapes: embedded (SQLite) and a one-node cluster (PostgreSQL + Kafka).
import { afterEach, describe, expect, it } from 'vitest';
import { TerminalError, ValidationError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { decodeJson } from './codec.ts';
import { entity } from './definitions.ts';
import { FencedError } from './errors.ts';
import { openEmbedded } from './harness.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';
import { parseTraceparent } from './trace.ts';

interface Account {
  balance: number;
}

/** Its events go to `eventsTopic`: unique per test on the cluster shape, whose broker is shared. */
const accountEntity = (eventsTopic: string) =>
  entity('Account', {
    eventsTopic,
    initial: (): Account => ({ balance: 0 }),
    commands: {
      deposit(state, input: { amount: number }) {
        return {
          state: { balance: state.balance + input.amount },
          events: [{ type: 'deposited', amount: input.amount }],
          reply: state.balance + input.amount,
        };
      },
      withdraw(state, input: { amount: number }) {
        if (state.balance < input.amount)
          throw new TerminalError(`insufficient funds: ${state.balance} < ${input.amount}`);
        return {
          state: { balance: state.balance - input.amount },
          events: [{ type: 'withdrawn', amount: input.amount }],
          reply: state.balance - input.amount,
        };
      },
      balance(state) {
        return { reply: state.balance };
      },
      close(state) {
        return {
          events: [{ type: 'closed', finalBalance: state.balance }],
          reply: state.balance,
          delete: true,
        };
      },
      closeBadly(state) {
        return { state, delete: true };
      },
      corrupt(state) {
        return {
          state: { balance: state.balance, bad: 1n } as unknown as Account,
          events: [{ type: 'never' }],
        };
      },
    },
  });

describeShapes('entities', (shape) => {
  let fixture: ShapeFixture;
  let Account: ReturnType<typeof accountEntity>;
  afterEach(async () => {
    await fixture.destroy();
  });

  async function started(random = seededRandom(1)) {
    const clock = new ManualClock(1_000);
    fixture = await openShape(shape, { clock, timers: clock, random });
    Account = accountEntity(fixture.topic('Account.events'));
    return fixture.start(fixture.runtime().register(Account));
  }

  /** The events on the topic, once every record committed so far has been published. */
  async function events(topic = Account.eventsTopic) {
    await fixture.published();
    const out = [];
    const { partitions } = await fixture.log.describeTopic(topic);
    for (let partition = 0; partition < partitions; partition++) {
      out.push(...(await fixture.log.read(topic, partition, 0)));
    }
    return out;
  }

  it('commits the new state, the events and the reply of a command together', async () => {
    const runtime = await started();
    await expect(runtime.send(Account, 'alice', 'deposit', { amount: 30 })).resolves.toBe(30);
    expect(await runtime.state(Account, 'alice')).toMatchObject({ state: { balance: 30 }, version: 1 });
    const [event] = await events();
    expect(decodeJson(event!.value)).toEqual({ type: 'deposited', amount: 30 });
    expect(event!.headers).toMatchObject({
      'meridian-entity': 'Account',
      'meridian-entity-id': 'alice',
      'meridian-command': 'deposit',
      'meridian-entity-version': '1',
    });
    expect(new TextDecoder().decode(event!.key!)).toBe('alice');
  });

  it('changes nothing when the handler rejects the command, and gives the caller its error', async () => {
    const runtime = await started();
    await runtime.send(Account, 'bob', 'deposit', { amount: 5 });
    await expect(runtime.send(Account, 'bob', 'withdraw', { amount: 50 })).rejects.toThrow(
      'insufficient funds: 5 < 50',
    );
    expect(await runtime.state(Account, 'bob')).toMatchObject({ state: { balance: 5 }, version: 1 });
    expect(await events()).toHaveLength(1);
  });

  it('writes nothing when a result cannot be serialised, not even the events decided with it', async () => {
    const runtime = await started();
    await expect(runtime.send(Account, 'carol', 'corrupt', undefined)).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(await runtime.state(Account, 'carol')).toBeNull();
    expect(await events()).toHaveLength(0);
  });

  it('applies concurrent commands for one key one at a time: no update is lost', async () => {
    const runtime = await started();
    const replies = await Promise.all(
      Array.from({ length: 100 }, () => runtime.send(Account, 'hot', 'deposit', { amount: 1 })),
    );
    expect(new Set(replies).size).toBe(100);
    expect(await runtime.state(Account, 'hot')).toMatchObject({ state: { balance: 100 }, version: 100 });
    expect(await events()).toHaveLength(100);
  });

  it('answers a read-only command without writing a version', async () => {
    const runtime = await started();
    await expect(runtime.send(Account, 'nobody', 'balance', undefined)).resolves.toBe(0);
    expect(await runtime.state(Account, 'nobody')).toBeNull();
  });

  it('ends an entity by a command: its state is deleted with the events committed, which stay on the log', async () => {
    const runtime = await started();
    await runtime.send(Account, 'gil', 'deposit', { amount: 12 });
    await expect(runtime.send(Account, 'gil', 'close', undefined)).resolves.toBe(12);
    expect(await runtime.state(Account, 'gil')).toBeNull();
    const [deposited, closed] = await events();
    expect(decodeJson(deposited!.value)).toEqual({ type: 'deposited', amount: 12 });
    expect(decodeJson(closed!.value)).toEqual({ type: 'closed', finalBalance: 12 });
    expect(closed!.headers).toMatchObject({
      'meridian-entity-version': '1',
      'meridian-entity-deleted': 'true',
    });
    // The id starts afresh from the initial state.
    await expect(runtime.send(Account, 'gil', 'deposit', { amount: 1 })).resolves.toBe(1);
    expect(await runtime.state(Account, 'gil')).toMatchObject({ state: { balance: 1 }, version: 1 });
    // Deleting and writing state at once is refused, and changes nothing.
    await expect(runtime.send(Account, 'gil', 'closeBadly', undefined)).rejects.toThrow(
      "'delete' of command 'closeBadly' of entity 'Account' must be a boolean, and true only without 'state'",
    );
    expect(await runtime.state(Account, 'gil')).toMatchObject({ state: { balance: 1 }, version: 1 });
  });

  it('refuses an unknown command and an unregistered entity', async () => {
    const runtime = await started();
    await expect(runtime.send(Account, 'x', 'nope' as 'balance', undefined)).rejects.toThrow(
      "has no command 'nope'",
    );
    const Other = entity('Other', {
      initial: 0,
      commands: { set: (_s: number, input: number) => ({ state: input }) },
    });
    await expect(runtime.send(Other, 'x', 'set', 1)).rejects.toThrow("Entity 'Other' is not registered");
  });

  it('puts the caller’s trace on the events, each with a span of its own', async () => {
    const runtime = await started();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await runtime.send(Account, 'erin', 'deposit', { amount: 1 }, { traceparent });
    const [event] = await events();
    const child = parseTraceparent(event!.headers.traceparent)!;
    expect(child.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(child.spanId).not.toBe('00f067aa0ba902b7');
  });

  it('starts a new trace for a command sent without one', async () => {
    const runtime = await started();
    await runtime.send(Account, 'fay', 'deposit', { amount: 1 });
    const [event] = await events();
    expect(parseTraceparent(event!.headers.traceparent)).not.toBeNull();
  });
});

// Embedded only: one SQLite file has one owner, and a runtime opening it fences the one before.
// On the cluster shape a second node joins the group and takes some partitions instead; that
// fencing (per work partition) is tested in cluster.test.ts.
describe('entities on the embedded shape', () => {
  it('fences a superseded runtime: once another runtime opens the database, the old one cannot write', async () => {
    const clock = new ManualClock(1_000);
    const fixture = openEmbedded({ clock, timers: clock, random: seededRandom(1) });
    const Account = accountEntity('Account.events');
    const old = fixture.runtime().register(Account);
    await old.start();
    try {
      await old.send(Account, 'dave', 'deposit', { amount: 1 });
      const successor = fixture.runtime().register(Account);
      await successor.start();
      await expect(old.send(Account, 'dave', 'deposit', { amount: 1 })).rejects.toBeInstanceOf(FencedError);
      await expect(successor.send(Account, 'dave', 'deposit', { amount: 1 })).resolves.toBe(2);
    } finally {
      await fixture.destroy();
    }
  });
});
