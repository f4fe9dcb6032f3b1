import { registerConsole } from '../../src/dashboard/index.ts';
import { type AuthOptions, createGateway, type Gateway, type GatewayOptions } from '../../src/http/index.ts';
import {
  type Clock,
  createRuntime,
  type Random,
  type Runtime,
  type RuntimeOptions,
  type SagaDefinition,
  systemTimers,
  type Timers,
} from '../../src/index.ts';
import type { Log } from '../../src/log/index.ts';
import type { IdempotencyStore, Store } from '../../src/store/index.ts';
import { Catalog, type CatalogOptions } from './catalog.ts';
import { CUSTOMER_SCOPES, registerCommerceRoutes } from './http-api.ts';
import { Inventory } from './inventory.ts';
import { Notifications, notify } from './notifications.ts';
import { Order } from './order.ts';
import { registerOrderFeed } from './order-feed.ts';
import { type OrderInput, type OrderOutput, type OrderSagaOptions, orderSaga } from './order-saga.ts';
import type { PaymentGatewayClient } from './payment-gateway-client.ts';
import { CustomerProfile, type ProfileOptions, Profiles, registerProfileRoutes } from './profile.ts';
import { RuntimeIdempotencyStore } from './runtime-idempotency-store.ts';

export interface CommerceAppOptions {
  /**
   * Who may call the API (docs/security.md): API keys and bearer tokens, customers getting
   * CUSTOMER_SCOPES unless their credential names others; `false` turns authentication off
   * (every caller an operator), for local experiments only. Required: no default is safe.
   */
  auth: AuthOptions | false;
  store: Store;
  log: Log;
  /** The payment provider the order saga charges through. */
  payments: PaymentGatewayClient;
  /**
   * Where Idempotency-Keys live. @default the store, through the runtime's group commit (each
   * call a unit of a shared transaction: see RuntimeIdempotencyStore)
   */
  idempotencyStore?: IdempotencyStore;
  /** @default systemClock */
  clock?: Clock;
  /** @default systemTimers */
  timers?: Timers;
  /** @default systemRandom */
  random?: Random;
  /** Runtime tuning (active sagas, drain time, compensation retry...). */
  runtime?: Omit<RuntimeOptions, 'store' | 'log' | 'clock' | 'timers' | 'random'>;
  /** Charge retries and timeouts. */
  orders?: OrderSagaOptions;
  /**
   * Orders running (or queued to run) at most: `POST /orders` answers 503 with Retry-After while
   * this many are, before reserving its key or starting anything, so that beyond capacity new
   * orders are refused at once instead of every order slowing down (and its payment call timing
   * out) behind all the others. @default 1000
   */
  maxOrdersInProgress?: number;
  catalog?: CatalogOptions;
  /** The customer-profile cache (TTL, size, the shared Redis tier on the cluster shape). */
  profiles?: ProfileOptions;
  /** HTTP gateway tuning (lease, key TTL, body limit, logger...). */
  http?: Omit<GatewayOptions, 'auth' | 'store' | 'idempotencyStore' | 'clock' | 'timers'>;
}

export interface CommerceApp {
  readonly runtime: Runtime;
  readonly gateway: Gateway;
  readonly catalog: Catalog;
  readonly profiles: Profiles;
  readonly orderSaga: SagaDefinition<OrderInput, OrderOutput>;
  /** Starts the runtime (resuming every order in flight) and loads the routes. */
  start(): Promise<void>;
  /** Listens for HTTP; returns the base URL. @default host 127.0.0.1, port 0 (any free port) */
  listen(options?: { host?: string; port?: number; backlog?: number }): Promise<string>;
  /**
   * Drains: stops taking requests (readiness fails at once, requests in flight finish), then
   * stops the runtime, which lets running steps finish and parks every order where it is; the
   * next start resumes them. Does not close the store or the log.
   */
  close(): Promise<void>;
}

/**
 * The commerce reference system on Meridian's public API: Inventory, Order and CustomerProfile
 * entities, the order saga, the notification subscription, the catalog read model and the
 * cached customer profiles, and the HTTP contract
 * (docs/commerce.md).
 */
export async function createCommerceApp(options: CommerceAppOptions): Promise<CommerceApp> {
  const runtime = createRuntime({
    ...options.runtime,
    store: options.store,
    log: options.log,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.timers === undefined ? {} : { timers: options.timers }),
    ...(options.random === undefined ? {} : { random: options.random }),
  });
  const saga = orderSaga(options.payments, options.orders);
  runtime.register(Inventory, Order, Notifications, CustomerProfile, saga, notify);
  const catalog = new Catalog(runtime, options.catalog);
  const profiles = new Profiles(runtime, options.profiles);
  const gateway = await createGateway({
    title: 'Meridian commerce',
    version: '1.0.0',
    description:
      'The commerce reference system: inventory, orders placed with an Idempotency-Key and run as sagas (reserve stock, charge, confirm, notify; release and refund on failure), payments and notifications.',
    ...options.http,
    auth: options.auth === false ? false : { defaultCustomerScopes: CUSTOMER_SCOPES, ...options.auth },
    idempotencyStore: options.idempotencyStore ?? new RuntimeIdempotencyStore(runtime),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.timers === undefined ? {} : { timers: options.timers }),
  });
  const closing = new AbortController();
  const timers = options.timers ?? systemTimers;
  registerCommerceRoutes(gateway, {
    runtime,
    catalog,
    orderSaga: saga,
    payments: options.payments,
    timers,
    closing: closing.signal,
    maxOrdersInProgress: options.maxOrdersInProgress ?? 1000,
  });
  registerProfileRoutes(gateway, runtime, profiles);
  registerOrderFeed(gateway, {
    log: options.log,
    timers,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    closing: closing.signal,
  });
  gateway.exposeRuntime(runtime);
  // The live console at `/`: sagas (orders), their timelines, topics and lag, dead letters.
  registerConsole(gateway, runtime, {
    ...(options.http?.metricsPrefix === undefined ? {} : { metricsPrefix: options.http.metricsPrefix }),
  });
  // The caches' hit, miss and load counters appear at /metrics and /policies.
  gateway.exposePolicies({
    'catalog-entries': catalog.entries,
    'catalog-pages': catalog.pages,
    'customer-profiles': profiles.cache,
  });
  // A real write, committed: an empty transaction succeeds on a full or read-only disk.
  gateway.addReadinessCheck('store', () => options.store.checkWrites());
  gateway.addReadinessCheck('runtime', () =>
    runtime.running
      ? { ok: true, detail: 'entities, sagas and subscriptions running' }
      : { ok: false, detail: 'the runtime is not running' },
  );

  let closed: Promise<void> | undefined;
  return {
    runtime,
    gateway,
    catalog,
    profiles,
    orderSaga: saga,
    async start() {
      await runtime.start();
      await gateway.ready();
    },
    listen: (listenOptions) => gateway.listen(listenOptions),
    close() {
      closed ??= (async () => {
        // Long polls answer now with where their order stands, or they would hold the drain up.
        closing.abort();
        await gateway.close();
        await runtime.stop();
        catalog.close();
        profiles.close();
      })();
      return closed;
    },
  };
}
