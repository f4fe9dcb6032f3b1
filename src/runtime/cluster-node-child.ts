/**
 * One node of the cluster shape for the multi-node fault test (cluster.multinode.test.ts), run as
 * a real process that the test starts, stops with SIGTERM, kills with SIGKILL and freezes with
 * SIGSTOP. Every node of a test shares one PostgreSQL schema and one Kafka work topic and group.
 *
 * Usage: node cluster-node-child.ts --pg <url> --schema <schema> --brokers <host:port,...>
 *          --work-topic <topic> --group <group> --node <name> --run <id>
 *          [--partitions 8] [--seed 1] [--session-timeout-ms 6000] [--replication-factor 3]
 *
 * The workload is crash-child.ts's order saga on the cluster shape: reserve stock on an Inventory
 * entity (compensated by a release) → charge through a fake payment gateway whose ledger is a
 * table in the same schema (so every node shares it and a second charge of an order is visible)
 * → a durable sleep → commit the stock → emit `orders.completed.<run>`. A subscription records each
 * completed order in a Ledger entity. Names that reach Kafka carry the run id, so runs sharing a
 * broker never see each other's records.
 *
 * HTTP on 127.0.0.1 (an ephemeral port): `POST /orders` `{id, input}` starts an order through
 * this node's runtime (routed when another node owns the saga's partition) and answers once the
 * start is durable; `GET /status` answers the node's name, owned partitions and fenced writes.
 *
 * Lines on stdout: `READY <port>` once started; `OWNED <p,p,...>` when the owned partitions
 * change; `FENCED <n>` when the count of fenced writes (problems with code FENCED) grows;
 * `RELAY-EXIT <topic> <outbox ids>` just before a deliberate SIGKILL of itself; `STOPPED` after a
 * SIGTERM drained it.
 *
 * MERIDIAN_TEST_RELAY_EXIT_AFTER=N: the node SIGKILLs itself right after the outbox relay's Nth
 * batch (to MERIDIAN_TEST_RELAY_EXIT_TOPIC if set, else to any topic) was acknowledged by Kafka,
 * before the relay deletes those rows: the records are re-sent by the next owner, so the topic
 * holds them twice and Meridian must apply them once.
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import pg from 'pg';
import { RetryableError, TerminalError } from '../errors.ts';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import type { AppendResult, ProducerRecord } from '../log/types.ts';
import { openPostgresStore } from '../store/postgres/store.ts';
import { type Random, seededRandom, systemTimers } from '../time.ts';
import { initialLedger, ledgerCommands, type Stock, stockCommands } from './crash-child.ts';
import { entity, saga, subscription } from './definitions.ts';
import { createRuntime, type RuntimeOptions } from './runtime.ts';

export type { Stock };

export const initialStock = 100;
export const skus = ['sku-a', 'sku-b', 'sku-c', 'sku-d'];
export const outboxHeader = 'meridian-outbox';

export interface OrderInput {
  sku: string;
  qty: number;
  amount: number;
  /** The gateway declines the card: the order compensates. */
  decline: boolean;
  /** The durable sleep between the charge and the commit, ms. */
  settleMs: number;
}

/** The orders of one batch of a workload: the same for every run with the same seed and batch. */
export function orders(prefix: string, count: number, seed: number): Array<[string, OrderInput]> {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, index) => [
    `${prefix}-${String(index).padStart(4, '0')}`,
    {
      sku: skus[Math.floor(random.next() * skus.length)]!,
      qty: 1 + Math.floor(random.next() * 3),
      amount: 100 + Math.floor(random.next() * 900),
      decline: random.next() < 0.15,
      settleMs: 200 + Math.floor(random.next() * 800),
    },
  ]);
}

/** The Kafka topic names of a run: unique per run, so runs on a shared broker stay apart. */
export function runTopics(run: string) {
  return {
    inventoryEvents: `mn.${run}.inventory.events`,
    ledgerEvents: `mn.${run}.ledger.events`,
    completed: `mn.${run}.orders.completed`,
    ledgerGroup: `mn.${run}.ledger`,
  };
}

