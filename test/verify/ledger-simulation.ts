// The ledger's simulation spec: accounts taking deposits, hosted in-process by the simulation
// (src/chaos/simulation.ts). The Account entity dedupes a deposit by its id, as a consumer must
// when the network may deliver a command twice; `planted: 'no-dedupe'` is the bug class "a
// consumed record applied twice" put back: the check is skipped, so a duplicated delivery
// applies again. A subscription copies each applied deposit from the Account's events onto the
// account's Statement (once: it runs with exactly-once effects), and `statement-matches-ledger`
// checks that every deposit is on the statement exactly as often as on the account: the
// invariant a core bug in the subscription path (such as the planted `offsets-apart`,
// src/planted-bugs.ts) breaks.
import type { Model, SimulationSpec } from '../../src/chaos/index.ts';
import { entity, subscription } from '../../src/index.ts';
import { plantedBug, plantedBugVariable } from '../../src/planted-bugs.ts';

/** The variables a replay repeats: the test app's bug, and a bug planted in core with its NODE_ENV=test. */
export const plantedReplayEnv =
  plantedBug === undefined
    ? ['MERIDIAN_VERIFY_TEST_BUG']
    : ['NODE_ENV', plantedBugVariable, 'MERIDIAN_VERIFY_TEST_BUG'];

interface AccountState {
  balance: number;
  deposits: Record<string, number>;
}

/** An account as the run reads it at the end: its state and its statement (deposit id → times copied). */
interface AccountFinal extends AccountState {
  statement: Record<string, number>;
}

interface Deposit {
  depositId: string;
  amount: number;
}

const accounts = ['acc-0', 'acc-1'];

/** An account: a deposit adds its amount once (a second delivery of the same id changes nothing); a read returns the balance. */
export const accountModel: Model<{ balance: number; applied: string[] }> = {
  init: () => ({ balance: 0, applied: [] }),
  step(state, operation, output) {
    if (operation.kind === 'deposit') {
      const { depositId, amount } = operation.input as Deposit;
      if (state.applied.includes(depositId)) return state;
      return { balance: state.balance + amount, applied: [...state.applied, depositId].sort() };
    }
    if (output === undefined) return state;
    return (output as { balance: number }).balance === state.balance ? state : undefined;
  },
};

export function ledgerSimulation(
  options: { planted?: 'no-dedupe'; operations?: number } = {},
): SimulationSpec<Record<string, AccountFinal>> {
  const Account = entity('SimAccount', {
    initial: (): AccountState => ({ balance: 0, deposits: {} }),
    commands: {
      deposit(state: AccountState, input: Deposit) {
        if (options.planted !== 'no-dedupe' && state.deposits[input.depositId] !== undefined)
          return { state };
        return {
          state: {
            balance: state.balance + input.amount,
            deposits: { ...state.deposits, [input.depositId]: (state.deposits[input.depositId] ?? 0) + 1 },
          },
          events: [{ depositId: input.depositId, amount: input.amount }],
        };
      },
    },
  });
  const Statement = entity('SimStatement', {
    initial: (): Record<string, number> => ({}),
    commands: {
      copy: (state: Record<string, number>, input: { depositId: string }) => ({
        state: { ...state, [input.depositId]: (state[input.depositId] ?? 0) + 1 },
      }),
    },
  });
  const statements = subscription('sim-statements', {
    topic: Account.eventsTopic,
    partitions: 2,
    async handler(record, ctx) {
      const deposit = record.json<{ depositId: string; amount: number }>();
      // The statement service fails the first attempt of some deposits (a flaky dependency): the
      // record is retried, and the records behind it in its partition wait for it.
      if (ctx.attempt === 1 && deposit.amount % 5 === 0) throw new Error('the statement service is unavailable');
      await ctx.send(Statement, record.keyText()!, 'copy', { depositId: deposit.depositId });
    },
  });
  return {
    name: 'ledger',
    replayEnv: plantedReplayEnv,
    definitions: [Account, Statement, statements],
    workload: {
      workers: 3,
      operations: options.operations ?? 12,
      next(random, { worker, index }) {
        const key = accounts[Math.floor(random.next() * accounts.length)]!;
        if (random.next() < 0.6) {
          return {
            kind: 'deposit',
            key,
            input: { depositId: `d${worker}-${index}`, amount: 1 + Math.floor(random.next() * 50) },
          };
        }
        return { kind: 'read', key };
      },
      async invoke(runtime, operation) {
        if (operation.kind === 'deposit') {
          await runtime.send(Account, operation.key!, 'deposit', operation.input as Deposit);
          return { status: 'ok' };
        }
        const found = await runtime.state(Account, operation.key!);
        return { status: 'ok', output: { balance: found?.state.balance ?? 0 } };
      },
      duplicable: (request) => request.kind === 'deposit',
    },
    async collect(runtime) {
      const final: Record<string, AccountFinal> = {};
      for (const account of accounts) {
        const state = (await runtime.state(Account, account))?.state ?? { balance: 0, deposits: {} };
        final[account] = { ...state, statement: (await runtime.state(Statement, account))?.state ?? {} };
      }
      return final;
    },
    invariants: {
      effects: {
        id: (operation) =>
          operation.kind === 'deposit' ? (operation.input as Deposit).depositId : undefined,
        counts: (final) =>
          new Map(Object.values(final).flatMap((account) => Object.entries(account.deposits))),
      },
      linearizable: { kinds: ['deposit', 'read'], model: accountModel },
      custom: [
        {
          name: 'statement-matches-ledger',
          check: (final) =>
            Object.entries(final).flatMap(([account, { deposits, statement }]) =>
              [...new Set([...Object.keys(deposits), ...Object.keys(statement)])]
                .filter((id) => (deposits[id] ?? 0) !== (statement[id] ?? 0))
                .map(
                  (id) =>
                    `deposit ${id} of ${account} is on its statement ${statement[id] ?? 0} times but applied ${deposits[id] ?? 0} times`,
                ),
            ),
        },
      ],
    },
  };
}
