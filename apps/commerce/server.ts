import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type RedisClient, redisInvalidationBus, redisTier } from '../../src/cache/index.ts';
import { type AuthOptions, type DevelopmentAuth, developmentAuth } from '../../src/http/index.ts';
import {
  type SagaStatus,
  systemClock,
  systemRandom,
  systemTimers,
  ValidationError,
} from '../../src/index.ts';
import { type Log, SqliteLog } from '../../src/log/index.ts';
import {
  claimDirectory,
  type DirectoryOwnerInfo,
  type DirectoryOwnership,
  type Durability,
  SqliteDatabase,
  SqliteStore,
  type Store,
} from '../../src/store/index.ts';
import { type CommerceApp, type CommerceAppOptions, createCommerceApp } from './app.ts';
import type { PaymentGatewaySettings } from './payment-gateway.ts';
import { PaymentGatewayClient } from './payment-gateway-client.ts';
import { startPaymentGatewayThread } from './payment-gateway-worker.ts';

export interface CommerceServerOptions {
  /** Where the SQLite file (`meridian.db`) and the payment ledger (`payments.jsonl`) live; created when missing. */
  dataDir: string;
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** What a commit survives. @default 'process' */
  durability?: Durability;
  /** The simulated payment gateway's faults at start (changeable later with `PUT /payments/settings`). */
  payment?: Partial<PaymentGatewaySettings>;
  /** Seed of the payment gateway's fault rolls, so a run's faults replay. @default 1 */
  paymentSeed?: number;
  /** The `Retry-After` of the gateway's simulated 503s (seconds; 0: none). @default 1 */
  paymentRetryAfterSeconds?: number;
  /**
   * Who may call the API. @default bearer tokens signed with a secret kept in the data directory
   * (`auth-secret`, see developmentAuth; `server.issueToken` signs them). `false` turns
   * authentication off: every caller is an operator (local experiments only).
   */
  auth?: AuthOptions | false;
  /** Tuning passed to the app (charge retries, runtime, catalog, HTTP). */
  app?: Omit<CommerceAppOptions, 'store' | 'log' | 'payments' | 'auth'>;
  /**
   * Take the data directory over from a live process that holds it (it then exits) instead of
   * refusing with DirectoryInUseError. @default false
   */
  takeOver?: boolean;
  /**
   * Called once if another process takes the data directory over: this server's writes are
   * fenced from then on, so the caller should close it and exit.
   */
  onTakenOver?: (by: DirectoryOwnerInfo) => void;
}

export interface CommerceServer {
  /** The commerce API's base URL. */
  readonly url: string;
  /** The simulated payment gateway's base URL. */
  readonly paymentUrl: string;
  readonly app: CommerceApp;
  /** A client of the payment gateway (its settings, its ledger of charges). */
  readonly payments: PaymentGatewayClient;
  readonly database: SqliteDatabase;
  /** Orders that were in flight when the server started, and that it resumed. */
  readonly resumedOrders: number;
  /** This process's claim on the data directory (and whom it took it over from). */
  readonly ownership: DirectoryOwnership;
  /** The in-process payment gateway's API key (new at every start). */
  readonly paymentApiKey: string;
  /** Signs bearer tokens with the data directory's secret; undefined unless the default auth is in use. */
  readonly devAuth: DevelopmentAuth | undefined;
  /** Drains the app, then closes the payment gateway, the log, the store and the file. */
  close(): Promise<void>;
}

/**
 * The commerce system on the embedded shape: one SQLite file holds the log and the store, the
 * simulated payment gateway runs in the same process on its own thread and port with its ledger
 * beside the database, and the app serves the HTTP contract. Starting again on the same directory resumes
 * every order that was in flight, whether the last run drained or was killed.
 */
export async function startCommerceServer(options: CommerceServerOptions): Promise<CommerceServer> {
  if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
    throw new ValidationError(
      `'dataDir' must be a directory path: current value is '${String(options.dataDir)}'`,
    );
  }
  mkdirSync(options.dataDir, { recursive: true });
  const clock = options.app?.clock ?? systemClock;
  const timers = options.app?.timers ?? systemTimers;
  const random = options.app?.random ?? systemRandom;
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanUp = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  // Before anything is opened: a second process on the directory refuses, naming the first.
  const ownership = claimDirectory(options.dataDir, {
    takeOver: options.takeOver ?? false,
    ...(options.onTakenOver === undefined ? {} : { onTakenOver: options.onTakenOver }),
  });
  cleanups.push(() => ownership.release());
  try {
    const database = new SqliteDatabase({
      path: join(options.dataDir, 'meridian.db'),
      ...(options.durability === undefined ? {} : { durability: options.durability }),
    });
    cleanups.push(() => database.close());
    const store = new SqliteStore({ database, clock });
    cleanups.push(() => store.close());
    const log = new SqliteLog(database, { clock, timers, random });
    cleanups.push(() => log.close());

    // The gateway runs in this process: a fresh credential per start is enough, and never leaves it.
    const paymentApiKey = randomBytes(32).toString('base64url');
    const paymentGateway = await startPaymentGatewayThread({
      ...(options.payment === undefined ? {} : { settings: options.payment }),
      apiKey: paymentApiKey,
      fsync: options.durability === 'fsync',
      ledgerPath: join(options.dataDir, 'payments.jsonl'),
      seed: options.paymentSeed ?? 1,
      ...(options.paymentRetryAfterSeconds === undefined
        ? {}
        : { retryAfterSeconds: options.paymentRetryAfterSeconds }),
    });
    cleanups.push(() => paymentGateway.close());
    const paymentUrl = paymentGateway.url;
    const payments = paymentClient(paymentUrl, paymentApiKey);
    cleanups.push(() => payments.close());

    const devAuth = options.auth === undefined ? developmentAuth(options.dataDir) : undefined;
    const auth = options.auth ?? devAuth!.auth;
    const app = await createCommerceApp({ ...options.app, auth, store, log, payments });
    cleanups.push(() => app.close());
    const resumedOrders = await countUnfinished(store, app.orderSaga.name);
    await app.start();
    const url = await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });

    let closing: Promise<void> | undefined;
    return {
      url,
      paymentUrl,
      app,
      payments,
      database,
      resumedOrders,
      ownership,
      devAuth,
      paymentApiKey,
      close() {
        closing ??= cleanUp();
        return closing;
      },
    };
  } catch (error) {
    await cleanUp().catch(() => {
      // The first error is the one worth reporting.
    });
    throw error;
  }
}