/** The gateway's tables, in the store's schema: the test reads them to find doubled effects. */
export async function installGateway(pool: pg.Pool, schema: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Nodes start at once: CREATE TABLE IF NOT EXISTS races on the catalog without a lock.
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 7))', [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS "${schema}".gateway_calls (
        key TEXT NOT NULL, node TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
      CREATE TABLE IF NOT EXISTS "${schema}".gateway_charges (
        seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, order_id TEXT NOT NULL, amount INTEGER NOT NULL,
        node TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS "${schema}".gateway_refunds (
        seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, charge_key TEXT NOT NULL, node TEXT NOT NULL);`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * The payment gateway, as the outside world: PostgreSQL tables outside the store's transactions,
 * shared by every node. Idempotent on the key like a real payment API (a lock per key, then
 * insert-if-absent), with no unique constraint, so a second charge of an order under another key
 * would be stored and seen by the test. It fails transiently before charging and sometimes loses
 * its answer after charging, so callers must retry with the same key.
 */
export class Gateway {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #node: string;
  readonly #random: Random;

  constructor(pool: pg.Pool, schema: string, node: string, random: Random) {
    this.#pool = pool;
    this.#schema = schema;
    this.#node = node;
    this.#random = random;
  }

  async charge(
    key: string,
    orderId: string,
    amount: number,
    decline: boolean,
  ): Promise<{ chargeKey: string }> {
    await this.#call(key);
    if (this.#random.next() < 0.2) throw new RetryableError('gateway timeout before charging');
    if (decline) throw new TerminalError('card declined');
    await this.#once(
      key,
      `INSERT INTO "${this.#schema}".gateway_charges (key, order_id, amount, node)
       SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM "${this.#schema}".gateway_charges WHERE key = $1)`,
      [key, orderId, amount, this.#node],
    );
    if (this.#random.next() < 0.1) throw new RetryableError('gateway timeout after charging');
    return { chargeKey: key };
  }

  async refund(key: string, chargeKey: string): Promise<void> {
    await this.#call(key);
    if (this.#random.next() < 0.2) throw new RetryableError('gateway timeout while refunding');
    await this.#once(
      key,
      `INSERT INTO "${this.#schema}".gateway_refunds (key, charge_key, node)
       SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM "${this.#schema}".gateway_refunds WHERE key = $1)`,
      [key, chargeKey, this.#node],
    );
  }

  async #call(key: string): Promise<void> {
    await this.#pool.query(`INSERT INTO "${this.#schema}".gateway_calls (key, node) VALUES ($1, $2)`, [
      key,
      this.#node,
    ]);
  }

  async #once(key: string, sql: string, params: unknown[]): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 8))', [key]);
      await client.query(sql, params);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw new RetryableError(`gateway failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      client.release();
    }
  }
}

/** The app: the same definitions on every node of a run. */
export function clusterWorkload(run: string, gateway: Gateway) {
  const topics = runTopics(run);
  const Inventory = entity('Inventory', {
    eventsTopic: topics.inventoryEvents,
    initial: (): Stock => ({ available: initialStock, reserved: 0, sold: 0 }),
    commands: stockCommands,
  });
  const Ledger = entity('Ledger', {
    eventsTopic: topics.ledgerEvents,
    initial: initialLedger,
    commands: ledgerCommands,
  });

  const OrderSaga = saga('Order', async (ctx, input: OrderInput) => {
    await ctx.send(
      Inventory,
      input.sku,
      'reserve',
      { qty: input.qty },
      { compensate: { command: 'release', input: { qty: input.qty } } },
    );
    const payment = await ctx.step(
      'charge',
      (step) => gateway.charge(step.idempotencyKey, ctx.sagaId, input.amount, input.decline),
      {
        retry: { initialDelayMs: 5, maxDelayMs: 50, maxAttempts: 50 },
        compensate: (step, result) => gateway.refund(step.idempotencyKey, result.chargeKey),
      },
    );
    await ctx.sleep('settle', input.settleMs);
    await ctx.send(Inventory, input.sku, 'commit', { qty: input.qty });
    await ctx.emit(topics.completed, { key: ctx.sagaId, value: { order: ctx.sagaId, amount: input.amount } });
    return payment.chargeKey;
  });
  const ledger = subscription('ledger', {
    topic: topics.completed,
    group: topics.ledgerGroup,
    partitions: 4,
    handler: async (record, ctx) => {
      await ctx.send(Ledger, 'all', 'record', record.json<{ order: string; amount: number }>());
    },
  });
  return { Inventory, Ledger, OrderSaga, ledger };
}

