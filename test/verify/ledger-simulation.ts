// The ledger's simulation spec: accounts taking deposits, hosted in-process by the simulation
// (src/chaos/simulation.ts). The Account entity dedupes a deposit by its id, as a consumer must
// when the network may deliver a command twice; `planted: 'no-dedupe'` is the bug class "a
// consumed record applied twice" put back: the check is skipped, so a duplicated delivery
// applies again. A subscription copies each applied deposit from the Account's events onto the
// account's Statement (once: it runs with exactly-once effects), and `statement-matches-ledger`
// checks that every deposit is on the statement exactly as often as on the account: the
// invariant a core bug in the subscription path (such as the planted `offsets-apart`,
// src/planted-bugs.ts) breaks. A Transfer saga moves money between two savings accounts (a
// withdrawal, then a deposit, each a step of the saga): a transfer is all or nothing, and an
// acknowledged one is credited exactly once — what a core bug in saga journaling breaks.
import type { Model, SagaState, SimulationSpec } from '../../src/chaos/index.ts';
import { entity, saga, subscription } from '../../src/index.ts';
import { plantedBug, plantedBugVariable } from '../../src/planted-bugs.ts';
import { endedSagaStatuses } from '../../src/store/index.ts';

/** The variables a replay repeats: the test app's bug, and a bug planted in core with its NODE_ENV=test. */
export const plantedReplayEnv =
  plantedBug === undefined
    ? ['MERIDIAN_VERIFY_TEST_BUG']
    : ['NODE_ENV', plantedBugVariable, 'MERIDIAN_VERIFY_TEST_BUG'];

interface AccountState {
  balance: number;
  /** Deposit id (or transfer id, for a transfer's credit) → times applied. */
  deposits: Record<string, number>;
  /** Transfer id → times withdrawn. */
  withdrawals?: Record<string, number>;
}

/** An account as the run reads it at the end: its state and its statement (deposit id → times copied). */
interface AccountFinal extends AccountState {
  statement: Record<string, number>;
}

/** What the run reads at the end: every account, and every transfer saga. */
export interface LedgerFinal {
  accounts: Record<string, AccountFinal>;
  transfers: SagaState[];
}

interface Deposit {
  depositId: string;
  amount: number;
}

interface Transfer {
  transferId: string;
  from: string;
  to: string;
  amount: number;
}

/** Accounts taking deposits and reads (each a linearizable register of its balance). */
const accounts = ['acc-0', 'acc-1'];
/** Savings accounts only transfers move money between (they may go below zero). */
const savings = ['sav-0', 'sav-1'];

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

/** Transfers whose withdrawal and credit disagree: all or nothing, and each at most once. */
function halfDoneTransfers(final: LedgerFinal): string[] {
  const withdrawn = new Map<string, number>();
  const credited = new Map<string, number>();
  for (const account of savings) {
    const state = final.accounts[account]!;
    for (const [id, times] of Object.entries(state.withdrawals ?? {})) withdrawn.set(id, times);
    for (const [id, times] of Object.entries(state.deposits)) credited.set(id, times);
  }
  return [...new Set([...withdrawn.keys(), ...credited.keys()])]
    .filter((id) => (withdrawn.get(id) ?? 0) !== 1 || (credited.get(id) ?? 0) !== 1)
    .map(
      (id) =>
        `transfer ${id} was withdrawn ${withdrawn.get(id) ?? 0} times and credited ${credited.get(id) ?? 0} times`,
    );
}