function paymentClient(baseUrl: string, apiKey: string | undefined): PaymentGatewayClient {
  // Calls in flight to the gateway at most. Near capacity a call's round trip is mostly the
  // time its answer waits for this thread's event loop (tens of ms), so 64 connections capped
  // the whole system at ~1,100 orders/s on 2 cores; 256 lifted it to ~1,300 (docs/benchmarks.md).
  return new PaymentGatewayClient({
    baseUrl,
    maxConnections: 256,
    ...(apiKey === undefined ? {} : { apiKey }),
  });
}

export interface CommerceNodeOptions {
  /** The cluster's store (PostgreSQL, the schema every node shares); the caller opens and closes it. */
  store: Store;
  /** This node's log (Kafka); the caller opens and closes it. */
  log: Log;
  /**
   * The payment gateway every node charges through (`commerce payments`). One for the whole
   * cluster: an order taken over by another node must find the charge its first owner made.
   */
  paymentUrl: string;
  /** The payment gateway's API key (`meridian payments` prints it, or takes MERIDIAN_PAYMENTS_API_KEY). */
  paymentApiKey?: string;
  /** Who may call the API; `false` turns authentication off (local experiments only). Required. */
  auth: AuthOptions | false;
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** Tuning passed to the app; `runtime.cluster` makes it a cluster node. */
  app?: Omit<CommerceAppOptions, 'store' | 'log' | 'payments' | 'auth'>;
  /**
   * Redis (or a Redis Cluster) the nodes share: catalog entries and customer profiles are cached
   * there too, and a change on any node reaches every node's in-process copy. The caller opens and closes
   * the client. @default none: each node caches in process only
   */
  redis?: RedisClient;
}

export interface CommerceNode {
  /** The commerce API's base URL. */
  readonly url: string;
  readonly app: CommerceApp;
  readonly payments: PaymentGatewayClient;
  /** Drains the app (requests, then the runtime: the node leaves the group) and closes the payment client; not the store or the log. */
  close(): Promise<void>;
}

/**
 * The commerce system as one node of the cluster shape: the same app as startCommerceServer, on
 * a store and a log the caller opened, charging through the payment gateway all nodes share.
 */
export async function startCommerceNode(options: CommerceNodeOptions): Promise<CommerceNode> {
  const payments = paymentClient(options.paymentUrl, options.paymentApiKey);
  const redis = options.redis;
  const invalidation = redis === undefined ? undefined : redisInvalidationBus({ redis });
  let app: CommerceApp | undefined;
  try {
    // Not waiting for the bus: it subscribes whenever Redis answers, and then repairs.
    const l2 = redis === undefined ? undefined : redisTier({ redis, keyPrefix: 'meridian:commerce:' });
    const shared = l2 === undefined ? {} : { l2, invalidation };
    app = await createCommerceApp({
      ...options.app,
      auth: options.auth,
      catalog: { ...options.app?.catalog, ...shared },
      profiles: { ...options.app?.profiles, ...shared },
      store: options.store,
      log: options.log,
      payments,
    });
    const runtime = app.runtime;
    app.gateway.addReadinessCheck('cluster', () => {
      const owned = runtime.cluster?.owned() ?? [];
      return { ok: true, detail: `owns work partitions [${owned.join(',')}]` };
    });
    await app.start();
    const url = await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
    const started = app;
    let closing: Promise<void> | undefined;
    return {
      url,
      app: started,
      payments,
      close() {
        closing ??= started.close().finally(() => {
          payments.close();
          return invalidation?.close();
        });
        return closing;
      },
    };
  } catch (error) {
    await app?.close().catch(() => {
      // The first error is the one worth reporting.
    });
    payments.close();
    await invalidation?.close();
    throw error;
  }
}

/** Orders whose saga has not ended: what a start resumes. */
async function countUnfinished(store: Store, type: string): Promise<number> {
  let count = 0;
  for (const status of ['running', 'compensating'] satisfies SagaStatus[]) {
    let afterId: string | undefined;
    for (;;) {
      const page = await store.read((tx) =>
        tx.sagas.list({ status, type, limit: 1000, ...(afterId === undefined ? {} : { afterId }) }),
      );
      count += page.length;
      if (page.length < 1000) break;
      afterId = page[page.length - 1]!.id;
    }
  }
  return count;
}
