// Definitions are typed so that `send` checks a command's name and input and returns its reply
// type (the @ts-expect-error lines fail type-checking if a wrong call were accepted), and they
// refuse bad names and shapes when they are made, not when they first run.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { entity, type SagaContext, saga, subscription } from './definitions.ts';

interface Stock {
  available: number;
}

const Inventory = entity('Inventory', {
  initial: (): Stock => ({ available: 3 }),
  commands: {
    reserve(state, input: { qty: number }) {
      return {
        state: { available: state.available - input.qty },
        reply: { left: state.available - input.qty },
      };
    },
    peek(state) {
      return { reply: state.available };
    },
  },
});

describe('typed definitions', () => {
  it('types ctx.send from the entity: command names, inputs and replies', () => {
    // Only type-checked: the function is never called.
    const typed = async (ctx: SagaContext) => {
      const reserved = await ctx.send(Inventory, 'sku', 'reserve', { qty: 1 });
      expectTypeOf(reserved).toEqualTypeOf<{ left: number }>();
      expectTypeOf(await ctx.send(Inventory, 'sku', 'peek', undefined)).toEqualTypeOf<number>();
      // @ts-expect-error the input of 'reserve' is { qty: number }
      await ctx.send(Inventory, 'sku', 'reserve', { qty: 'one' });
      // @ts-expect-error 'restock' is not a command of Inventory
      await ctx.send(Inventory, 'sku', 'restock', {});
      await ctx.send(
        Inventory,
        'sku',
        'reserve',
        { qty: 1 },
        {
          // The compensation is a command of the same entity, its input may use the reply.
          compensate: { command: 'reserve', input: (reply) => ({ qty: -reply.left }) },
        },
      );
    };
    expect(typeof typed).toBe('function');
  });

  it('types a step result and its compensation from the step function', () => {
    const typed = async (ctx: SagaContext) => {
      const charge = await ctx.step('charge', async () => ({ paymentId: 'p' }), {
        compensate: (_step, result) => {
          expectTypeOf(result).toEqualTypeOf<{ paymentId: string }>();
        },
      });
      expectTypeOf(charge).toEqualTypeOf<{ paymentId: string }>();
    };
    expect(typeof typed).toBe('function');
  });

  it('gives each entity its own copy of an initial value', () => {
    const Counter = entity('Counter', {
      initial: { n: 0 },
      commands: { get: (state) => ({ reply: state.n }) },
    });
    const first = Counter.initialState('a');
    first.n = 99;
    expect(Counter.initialState('b')).toEqual({ n: 0 });
    expect(Counter.eventsTopic).toBe('Counter.events');
  });

  it('refuses bad names and shapes when a definition is made', () => {
    expect(() => entity('bad name', { initial: 0, commands: { a: () => ({}) } })).toThrow(ValidationError);
    expect(() => entity('Empty', { initial: 0, commands: {} })).toThrow(/at least one command/);
    expect(() => entity('Big', { initial: 0, commands: { a: () => ({}) }, partitions: 2000 })).toThrow(
      "'partitions' must be <= 1024: current value is 2000",
    );
    expect(() => saga('$internal', async () => 0)).toThrow(ValidationError);
    expect(() => subscription('s', { topic: 'has space', handler: () => {} })).toThrow(ValidationError);
    expect(() => subscription('s', { topic: 't', handler: () => {}, maxRecordsPerBatch: 0 })).toThrow(
      "'maxRecordsPerBatch' must be >= 1: current value is 0",
    );
  });
});
