// The verify spec of the test-only ledger app (ledger-app.ts): deposits through an idempotent
// route, duplicated and reordered, the app killed and restarted, and reads of the balance. Each
// deposit must exist exactly once, and each account's deposits and reads must be linearizable.
// Its route relies on the Idempotency-Key alone (so a bug in the key's handling shows): a request
// that dies with the app and is retried after the key's 30 s lease runs again, so a run much
// longer than the lease can apply a deposit twice by design (docs/http.md, "Leases");
// ledger-cluster.spec.ts, whose nodes die under requests all the time, goes through a saga.
import { join, resolve } from 'node:path';
import { completionOf, defineVerifySpec, type Operation, requestJson } from '../../src/chaos/index.ts';
import type { AccountState } from './ledger-app.ts';
import { accountModel, ledgerSimulation, plantedReplayEnv } from './ledger-simulation.ts';

const root = resolve(import.meta.dirname, '../..');
const accounts = ['acc-0', 'acc-1', 'acc-2'];

type Final = Record<string, AccountState>;

interface Deposit {
  depositId: string;
  amount: number;
}

export default defineVerifySpec<Final>({
  name: 'verify-ledger',
  start: ({ dataDir, port }) => ({
    command: process.execPath,
    args: [
      join(root, 'src/cli/main.ts'),
      'dev',
      join(root, 'test/verify/ledger-app.ts'),
      '--auth',
      'off',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
    ],
    cwd: root,
    env: { PORT: '' },
  }),
  ready: /App 'verify-ledger' listening on (http:\/\/\S+)/,
  workload: {
    workers: 3,
    next(random, { worker, index }) {
      const key = accounts[Math.floor(random.next() * accounts.length)]!;
      if (random.next() < 0.6) {
        return {
          kind: 'deposit',
          key,
          input: { depositId: `d${worker}-${index}`, amount: 1 + Math.floor(random.next() * 100) },
        };
      }
      return { kind: 'read', key };
    },
    async invoke(app, operation, signal) {
      if (operation.kind === 'deposit') {
        const deposit = operation.input as Deposit;
        const answer = await requestJson(app, 'POST', `/accounts/${operation.key}/deposits`, {
          body: deposit,
          headers: { 'idempotency-key': deposit.depositId },
          signal,
        });
        return completionOf(answer, [200], (body) => body);
      }
      const answer = await requestJson(app, 'GET', `/accounts/${operation.key}`, { signal });
      return completionOf(answer, [200], (body) => ({ balance: (body as AccountState).balance }));
    },
    duplicable: (operation) => operation.kind === 'deposit',
  },
  async collect(app) {
    const final: Final = {};
    for (const account of accounts) {
      const answer = await requestJson(app, 'GET', `/accounts/${account}`);
      if (answer.status !== 200) throw new Error(`GET /accounts/${account} answered ${answer.status}`);
      final[account] = answer.body as AccountState;
    }
    return final;
  },
  invariants: {
    effects: {
      id: (operation: Operation) =>
        operation.kind === 'deposit' ? (operation.input as Deposit).depositId : undefined,
      counts: (final) => new Map(Object.values(final).flatMap((account) => Object.entries(account.deposits))),
    },
    linearizable: { model: accountModel, kinds: ['deposit', 'read'] },
    custom: [
      {
        name: 'balance-is-its-deposits',
        check(final, operations) {
          const amounts = new Map<string, number>();
          for (const operation of operations) {
            if (operation.kind === 'deposit')
              amounts.set((operation.input as Deposit).depositId, (operation.input as Deposit).amount);
          }
          return Object.entries(final).flatMap(([account, state]) => {
            const expected = Object.entries(state.deposits).reduce(
              (sum, [id, times]) => sum + (amounts.get(id) ?? 0) * times,
              0,
            );
            return expected === state.balance
              ? []
              : [`${account} holds ${state.balance} but its deposits add up to ${expected}`];
          });
        },
      },
    ],
  },
  replayEnv: plantedReplayEnv,
});

/**
 * The same ledger in simulation (`meridian verify test/verify/ledger.spec.ts --simulate`);
 * MERIDIAN_VERIFY_TEST_BUG=no-dedupe plants its bug (a delivered command applied twice).
 */
export const simulation = ledgerSimulation(
  process.env.MERIDIAN_VERIFY_TEST_BUG === 'no-dedupe' ? { planted: 'no-dedupe' } : {},
);
