// The ledger's simulation spec: accounts taking deposits, hosted in-process by the simulation
// (src/chaos/simulation.ts). The Account entity dedupes a deposit by its id, as a consumer must
// when the network may deliver a command twice; `planted: 'no-dedupe'` is the bug class "a
// consumed record applied twice" put back: the check is skipped, so a duplicated delivery
// applies again.
import type { Model, SimulationSpec } from '../../src/chaos/index.ts';
import { entity } from '../../src/index.ts';

interface AccountState {
  balance: number;
  deposits: Record<string, number>;
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
): SimulationSpec<Record<string, AccountState>> {
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
        };
      },
    },
  });
  return {
    name: 'ledger',
    replayEnv: ['MERIDIAN_VERIFY_TEST_BUG'],
    definitions: [Account],
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
      const final: Record<string, AccountState> = {};
      for (const account of accounts) {
        final[account] = (await runtime.state(Account, account))?.state ?? { balance: 0, deposits: {} };
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
    },
  };
}
