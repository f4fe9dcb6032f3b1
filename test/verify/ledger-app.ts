// A test-only app for `meridian verify`'s own tests: accounts that take deposits, each deposit
// placed once through an idempotent route (the Idempotency-Key is the deposit's dedupe). With
// MERIDIAN_VERIFY_TEST_BUG=double-apply it has a planted bug: the route applies the deposit
// command twice, as a handler that retried its own send would. Nothing but the tests sets it.

import { Type } from '../../src/http/index.ts';
import { defineApp, entity } from '../../src/index.ts';

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
  definitions: [Account],
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
        await runtime.send(Account, request.params.accountId, 'deposit', request.body);
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
