// The commerce app's verification spec: `meridian verify apps/commerce/verify.spec.ts --seed 7
// --duration 20s` runs `commerce demo` as a real process under seeded faults (kill -9 and
// restart with clock skew, a slow or failing payment provider, duplicated and reordered
// deliveries) and checks: every acknowledged order exists exactly once, every order ends
// (confirmed or cancelled) within 30 s of the faults healing, the inventory entity's commands are
// linearizable per SKU, and the app's own invariants (no oversell, no double charge, charged iff
// confirmed; invariants.ts) hold. docs/verify.md walks through it.
import { join, resolve } from 'node:path';
import {
  type AppHandle,
  completionOf,
  defineVerifySpec,
  type Operation,
  registerModel,
  requestJson,
} from '../../src/chaos/index.ts';
import { type AuditInput, auditCommerce, collectAudit } from './invariants.ts';

const root = resolve(import.meta.dirname, '../..');
/** Stock the orders compete for: scarce runs out, so oversell would show. */
const initialStock = { scarce: 25, plenty: 100_000 };
/** SKUs no order touches: their stock is a register the workload writes and reads. */
const registers = ['reg-0', 'reg-1', 'reg-2'];

type Final = Pick<AuditInput, 'orders' | 'charges' | 'stock'>;

const put = (app: AppHandle, sku: string, body: unknown, signal?: AbortSignal) =>
  requestJson(app, 'PUT', `/inventory/${sku}`, { body, ...(signal === undefined ? {} : { signal }) });

export default defineVerifySpec<Final>({
  name: 'commerce',
  description: 'commerce demo (embedded shape): orders, payments, inventory',
  start: ({ dataDir, port, seed }) => ({
    command: process.execPath,
    args: [
      join(root, 'apps/commerce/cli/main.ts'),
      'demo',
      '--traffic',
      'off',
      '--auth',
      'off',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
      '--seed',
      String(seed),
    ],
    cwd: root,
    env: { PORT: '' },
  }),
  ready: /Commerce API listening on (http:\/\/\S+)[\s\S]*Ctrl-C drains/,
  async setup(app) {
    for (const [sku, available] of Object.entries(initialStock)) {
      const answer = await put(app, sku, { available, price: sku === 'scarce' ? 9 : 1 });
      if (answer.status !== 200) throw new Error(`stocking ${sku} answered ${answer.status}`);
    }
    for (const sku of registers) await put(app, sku, { available: 1000, price: 1 });
  },
  workload: {
    workers: 4,
    next(random, { worker, index }) {
      const roll = random.next();
      if (roll < 0.55) {
        const key = `w${worker}-${index}-${Math.floor(random.next() * 1e9).toString(36)}`;
        const items = [{ sku: 'scarce', qty: 1 + Math.floor(random.next() * 2) }];
        if (random.next() < 0.5) items.push({ sku: 'plenty', qty: 1 + Math.floor(random.next() * 3) });
        return { kind: 'order', input: { idempotencyKey: key, customerId: `c-${key}`, items } };
      }
      const key = registers[Math.floor(random.next() * registers.length)]!;
      if (roll < 0.8) return { kind: 'write', key, input: { value: worker * 1_000_000 + index + 2 } };
      return { kind: 'read', key };
    },
    async invoke(app, operation, signal) {
      if (operation.kind === 'order') {
        const { idempotencyKey, customerId, items } = operation.input as {
          idempotencyKey: string;
          customerId: string;
          items: unknown;
        };
        const answer = await requestJson(app, 'POST', '/orders', {
          body: { customerId, items },
          headers: { 'idempotency-key': idempotencyKey },
          signal,
        });
        // 409: the same key's first delivery is still running; this one did nothing itself.
        return completionOf(answer, [202], (body) => ({ orderId: (body as { orderId: string }).orderId }));
      }
      if (operation.kind === 'write') {
        const price = (operation.input as { value: number }).value;
        return completionOf(
          await put(app, operation.key!, { available: 1000, price }, signal),
          [200],
          (body) => (body as { price: number }).price,
        );
      }
      const answer = await requestJson(app, 'GET', `/inventory/${operation.key}`, { signal });
      return completionOf(answer, [200], (body) => (body as { price: number }).price);
    },
    duplicable: (operation) => operation.kind === 'order',
  },
  async dependency(app, mode) {
    const settings = {
      healthy: { failureRate: 0, latencyMs: 0, timeoutRate: 0, lostResponseRate: 0 },
      slow: { failureRate: 0, latencyMs: 800, timeoutRate: 0.05, lostResponseRate: 0 },
      failing: { failureRate: 0.5, latencyMs: 0, timeoutRate: 0, lostResponseRate: 0.3 },
    }[mode];
    const answer = await requestJson(app, 'PUT', '/payments/settings', { body: settings });
    if (answer.status !== 200) throw new Error(`PUT /payments/settings answered ${answer.status}`);
  },
  collect: (app) => collectAudit(app.url, Object.keys(initialStock)),
  // The demo answers 503 while its store cannot write and recovers once space is freed (issue 16).
  diskFaults: true,
  invariants: {
    effects: {
      id: (operation: Operation) =>
        operation.kind === 'order' ? (operation.input as { customerId: string }).customerId : undefined,
      counts(final) {
        const counts = new Map<string, number>();
        for (const order of final.orders) {
          const customer = (order as unknown as { customerId: string }).customerId;
          counts.set(customer, (counts.get(customer) ?? 0) + 1);
        }
        return counts;
      },
    },
    sagas: {
      terminalWithinMs: 30_000,
      list: (final) =>
        final.orders.map((order) => ({
          id: order.orderId,
          status: order.status,
          terminal: order.status !== 'pending',
          effectId: (order as unknown as { customerId: string }).customerId,
        })),
    },
    linearizable: { model: registerModel(1), kinds: ['write', 'read'] },
    custom: [
      {
        name: 'no-oversell, no double charge, charged iff confirmed',
        check: (final) => auditCommerce({ ...final, initialStock }).violations,
      },
    ],
  },
});
