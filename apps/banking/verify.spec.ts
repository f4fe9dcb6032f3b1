// The banking gateway's verification spec: `meridian verify apps/banking/verify.spec.ts --seed 3
// --duration 20s` runs `banking --policies on` as a real process while customers read their
// balances and try other customers' accounts, and the seed's faults kill -9 and restart it
// (with clock skew), slow auth to 5 s or make it fail half its calls, and duplicate and reorder
// requests. It checks what the case study is about: a slow auth does not hold the route up (no
// answer waits for it), a balance shown is the account's own and never another customer's, and
// each account's answers are linearizable against its (unchanging) balance.
// MERIDIAN_VERIFY_BANKING_POLICIES=off runs the naive route instead, which the first check fails.
import { join, resolve } from 'node:path';
import {
  type AppHandle,
  defineVerifySpec,
  type Model,
  type Operation,
  requestJson,
} from '../../src/chaos/index.ts';

const root = resolve(import.meta.dirname, '../..');
const customers = 20;
/** The longest an answer may take while auth takes 5 s: anything slower waited for auth. */
const answerWithinMs = 4000;
const policies = process.env.MERIDIAN_VERIFY_BANKING_POLICIES === 'off' ? 'off' : 'on';

/** The demo's seeded balance of `acc-<i>` (balance-service.ts): nothing changes it during a run. */
const balanceOf = (account: string) => 100_000 + Number(account.slice(4)) * 137;

interface Answer {
  status: number;
  accountId?: string;
  availableMinor?: number;
  degraded?: boolean;
}

/** An account's balance: a 200 answer shows exactly it; 503 (auth unavailable) shows nothing. */
const balanceModel: Model<number> = {
  init: balanceOf,
  step(state, _operation, output) {
    const answer = output as Answer | undefined;
    if (answer === undefined || answer.status !== 200) return state;
    return answer.availableMinor === state ? state : undefined;
  },
};

async function readBalance(app: AppHandle, account: string, token: string, signal: AbortSignal) {
  const answer = await requestJson(app, 'GET', `/mobile/balance/${account}`, {
    headers: { authorization: token },
    signal,
  });
  if (![200, 404, 503].includes(answer.status))
    throw new Error(`answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)}`);
  const body = answer.body as Partial<Answer>;
  return {
    status: 'ok' as const,
    output: {
      status: answer.status,
      accountId: body.accountId,
      availableMinor: body.availableMinor,
      degraded: body.degraded,
    },
  };
}

export default defineVerifySpec<Record<string, never>>({
  name: 'banking',
  description: `banking gateway, policies ${policies}: balances behind auth`,
  start: ({ port }) => ({
    command: process.execPath,
    args: [join(root, 'apps/banking/main.ts'), '--port', String(port), '--policies', policies],
    cwd: root,
  }),
  ready: /listening on (http:\/\/\S+)\s+operator API key \(this run only\): (?<operatorKey>\S+)/,
  workload: {
    workers: 4,
    next(random) {
      const customer = Math.floor(random.next() * customers);
      if (random.next() < 0.85)
        return { kind: 'balance', key: `acc-${customer}`, input: { token: `token-cust-${customer}` } };
      const other = (customer + 1 + Math.floor(random.next() * (customers - 1))) % customers;
      return { kind: 'intrusion', key: `acc-${other}`, input: { token: `token-cust-${customer}` } };
    },
    invoke: (app, operation, signal) =>
      readBalance(app, operation.key!, (operation.input as { token: string }).token, signal),
    duplicable: () => true,
  },
  async dependency(app, mode) {
    const settings = {
      healthy: { latencyMs: 2, failureRate: 0 },
      slow: { latencyMs: 5000, failureRate: 0 },
      failing: { latencyMs: 2, failureRate: 0.5 },
    }[mode];
    const answer = await requestJson(app, 'PUT', '/admin/auth', {
      body: settings,
      headers: { 'x-api-key': app.ready.operatorKey ?? '' },
    });
    if (answer.status !== 200) throw new Error(`PUT /admin/auth answered ${answer.status}`);
  },
  collect: async () => ({}),
  invariants: {
    linearizable: { model: balanceModel, kinds: ['balance'] },
    custom: [
      {
        name: 'a slow auth does not hold answers up',
        check: (_final, operations) =>
          operations
            .filter(
              // Indeterminate ones too: an answer that never came within the run's 5 s timeout waited.
              (operation) =>
                operation.status !== 'fail' &&
                operation.completedAtMs! - operation.invokedAtMs > answerWithinMs,
            )
            .map((operation) => ({
              message: `op ${operation.id} took ${operation.completedAtMs! - operation.invokedAtMs} ms (bound ${answerWithinMs} ms): it waited for auth`,
              operations: [operation.id],
            })),
      },
      {
        name: "a balance shown is the caller's own account",
        check: (_final, operations) =>
          operations
            .filter((operation: Operation) => {
              const answer = operation.output as Answer | undefined;
              if (operation.status !== 'ok' || answer === undefined) return false;
              return operation.kind === 'intrusion'
                ? answer.status === 200
                : answer.status === 200 && answer.accountId !== operation.key;
            })
            .map((operation) => ({
              message: `op ${operation.id} (${operation.kind} ${operation.key}) was shown ${JSON.stringify(operation.output)}`,
              operations: [operation.id],
            })),
      },
    ],
  },
  replayEnv: ['MERIDIAN_VERIFY_BANKING_POLICIES'],
});