interface NodeArgs {
  pg: string;
  schema: string;
  brokers: string[];
  workTopic: string;
  group: string;
  node: string;
  run: string;
  partitions: number;
  seed: number;
  sessionTimeoutMs: number;
  replicationFactor: number | undefined;
}

function parseArgs(argv: readonly string[]): NodeArgs {
  const value = (name: string, fallback?: string): string => {
    const index = argv.indexOf(`--${name}`);
    const found = index === -1 ? fallback : argv[index + 1];
    if (found === undefined) throw new Error(`cluster-node-child: --${name} is required`);
    return found;
  };
  return {
    pg: value('pg'),
    schema: value('schema'),
    brokers: value('brokers').split(','),
    workTopic: value('work-topic'),
    group: value('group'),
    node: value('node'),
    run: value('run'),
    partitions: Number(value('partitions', '8')),
    seed: Number(value('seed', '1')),
    sessionTimeoutMs: Number(value('session-timeout-ms', '6000')),
    replicationFactor: argv.includes('--replication-factor')
      ? Number(value('replication-factor'))
      : undefined,
  };
}

/**
 * The Kafka log of a node, which SIGKILLs the process right after the outbox relay's Nth publish
 * was acknowledged, before the relay can delete the rows it published (a relay dying mid-batch).
 */
class RelayKillingLog extends KafkaLog {
  #batches = 0;
  readonly #exitAfter: number;
  readonly #topic: string | undefined;

  constructor(options: ConstructorParameters<typeof KafkaLog>[0], exitAfter: number, topic?: string) {
    super(options);
    this.#exitAfter = exitAfter;
    this.#topic = topic;
  }

  override async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    const result = await super.append(topic, records);
    const relayed = records.flatMap((record) => record.headers?.[outboxHeader] ?? []);
    if (this.#topic !== undefined && topic !== this.#topic) return result;
    if (relayed.length > 0 && ++this.#batches >= this.#exitAfter) {
      // stdout is a pipe, written synchronously on Linux: the line is out before the kill.
      process.stdout.write(`RELAY-EXIT ${topic} ${relayed.join(',')}\n`);
      process.kill(process.pid, 'SIGKILL');
    }
    return result;
  }
}

