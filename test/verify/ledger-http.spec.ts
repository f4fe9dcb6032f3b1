// The ledger's HTTP face, in simulation only (`meridian verify test/verify/ledger-http.spec.ts
// --simulate`): the routes run on Meridian's gateway and cache inside the simulation, where the
// in-process ledger (ledger-simulation.ts) calls the runtime directly. It reaches two seams the
// other cannot, and two bugs planted there (src/planted-bugs.ts):
// - a deposit is placed once by its Idempotency-Key alone (the command does not dedupe, as in
//   ledger-app.ts), after a risk check that sometimes hangs until the handler gives up (503, the
//   key released) while the client, tired of waiting, retries with the same key: the attempts of
//   one deposit then overlap, and only the reservation's token keeps a failed one from releasing
//   the key its successor holds ('idempotency-released' breaks exactly-once);
// - each deposit writes the account's new view (its balance, read back, with the owner's profile
//   from a service answering within 40 ms) through an in-process cache that reads also go
//   through: two deposits' writes may land out of order, and only the cache's version check
//   keeps the older from replacing the newer ('cache-stale-set' breaks linearizable reads).
// Every successful attempt ends within the route's lease (a risk check and a profile, each under
// 40 ms, in a lease of 100 ms), so without a planted bug the run holds.

import { simulatedGateway } from '../../src/app/simulated-gateway.ts';
import { createCache } from '../../src/cache/index.ts';
import type {
  Completion,
  Operation,
  SimulatedServices,
  SimulationClient,
  SimulationSpec,
} from '../../src/chaos/index.ts';
import type { Gateway } from '../../src/http/gateway.ts';
import { statusProblem } from '../../src/http/index.ts';
import { entity } from '../../src/index.ts';
import { accountParams, depositBody } from './ledger-app.ts';
import { accountModel, plantedReplayEnv } from './ledger-simulation.ts';

const accounts = ['acc-0', 'acc-1'];
/** The deposit route's lease; a successful attempt takes under 80 ms. */
const leaseMs = 100;
/** How long the handler waits for the risk service before giving up with a 503. */
const riskTimeoutMs = 150;
/** How long a client waits for an answer before it sends the request again, with the same key. */
const clientTimeoutMs = 120;
/** How long a client waits after a 409 (the key is in flight) or a 5xx before it asks again. */
const retryAfterMs = 20;
const maxAttempts = 8;

interface AccountState {
  balance: number;
  /** Deposit id → times applied: one means once. */
  deposits: Record<string, number>;
}

interface Deposit {
  depositId: string;
  amount: number;
}

/** What the cache holds and reads answer: the balance at the account's version, with its owner. */
interface AccountView {
  balance: number;
  version: number;
  owner: string;
}

const Account = entity('HttpAccount', {
  initial: (): AccountState => ({ balance: 0, deposits: {} }),
  commands: {
    // No dedupe by deposit id: the route's Idempotency-Key is the deposit's only guard.
    deposit: (state: AccountState, input: Deposit) => ({
      state: {
        balance: state.balance + input.amount,
        deposits: { ...state.deposits, [input.depositId]: (state.deposits[input.depositId] ?? 0) + 1 },
      },
    }),
  },
});

/** The risk service: answers within 40 ms, or (one call in four) not at all, and the handler gives up. */
async function riskCheck({ random, sleep }: SimulatedServices): Promise<void> {
  if (random.next() < 0.25) {
    await sleep(riskTimeoutMs);
    throw statusProblem(
      503,
      `The risk service did not answer within ${riskTimeoutMs} ms; retry with the same Idempotency-Key`,
    );
  }
  await sleep(Math.floor(random.next() * 40));
}

/** The account's view: its committed state, then its owner's profile (a service answering within 40 ms). */
async function readView(services: SimulatedServices, accountId: string): Promise<AccountView> {
  const found = await services.runtime.state(Account, accountId);
  await services.sleep(Math.floor(services.random.next() * 40));
  return { balance: found?.state.balance ?? 0, version: found?.version ?? 0, owner: `owner of ${accountId}` };
}

function routes(gateway: Gateway, services: SimulatedServices): void {
  // In process: each runtime (a process of the app) has a cache of its own.
  const views = createCache<AccountView>({
    name: 'account-views',
    ttlMs: 60_000,
    clock: services.clock,
    versionOf: (view) => view.version,
  });
  gateway.route({
    method: 'POST',
    url: '/accounts/:accountId/deposits',
    idempotent: true,
    idempotencyLeaseMs: leaseMs,
    schema: {
      params: accountParams,
      body: depositBody,
    },
    handler: async (request) => {
      const { accountId } = request.params;
      await riskCheck(services);
      await services.runtime.send(Account, accountId, 'deposit', request.body);
      // Write-through. The deposit is made: failing now would release the key and let a retry
      // deposit again, so a view that cannot be read is dropped instead.
      try {
        await views.set(accountId, await readView(services, accountId));
      } catch {
        await views.delete(accountId);
      }
      return { depositId: request.body.depositId };
    },
  });
  gateway.route({
    method: 'GET',
    url: '/accounts/:accountId',
    schema: { params: accountParams },
    handler: (request) => views.get(request.params.accountId, (accountId) => readView(services, accountId)),
  });
}

/** A client placing a deposit: it retries a timeout, a 409 and a 5xx with the same key, a few times. */
async function deposit(client: SimulationClient, operation: Operation): Promise<Completion> {
  const body = operation.input as Deposit;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const sent = client.http({
      method: 'POST',
      url: `/accounts/${operation.key}/deposits`,
      body,
      headers: { 'idempotency-key': body.depositId },
    });
    // An attempt given up on goes on in the app; whatever becomes of it, the client has moved on.
    sent.catch(() => undefined);
    const answer = await Promise.race([sent, client.sleep(clientTimeoutMs).then(() => undefined)]);
    if (answer === undefined) continue;
    if (answer.status === 200) return { status: 'ok' };
    if (answer.status !== 409 && answer.status < 500)
      return { status: 'fail', error: `answered ${answer.status}` };
    await client.sleep(retryAfterMs);
  }
  throw new Error(`deposit ${body.depositId} had no answer in ${maxAttempts} attempts`);
}

async function read(client: SimulationClient, operation: Operation): Promise<Completion> {
  const answer = await client.http({ method: 'GET', url: `/accounts/${operation.key}` });
  if (answer.status !== 200) return { status: 'fail', error: `answered ${answer.status}` };
  return { status: 'ok', output: { balance: (answer.body as AccountView).balance } };
}

export const simulation: SimulationSpec<Record<string, AccountState>> = {
  name: 'ledger-http',
  replayEnv: plantedReplayEnv,
  definitions: [Account],
  http: simulatedGateway(routes),
  workload: {
    workers: 3,
    operations: 12,
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
    invoke: (_runtime, operation, client) =>
      operation.kind === 'deposit' ? deposit(client, operation) : read(client, operation),
    duplicable: (request) => request.kind === 'deposit',
  },
  async collect(runtime) {
    const final: Record<string, AccountState> = {};
    for (const account of accounts)
      final[account] = (await runtime.state(Account, account))?.state ?? { balance: 0, deposits: {} };
    return final;
  },
  invariants: {
    effects: {
      id: (operation) => (operation.kind === 'deposit' ? (operation.input as Deposit).depositId : undefined),
      counts: (final) => new Map(Object.values(final).flatMap((account) => Object.entries(account.deposits))),
    },
    linearizable: { kinds: ['deposit', 'read'], model: accountModel },
  },
};
