// A test-only app for `meridian verify`'s own tests: accounts that take deposits, each deposit
// placed once through an idempotent route (and, with MERIDIAN_LEDGER_DEPOSITS=saga, a saga named
// by the deposit). With
// MERIDIAN_VERIFY_TEST_BUG=double-apply it has a planted bug: the route also sends the deposit
// command itself, so it applies twice. Nothing but the tests sets it.

import { Type } from '../../src/http/index.ts';
import { defineApp, entity, saga } from '../../src/index.ts';

export interface AccountState {
  balance: number;
  /** How many times each deposit was applied: one means once. */
  deposits: Record<string, number>;
}

export const Account = entity('Account', {
  initial: (): AccountState => ({ balance: 0, deposits: {} }),
  commands: {
    deposit(state: AccountState, input: { depositId: string; amount: number }) {
      return {
        state: {
          balance: state.balance + input.amount,
          deposits: { ...state.deposits, [input.depositId]: (state.deposits[input.depositId] ?? 0) + 1 },
        },
      };
    },
  },
});

/**
 * A deposit as a saga named by its account and deposit id. The route starts it and waits for it;
 * a retry that takes the request's Idempotency-Key over (its first attempt died with its node
 * and the key's lease ran out) starts the same saga again — idempotent on its id — so the
 * deposit applies once. The key alone does not give that (docs/http.md, "Leases": the retry runs
 * the handler again): when the route sent the command itself, `meridian verify`'s cluster run
 * found deposits applied twice.
 */
export const Deposit = saga(
  'Deposit',
  async (ctx, input: { accountId: string; depositId: string; amount: number }) => {
    await ctx.send(Account, input.accountId, 'deposit', { depositId: input.depositId, amount: input.amount });
    return { depositId: input.depositId };
  },
);

/**
 * How the route applies a deposit, read once at start: the command itself (the default), which
 * relies on the Idempotency-Key alone, so a bug in the key's handling shows as a deposit applied
 * twice (the single-process spec and its plants); or, with MERIDIAN_LEDGER_DEPOSITS=saga, through
 * the Deposit saga, which survives a takeover of the key (the cluster spec).
 */
const depositsThroughSagas = process.env.MERIDIAN_LEDGER_DEPOSITS === 'saga';

/** The planted bug, read once at start: only the verify tests set it. */
export const plantedBug = process.env.MERIDIAN_VERIFY_TEST_BUG;

export const accountParams = Type.Object({ accountId: Type.String({ pattern: '^[a-z0-9-]{1,64}$' }) });

/** A deposit's body: its id (the dedupe) and amount. */
export const depositBody = Type.Object(
  {
    depositId: Type.String({ maxLength: 100 }),
    amount: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  },
  { additionalProperties: false },
);

export default defineApp({
  name: 'verify-ledger',
  description: 'Accounts taking deposits: the app the verify tests plant bugs in.',
  definitions: [Account, Deposit],
  routes(gateway, { runtime }) {
    gateway.route({
      method: 'POST',
      url: '/accounts/:accountId/deposits',
      idempotent: true,
      schema: {
        params: accountParams,
        body: depositBody,
      },
      handler: async (request) => {
        const { accountId } = request.params;
        if (depositsThroughSagas) {
          const sagaId = `${accountId}.${request.body.depositId}`;
          await (await runtime.startSaga(Deposit, sagaId, { accountId, ...request.body })).result();
        } else {
          await runtime.send(Account, accountId, 'deposit', request.body);
        }
        if (plantedBug === 'double-apply')
          await runtime.send(Account, request.params.accountId, 'deposit', request.body);
        return { depositId: request.body.depositId };
      },
    });
    gateway.route({
      method: 'GET',
      url: '/accounts/:accountId',
      schema: { params: accountParams },
      handler: async (request) =>
        (await runtime.state(Account, request.params.accountId))?.state ?? { balance: 0, deposits: {} },
    });
  },
});