function definitions(planted: 'no-dedupe' | undefined) {
  const Account = entity('SimAccount', {
    initial: (): AccountState => ({ balance: 0, deposits: {} }),
    commands: {
      deposit(state: AccountState, input: Deposit) {
        if (planted !== 'no-dedupe' && state.deposits[input.depositId] !== undefined) return { state };
        return {
          state: {
            ...state,
            balance: state.balance + input.amount,
            deposits: { ...state.deposits, [input.depositId]: (state.deposits[input.depositId] ?? 0) + 1 },
          },
          events: [{ depositId: input.depositId, amount: input.amount }],
        };
      },
      withdraw(state: AccountState, input: { transferId: string; amount: number }) {
        const withdrawals = state.withdrawals ?? {};
        if (withdrawals[input.transferId] !== undefined) return { state };
        return {
          state: {
            ...state,
            balance: state.balance - input.amount,
            withdrawals: { ...withdrawals, [input.transferId]: 1 },
          },
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
      if (ctx.attempt === 1 && deposit.amount % 5 === 0)
        throw new Error('the statement service is unavailable');
      await ctx.send(Statement, record.keyText()!, 'copy', { depositId: deposit.depositId });
    },
  });
  const Transfers = saga('SimTransfer', async (ctx, input: Transfer) => {
    await ctx.send(Account, input.from, 'withdraw', { transferId: input.transferId, amount: input.amount });
    await ctx.send(Account, input.to, 'deposit', { depositId: input.transferId, amount: input.amount });
  });
  return { Account, Statement, statements, Transfers };
}

export function ledgerSimulation(
  options: { planted?: 'no-dedupe'; operations?: number } = {},
): SimulationSpec<LedgerFinal> {
  const { Account, Statement, statements, Transfers } = definitions(options.planted);
  return {
    name: 'ledger',
    replayEnv: plantedReplayEnv,
    definitions: [Account, Statement, statements, Transfers],
    workload: {
      workers: 3,
      operations: options.operations ?? 12,
      next(random, { worker, index }) {
        const key = accounts[Math.floor(random.next() * accounts.length)]!;
        const roll = random.next();
        if (roll < 0.5) {
          return {
            kind: 'deposit',
            key,
            input: { depositId: `d${worker}-${index}`, amount: 1 + Math.floor(random.next() * 50) },
          };
        }
        if (roll < 0.7) {
          const from = Math.floor(random.next() * savings.length);
          const transfer: Transfer = {
            transferId: `t${worker}-${index}`,
            from: savings[from]!,
            to: savings[1 - from]!,
            amount: 1 + Math.floor(random.next() * 50),
          };
          return { kind: 'transfer', key: transfer.from, input: transfer };
        }
        return { kind: 'read', key };
      },
      async invoke(runtime, operation) {
        if (operation.kind === 'deposit') {
          await runtime.send(Account, operation.key!, 'deposit', operation.input as Deposit);
          return { status: 'ok' };
        }
        if (operation.kind === 'transfer') {
          // Acknowledged once the saga is durably started; it ends on its own.
          const transfer = operation.input as Transfer;
          await runtime.startSaga(Transfers, transfer.transferId, transfer);
          return { status: 'ok' };
        }
        const found = await runtime.state(Account, operation.key!);
        return { status: 'ok', output: { balance: found?.state.balance ?? 0 } };
      },
      duplicable: (request) => request.kind === 'deposit' || request.kind === 'transfer',
    },
    async collect(runtime) {
      const final: LedgerFinal = { accounts: {}, transfers: [] };
      for (const account of [...accounts, ...savings]) {
        const state = (await runtime.state(Account, account))?.state ?? { balance: 0, deposits: {} };
        final.accounts[account] = {
          ...state,
          statement: (await runtime.state(Statement, account))?.state ?? {},
        };
      }
      for (const record of await runtime.sagas({ type: Transfers.name })) {
        final.transfers.push({
          id: record.id,
          status: record.status,
          terminal: endedSagaStatuses.has(record.status),
          effectId: record.id,
        });
      }
      return final;
    },
    invariants: {
      effects: {
        id: (operation) =>
          operation.kind === 'deposit'
            ? (operation.input as Deposit).depositId
            : operation.kind === 'transfer'
              ? (operation.input as Transfer).transferId
              : undefined,
        counts: (final) =>
          new Map(Object.values(final.accounts).flatMap((account) => Object.entries(account.deposits))),
      },
      sagas: { list: (final) => final.transfers, terminalWithinMs: 10_000 },
      linearizable: { kinds: ['deposit', 'read'], model: accountModel },
      custom: [
        {
          name: 'statement-matches-ledger',
          check: (final) =>
            Object.entries(final.accounts).flatMap(([account, { deposits, statement }]) =>
              [...new Set([...Object.keys(deposits), ...Object.keys(statement)])]
                .filter((id) => (deposits[id] ?? 0) !== (statement[id] ?? 0))
                .map(
                  (id) =>
                    `deposit ${id} of ${account} is on its statement ${statement[id] ?? 0} times but applied ${deposits[id] ?? 0} times`,
                ),
            ),
        },
        { name: 'transfer-all-or-nothing', check: halfDoneTransfers },
      ],
    },
  };
}