async function readBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function answer(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** A node's runtime on the cluster shape, with what it opened and a count of fenced writes. */
async function openNode(args: NodeArgs) {
  const random = seededRandom(args.seed);
  // The node's name reaches PostgreSQL as application_name: the test's audit triggers record
  // which node committed each write (the connection string's value overrides the store's).
  const separator = args.pg.includes('?') ? '&' : '?';
  const connectionString = `${args.pg}${separator}application_name=${encodeURIComponent(args.node)}`;
  const gatewayPool = new pg.Pool({ connectionString: args.pg, max: 4 });
  gatewayPool.on('error', () => {});
  await installGateway(gatewayPool, args.schema);
  const gateway = new Gateway(gatewayPool, args.schema, args.node, random);
  const store = await openPostgresStore({ connectionString, schema: args.schema });
  const logOptions = { brokers: args.brokers, clientId: args.node, sessionTimeoutMs: args.sessionTimeoutMs };
  const exitAfter = Number(process.env.MERIDIAN_TEST_RELAY_EXIT_AFTER ?? 0);
  const exitTopic = process.env.MERIDIAN_TEST_RELAY_EXIT_TOPIC || undefined;
  const log =
    exitAfter > 0 ? new RelayKillingLog(logOptions, exitAfter, exitTopic) : new KafkaLog(logOptions);
  const workload = clusterWorkload(args.run, gateway);
  const counters = { fenced: 0 };
  const options: RuntimeOptions = {
    store,
    log,
    random,
    compensationRetry: { initialDelayMs: 5, maxDelayMs: 50 },
    onProblem: (problem) => {
      if (/no longer owns work partition/.test(problem.error)) counters.fenced++;
      process.stderr.write(`[${args.node}] problem: ${JSON.stringify(problem).slice(0, 400)}\n`);
    },
    cluster: {
      node: args.node,
      workPartitions: args.partitions,
      workTopic: args.workTopic,
      group: args.group,
      requestTimeoutMs: 10_000,
      ...(args.replicationFactor === undefined ? {} : { replicationFactor: args.replicationFactor }),
    },
  };
  const { Inventory, Ledger, OrderSaga, ledger } = workload;
  const runtime = createRuntime(options).register(Inventory, Ledger, OrderSaga, ledger);
  const close = async () => {
    await runtime.stop();
    await log.close();
    await store.close();
    await gatewayPool.end();
  };
  return { runtime, OrderSaga, counters, close };
}

type Node = Awaited<ReturnType<typeof openNode>>;

/** POST /orders and GET /status on 127.0.0.1; resolves with the port once listening. */
async function serveHttp(args: NodeArgs, node: Node): Promise<{ port: number; close: () => void }> {
  const serve = async (request: IncomingMessage, response: ServerResponse) => {
    if (request.method === 'POST' && request.url === '/orders') {
      const { id, input } = (await readBody(request)) as { id: string; input: OrderInput };
      await node.runtime.startSaga(node.OrderSaga, id, input);
      answer(response, 200, { id, node: args.node });
    } else if (request.url === '/status') {
      const owned = node.runtime.cluster?.owned() ?? [];
      answer(response, 200, { node: args.node, owned, fenced: node.counters.fenced });
    } else answer(response, 404, { error: 'not found' });
  };
  const server = createServer((request, response) => {
    serve(request, response).catch((error: unknown) =>
      answer(response, 503, { error: error instanceof Error ? error.message : String(error) }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    close: () => server.close(),
  };
}

/** Prints OWNED and FENCED lines when they change, every 50 ms, until the returned stop is called. */
function watchNode(node: Node): () => void {
  let owned = '';
  let fencedShown = 0;
  let watching = true;
  const watch = () => {
    if (!watching) return;
    const now = (node.runtime.cluster?.owned() ?? []).join(',');
    if (now !== owned) {
      owned = now;
      process.stdout.write(`OWNED ${owned}\n`);
    }
    if (node.counters.fenced !== fencedShown) {
      fencedShown = node.counters.fenced;
      process.stdout.write(`FENCED ${fencedShown}\n`);
    }
    systemTimers.setTimeout(watch, 50);
  };
  watch();
  return () => {
    watching = false;
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const node = await openNode(args);
  await node.runtime.start();
  const http = await serveHttp(args, node);
  process.stdout.write(`READY ${http.port}\n`);
  const stopWatching = watchNode(node);
  // SIGTERM drains: the runtime stops (leaving the group, so partitions move), then the rest.
  process.once('SIGTERM', () => {
    stopWatching();
    http.close();
    node
      .close()
      .then(() => {
        process.stdout.write('STOPPED\n');
        process.exit(0);
      })
      .catch((error: unknown) => {
        process.stderr.write(
          `[${args.node}] stop failed: ${error instanceof Error ? error.stack : String(error)}\n`,
        );
        process.exit(1);
      });
  });
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  main().catch((error: unknown) => {
    process.stderr.write(
      `cluster-node-child failed: ${error instanceof Error ? error.stack : String(error)}\n`,
    );
    process.exit(1);
  });
}
