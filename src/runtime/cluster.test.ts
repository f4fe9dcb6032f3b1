// The runtime on the cluster shape, in one process against real PostgreSQL and Kafka: two
// runtimes ("nodes") share one schema and one consumer group. Commands and saga starts for ids a
// node does not own travel to their owner and apply once; a saga's send to an entity owned by the
// other node is a journaled request and reply; entity events reach Kafka through the outbox
// relay; a node that stops hands its partitions, with their running sagas and timers, to the
// other; and a node whose partition was claimed by another cannot write for it any more.
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { workPartitionOf } from '../cluster/partitions.ts';
import { RetryableError } from '../errors.ts';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import { parseBrokerList } from '../log/kafka/options.ts';
import type { LogRecord } from '../log/types.ts';
import { openPostgresStore, type PostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import type { Store } from '../store/types.ts';
import { decodeJson } from './codec.ts';
import { entity, saga, subscription } from './definitions.ts';
import { createRuntime, type Runtime } from './runtime.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;

const Counter = entity('ClusterCounter', {
  initial: () => ({ value: 0 }),
  commands: {
    add(state, input: { by: number }) {
      return {
        state: { value: state.value + input.by },
        events: [{ by: input.by }],
        reply: state.value + input.by,
      };
    },
    fail() {
      throw new Error('refused by the handler');
    },
  },
});

/** Adds to two counters (usually owned by different nodes), sleeps durably, adds again. */
const Transfer = saga(
  'ClusterTransfer',
  async (ctx, input: { from: string; to: string; sleepMs: number }) => {
    await ctx.send(Counter, input.from, 'add', { by: -1 });
    await ctx.send(Counter, input.to, 'add', { by: 1 });
    await ctx.sleep('settle', input.sleepMs);
    const after = await ctx.send(Counter, input.to, 'add', { by: 10 });
    return { after };
  },
);

/**
 * Adds to two counters at once (usually owned by different nodes: two routed requests in flight
 * together), then waits for the signals 'approve' and 'release', which any node may deliver.
 */
const Approved = saga('ClusterApproved', async (ctx, input: { a: string; b: string }) => {
  const added = await Promise.all([
    ctx.send(Counter, input.a, 'add', { by: 1 }),
    ctx.send(Counter, input.b, 'add', { by: 1 }),
  ]);
  const approval = await ctx.waitForSignal<string>('approve', { timeoutMs: 60_000 });
  // A second wait keeps the saga running while the test sends 'approve' again.
  await ctx.waitForSignal('release');
  return { added, approval };
});

/** Adds to two counters, undone by subtracting, then waits for a signal that never comes. */
const Held = saga('ClusterHeld', async (ctx, input: { a: string; b: string }) => {
  for (const id of [input.a, input.b]) {
    await ctx.send(Counter, id, 'add', { by: 1 }, { compensate: { command: 'add', input: { by: -1 } } });
  }
  await ctx.waitForSignal('approve', { timeoutMs: 3_600_000 });
});

/** One routed or local add, its reply returned: what the saga journaled is what it returns. */
const AddOnce = saga('ClusterAddOnce', async (ctx, input: { id: string }) =>
  ctx.send(Counter, input.id, 'add', { by: 1 }),
);

/** Polls `check` until it returns a value other than undefined, failing after `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(!pgUrl || !brokersText)('runtime on the cluster shape (PostgreSQL + Kafka)', () => {
  const schemas = testSchemas(pgUrl ?? '', 'cluster');
  const brokers = parseBrokerList(brokersText ?? '');
  let reader: KafkaLog;
  const opened: Array<{ runtime: Runtime; store: PostgresStore; log: KafkaLog }> = [];
  let schema: string;
  let suffix: string;

  beforeAll(async () => {
    reader = new KafkaLog({ brokers, clientId: 'meridian-cluster-test-reader' });
  });
  afterAll(async () => {
    await reader?.close();
    await schemas.end();
  });

  afterEach(async () => {
    for (const node of opened.splice(0)) {
      await node.runtime.stop();
      await node.log.close();
      await node.store.close();
    }
    await schemas.drop(schema);
  });

  function fresh(): void {
    schema = schemas.next();
    suffix = randomUUID().slice(0, 8);
  }

  /** Counts each 'tick' record on the run's topic into the Counter keyed by the record's key. */
  function tally() {
    return subscription(`ClusterTally${suffix}`, {
      topic: `cluster.ticks.${suffix}`,
      partitions: 3,
      retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20 },
      async handler(record, ctx) {
        const key = record.keyText()!;
        const { failures = 0 } = record.json<{ failures?: number }>();
        if (ctx.attempt <= failures) throw new Error(`tick fails on attempt ${ctx.attempt}`);
        await ctx.send(Counter, key, 'add', { by: record.json<{ by: number }>().by });
        if (record.json<{ start?: boolean }>().start === true) {
          await ctx.startSaga(Transfer, `from-${key}`, { from: key, to: `${key}-to`, sleepMs: 0 });
        }
      },
    });
  }

  async function node(
    name: string,
    partitions = 8,
    runs?: string[],
    requestTimeoutMs = 20_000,
    wrap: (store: PostgresStore) => Store = (store) => store,
  ): Promise<Runtime> {
    const store = await openPostgresStore({ connectionString: pgUrl!, schema });
    const log = new KafkaLog({ brokers, clientId: `meridian-cluster-${name}` });
    const runtime = createRuntime({
      store: wrap(store),
      log,
      topics: { 'ClusterCounter.events': { partitions: 4 } },
      deadLetterTopic: `meridian.dead-letters.${suffix}`,
      cluster: {
        node: name,
        workPartitions: partitions,
        workTopic: `meridian.work.${suffix}`,
        group: `meridian.nodes.${suffix}`,
        requestTimeoutMs,
      },
    }).register(Counter, Transfer, Approved, Held, AddOnce, tally());
    if (runs !== undefined) {
      runtime.singleton({
        name: 'beat',
        async run(ctx) {
          while (!ctx.signal.aborted) {
            try {
              // A write that names no entity or saga: only the leader partition's fence applies.
              await ctx.transaction((tx) =>
                tx.inbox.markApplied('beat', `${name}-${runs.length}`, Date.now()),
              );
              runs.push(`${name}:wrote`);
            } catch (error) {
              runs.push(`${name}:${(error as { code?: string }).code}`);
              throw error;
            }
            await ctx.wait(100);
          }
        },
      });
    }
    await runtime.start();
    opened.push({ runtime, store, log });
    return runtime;
  }

  const owned = (runtime: Runtime) => runtime.cluster?.owned() ?? [];

  /** A node whose saga 'ClusterStuck' runs a step that never ends (hang) or returns at once. */
  async function nodeWithStuckSaga(name: string, hang: boolean): Promise<Runtime> {
    const store = await openPostgresStore({ connectionString: pgUrl!, schema });
    const log = new KafkaLog({ brokers, clientId: `meridian-cluster-${name}`, fetchMaxWaitMs: 100 });
    const stuck = saga('ClusterStuck', async (ctx) =>
      ctx.step('call', () => (hang ? new Promise<number>(() => {}) : 1)),
    );
    const runtime = createRuntime({
      store,
      log,
      drainTimeoutMs: 1000,
      cluster: {
        node: name,
        workPartitions: 4,
        workTopic: `meridian.work.${suffix}`,
        group: `meridian.nodes.${suffix}`,
        requestTimeoutMs: 8000,
      },
    }).register(Counter, stuck);
    await runtime.start();
    opened.push({ runtime, store, log });
    return runtime;
  }

  /** Nodes a and b on a fresh schema, once the group has split the 8 partitions between them. */
  async function twoNodes(): Promise<[Runtime, Runtime]> {
    fresh();
    const a = await node('a');
    const b = await node('b');
    await until('the partitions split across both nodes', async () =>
      owned(a).length > 0 && owned(b).length > 0 && owned(a).length + owned(b).length === 8
        ? true
        : undefined,
    );
    return [a, b];
  }

  it('one node owns every partition, applies commands, and publishes events through the outbox', async () => {
    fresh();
    const a = await node('a', 4);
    await until('node a owns all 4 partitions', async () => (owned(a).length === 4 ? true : undefined));
    expect(await a.send(Counter, `c-${suffix}`, 'add', { by: 5 })).toBe(5);
    expect(await a.send(Counter, `c-${suffix}`, 'add', { by: 2 })).toBe(7);
    await expect(a.send(Counter, `c-${suffix}`, 'fail', {})).rejects.toThrow('refused by the handler');
    // The events reach the topic with the relay's header, in order.
    const events = await until('both events on Kafka', async () => {
      const found: LogRecord[] = [];
      for (let partition = 0; partition < 4; partition++) {
        const { end } = await reader.offsets('ClusterCounter.events', partition);
        if (end === 0) continue;
        const records = await reader.read('ClusterCounter.events', partition, 0, { maxRecords: 10_000 });
        found.push(...records.filter((record) => record.headers['meridian-entity-id'] === `c-${suffix}`));
      }
      return found.length >= 2 ? found : undefined;
    });
    expect(events.map((record) => decodeJson(record.value))).toEqual([{ by: 5 }, { by: 2 }]);
    expect(events.every((record) => /^\d+:\d+$/.test(record.headers['meridian-outbox'] ?? ''))).toBe(true);
  });

  it('two nodes split the partitions; commands and sagas for ids of the other node are routed and applied once', async () => {
    const [a, b] = await twoNodes();
    // Ten counters: about half are owned by b; every add from a applies exactly once.
    const ids = Array.from({ length: 10 }, (_, index) => `k-${suffix}-${index}`);
    for (const id of ids) expect(await a.send(Counter, id, 'add', { by: 1 })).toBe(1);
    for (const id of ids) expect(await b.send(Counter, id, 'add', { by: 1 })).toBe(2);
    await expect(a.send(Counter, ids[0]!, 'fail', {})).rejects.toThrow('refused by the handler');
    await expect(b.send(Counter, ids[0]!, 'fail', {})).rejects.toThrow('refused by the handler');
    for (const id of ids) expect((await a.state(Counter, id))?.state).toEqual({ value: 2 });
    // Sagas started on either node, each sending to counters of both nodes.
    const handles = [];
    for (let index = 0; index < 6; index++) {
      const starter = index % 2 === 0 ? a : b;
      handles.push(
        await starter.startSaga(Transfer, `t-${suffix}-${index}`, {
          from: ids[index]!,
          to: ids[index + 1]!,
          sleepMs: 100,
        }),
      );
    }
    for (const handle of handles) await handle.result();
    // from: -1, to: +1 and +10, summed over the chain 0 → 1 → ... → 6.
    const values = await Promise.all(ids.map(async (id) => (await a.state(Counter, id))?.state.value));
    expect(values).toEqual([1, 12, 12, 12, 12, 12, 13, 2, 2, 2]);
  });

  /** A store wrapper whose stores of replies to sagas named `<prefix>…` wait until `open()`. */
  function replyGate(prefix: string) {
    let reached = false;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const wrap = (store: PostgresStore): Store => {
      const transaction = store.transaction.bind(store);
      store.transaction = (fn, options) =>
        transaction((tx) => {
          const put = tx.replies.put.bind(tx.replies);
          tx.replies.put = async (reply) => {
            if (reply.requestId.startsWith(`saga/${prefix}`)) {
              reached = true;
              await gate;
            }
            return put(reply);
          };
          return fn(tx);
        }, options);
      return store;
    };
    return { wrap, open: () => open(), reached: () => reached };
  }

  /** Once the partitions are split: a counter node b owns, and a saga id (`<prefix>-…`) node a owns. */
  async function splitAcross(a: Runtime, b: Runtime, prefix: string) {
    await until('the partitions split across both nodes', async () =>
      owned(a).length > 0 && owned(b).length > 0 && owned(a).length + owned(b).length === 8
        ? true
        : undefined,
    );
    const ofB = (id: string) => owned(b).includes(workPartitionOf(id, 8));
    const candidates = Array.from({ length: 64 }, (_, index) => `${suffix}-${index}`);
    return {
      counterId: `c-${candidates.find((id) => ofB(`c-${id}`))}`,
      sagaId: `${prefix}-${candidates.find((id) => !ofB(`${prefix}-${id}`))}`,
    };
  }

  it('a reply the database does not hold (a phantom from a failed-over primary) is not journaled: the saga waits for the stored one', async () => {
    fresh();
    // Node b's stores of the saga's reply wait for the gate: meanwhile a reply that no
    // transaction committed reaches node a, as one read from a primary's surviving backends
    // after it was killed (before its standby had the reply) would.
    const gate = replyGate('phantom-');
    const a = await node('a');
    const b = await node('b', 8, undefined, 20_000, gate.wrap);
    const { counterId, sagaId } = await splitAcross(a, b, 'phantom');
    const handle = await a.startSaga(AddOnce, sagaId, { id: counterId });
    await until('node b applying the request', async () => (gate.reached() ? true : undefined));
    // The request is the journal's second entry (after '$start'): its id names the saga and it.
    const requestId = `saga/${sagaId}/1`;
    const phantom = {
      requestId,
      partition: workPartitionOf(counterId, 8),
      ok: true,
      reply: 999,
      error: null,
      code: null,
      createdAt: Date.now(),
    };
    const outsider = await openPostgresStore({ connectionString: pgUrl!, schema });
    try {
      await outsider.transaction((tx) => tx.notify('meridian_replies', JSON.stringify([requestId, phantom])));
    } finally {
      await outsider.close();
    }
    // Node a took the phantom and tried to journal it: refused, the saga parked, and the
    // journal still holds only the request.
    const refusal = await until(
      'the phantom refused',
      async () => a.problems().find((problem) => problem.sagaId === sagaId),
      10_000,
    ).finally(() => gate.open());
    expect(refusal.error).toContain(`The reply to request '${requestId}' is not stored`);
    expect((await a.progress(sagaId))?.calls).toEqual([]);
    await expect(handle.result()).resolves.toBe(1);
    expect((await a.state(Counter, counterId))?.state).toEqual({ value: 1 });
  });

  it('a store error while a saga waits for a routed reply parks the saga, which waits again: it never fails or compensates for it', async () => {
    fresh();
    // Node b's store of the reply waits for the gate, so node a's saga is still waiting when its
    // safety poll reads the reply: that read fails as a read during a PostgreSQL failover does
    // (CI found a saga failed and compensated by it, though its routed commit had been applied).
    const gate = replyGate('waitfail-');
    let failedReads = 0;
    // The saga's wait reads the reply with a plain read first: the first such read fails.
    const failing = (store: PostgresStore): Store => {
      const read = store.read.bind(store);
      store.read = (fn) =>
        read((reader) => {
          const get = reader.replies.get.bind(reader.replies);
          reader.replies.get = async (requestId) => {
            if (requestId.startsWith('saga/waitfail-') && failedReads === 0) {
              failedReads++;
              throw new RetryableError('PostgreSQL at 127.0.0.1:5442 is a standby (in recovery): a failover');
            }
            return get(requestId);
          };
          return fn(reader);
        });
      return store;
    };
    const a = await node('a', 8, undefined, 20_000, failing);
    const b = await node('b', 8, undefined, 20_000, gate.wrap);
    const { counterId, sagaId } = await splitAcross(a, b, 'waitfail');
    const handle = await a.startSaga(AddOnce, sagaId, { id: counterId });
    await until('node b applying the request', async () => (gate.reached() ? true : undefined));
    const parked = await until(
      'the failed read reported',
      async () => a.problems().find((problem) => problem.sagaId === sagaId),
      15_000,
    ).finally(() => gate.open());
    expect(parked.message).toBe('waiting for a routed reply failed; the saga is parked');
    await expect(handle.result()).resolves.toBe(1);
    expect((await a.saga(sagaId))?.status).toBe('completed');
    expect((await a.state(Counter, counterId))?.state).toEqual({ value: 1 });
  }, 60_000);

  it("a saga started on another node ends for its caller by the owner's notification, without a read of the saga", async () => {
    fresh();
    // Node a's reads of saga records: awaiting a routed saga's end would read it first, and
    // again at each safety poll, unless its start announced the wait before it was sent.
    let sagaReads = 0;
    const counted = (store: PostgresStore): Store => {
      const read = store.read.bind(store);
      store.read = (fn) =>
        read((tx) => {
          const get = tx.sagas.get.bind(tx.sagas);
          tx.sagas.get = (id: string) => {
            sagaReads++;
            return get(id);
          };
          return fn(tx);
        });
      return store;
    };
    const a = await node('a', 8, undefined, 20_000, counted);
    const b = await node('b');
    await until('the partitions split across both nodes', async () =>
      owned(a).length > 0 && owned(b).length > 0 && owned(a).length + owned(b).length === 8
        ? true
        : undefined,
    );
    const ids = Array.from({ length: 40 }, (_, index) => `e-${suffix}-${index}`);
    const elsewhere = ids.filter((id) => !owned(a).includes(workPartitionOf(id, 8))).slice(0, 3);
    expect(elsewhere).toHaveLength(3);
    for (const id of elsewhere) {
      const handle = await a.startSaga(Transfer, id, { from: `${id}-from`, to: `${id}-to`, sleepMs: 50 });
      await handle.result();
    }
    expect(sagaReads).toBe(0);
    // Started again (it exists and has ended): its end is read, not awaited in vain.
    await (
      await a.startSaga(Transfer, elsewhere[0]!, {
        from: `${elsewhere[0]}-from`,
        to: `${elsewhere[0]}-to`,
        sleepMs: 50,
      })
    ).result();
    expect(sagaReads).toBe(1);
  });

  it('concurrent sends to both nodes journal and apply once; any node delivers a saga its signal', async () => {
    const [a, b] = await twoNodes();
    const ids = Array.from({ length: 8 }, (_, index) => `s-${suffix}-${index}`);
    const sagaIds = ids.slice(0, 4).map((id) => `approval-${id}`);
    for (const [index, sagaId] of sagaIds.entries()) {
      const starter = index % 2 === 0 ? a : b;
      await starter.startSaga(Approved, sagaId, { a: ids[index]!, b: ids[index + 4]! });
    }
    // Each signal goes through the node that does not own the saga, and through the other one too.
    for (const sagaId of sagaIds) {
      const owner = owned(a).includes(a.cluster!.partitionOf(sagaId)) ? a : b;
      const other = owner === a ? b : a;
      await until(`saga ${sagaId} waiting`, async () =>
        (await a.progress(sagaId))?.calls.length === 2 ? true : undefined,
      );
      await expect(other.signal(sagaId, 'approve', `by ${other.cluster!.node}`)).resolves.toBe('delivered');
      await expect(owner.signal(sagaId, 'approve', 'again')).resolves.toBe('duplicate');
      await expect(other.signal(sagaId, 'release', null)).resolves.toBe('delivered');
    }
    for (const sagaId of sagaIds) {
      const result = await a.handle<{ added: number[]; approval: string }>(sagaId).result();
      expect(result.added).toEqual([1, 1]);
      expect(result.approval).toMatch(/^by [ab]$/);
    }
    for (const id of ids) expect((await a.state(Counter, id))?.state).toEqual({ value: 1 });
  });

  it('any node cancels a saga: the owner of its partition ends its wait and undoes its sends', async () => {
    const [a, b] = await twoNodes();
    const ids = [`h-${suffix}-0`, `h-${suffix}-1`];
    const sagaIds = [0, 1, 2, 3].map((index) => `held-${suffix}-${index}`);
    for (const sagaId of sagaIds) await a.startSaga(Held, sagaId, { a: ids[0]!, b: ids[1]! });
    for (const sagaId of sagaIds) {
      const owner = owned(a).includes(a.cluster!.partitionOf(sagaId)) ? a : b;
      const other = owner === a ? b : a;
      await until(`saga ${sagaId} waiting`, async () =>
        (await a.journal(sagaId)).some((entry) => entry.name === '$await:approve') ? true : undefined,
      );
      // From the node that does not own it: routed to the owner, which keeps the request.
      await expect(other.cancelSaga(sagaId, { reason: `by ${other.cluster!.node}` })).resolves.toBe(
        'requested',
      );
      await expect(owner.cancelSaga(sagaId)).resolves.toBe('duplicate');
      await expect(other.handle(sagaId).result()).rejects.toMatchObject({ status: 'cancelled' });
      await expect(other.cancelSaga(sagaId)).resolves.toBe('duplicate');
    }
    for (const id of ids) expect((await a.state(Counter, id))?.state).toEqual({ value: 0 });
    // An ended saga refuses a cancellation with the typed error, across nodes too.
    await a.startSaga(Transfer, `done-${suffix}`, { from: ids[0]!, to: ids[1]!, sleepMs: 0 });
    await a.handle(`done-${suffix}`).result();
    for (const runtime of [a, b]) {
      await expect(runtime.cancelSaga(`done-${suffix}`)).rejects.toMatchObject({ code: 'SAGA_ENDED' });
    }
  });

  it('a node that stops hands its partitions over, and its sleeping sagas finish on the other', async () => {
    fresh();
    const a = await node('a');
    const b = await node('b');
    await until('the partitions split', async () =>
      owned(a).length + owned(b).length === 8 && owned(b).length > 0 ? true : undefined,
    );
    const ids = Array.from({ length: 8 }, (_, index) => `s-${suffix}-${index}`);
    const sagaIds = ids.slice(0, 6).map((_, index) => `u-${suffix}-${index}`);
    for (const [index, id] of sagaIds.entries()) {
      await a.startSaga(Transfer, id, { from: ids[index]!, to: ids[index + 1]!, sleepMs: 1500 });
    }
    // Stop b while the sagas sleep: a takes every partition and wakes them.
    const stopped = opened.findIndex((entry) => entry.runtime === b);
    const [gone] = opened.splice(stopped, 1);
    await gone!.runtime.stop();
    await gone!.log.close();
    await gone!.store.close();
    await until('a owns every partition', async () => (owned(a).length === 8 ? true : undefined));
    for (const id of sagaIds) {
      const output = await a.handle(id).result();
      expect(output).toHaveProperty('after');
    }
    const records = await Promise.all(sagaIds.map((id) => a.saga(id)));
    expect(records.every((record) => record?.status === 'completed')).toBe(true);
  });

  it("a subscription's records reach the owner of the entity they send to, and apply once, re-sends included", async () => {
    fresh();
    const a = await node('a');
    const b = await node('b');
    await until('the partitions split', async () =>
      owned(a).length + owned(b).length === 8 && owned(b).length > 0 ? true : undefined,
    );
    const keys = Array.from({ length: 12 }, (_, index) => `t-${suffix}-${index}`);
    const topic = `cluster.ticks.${suffix}`;
    const records = keys.flatMap((key, index) => [
      { key, value: new TextEncoder().encode(JSON.stringify({ by: 1 })) },
      { key, value: new TextEncoder().encode(JSON.stringify({ by: 2, start: index < 3 })) },
    ]);
    await reader.append(topic, records);
    // The same record re-sent by a relay (same meridian-outbox header, a new offset) applies once.
    const resent = {
      key: keys[0]!,
      value: new TextEncoder().encode(JSON.stringify({ by: 100 })),
      headers: { 'meridian-outbox': '3:999999' },
    };
    await reader.append(topic, [resent, resent]);
    const values = await until('every tick counted', async () => {
      const states = await Promise.all(keys.map(async (key) => (await a.state(Counter, key))?.state.value));
      // 1 + 2 each (+100 once for the re-sent record), less 1 where the started saga took it.
      const expected = keys.map((_, index) => (index === 0 ? 102 : index < 3 ? 2 : 3));
      return JSON.stringify(states) === JSON.stringify(expected) ? states : undefined;
    });
    expect(values[0]).toBe(102);
    for (const key of keys.slice(0, 3)) {
      expect(await a.handle(`from-${key}`).result()).toHaveProperty('after', 11);
    }
    expect(await a.deadLetters()).toEqual([]);
  });

  it('the owner of partition 0 leads: its singleton moves with the partition and a stale leader cannot write', async () => {
    fresh();
    const runs: string[] = [];
    const a = await node('a', 4, runs);
    const b = await node('b', 4, runs);
    await until('the partitions split', async () =>
      owned(a).length + owned(b).length === 4 && owned(b).length > 0 ? true : undefined,
    );
    const [leader, other] = owned(a).includes(0) ? [a, b] : [b, a];
    await until('the leader runs the singleton', async () =>
      leader.leader && !other.leader ? true : undefined,
    );
    const leaderName = leader.cluster!.node;
    await until('a fenced write by the leader', async () =>
      runs.includes(`${leaderName}:wrote`) ? true : undefined,
    );
    // Another node claims partition 0 behind the leader's back: its next write is refused.
    await opened[0]!.store.transaction((tx) => tx.partitions.claim(0, 'intruder', 1));
    await until('the stale leader is refused', async () =>
      runs.includes(`${leaderName}:FENCED`) ? true : undefined,
    );
    expect(leader.leader).toBe(false);
    // The leader leaves; the group gives partition 0 to the other node, which leads from then on.
    const index = opened.findIndex((entry) => entry.runtime === leader);
    const [gone] = opened.splice(index, 1);
    await gone!.runtime.stop();
    await gone!.log.close();
    await gone!.store.close();
    await until('the other node leads', async () => (other.leader ? true : undefined));
    const otherName = other.cluster!.node;
    await until('a write by the new leader', async () =>
      runs.includes(`${otherName}:wrote`) ? true : undefined,
    );
  });

  it("a subscription's failing records are retried under its policy on whichever node handles them, then dead-lettered", async () => {
    fresh();
    const a = await node('a');
    const b = await node('b');
    await until('the partitions split', async () =>
      owned(a).length + owned(b).length === 8 && owned(b).length > 0 ? true : undefined,
    );
    // Records of both nodes' keys: those the consuming node does not own are forwarded and retried
    // at their owner, the others retried where they were consumed; the same policy either way.
    const keys = Array.from({ length: 8 }, (_, index) => `r-${suffix}-${index}`);
    const encode = (value: object) => new TextEncoder().encode(JSON.stringify(value));
    await reader.append(`cluster.ticks.${suffix}`, [
      ...keys.map((key) => ({ key, value: encode({ by: 1, failures: 2 }) })),
      ...keys.map((key) => ({ key, value: encode({ by: 100, failures: 5 }) })),
    ]);
    await until('every record handled on its third attempt', async () => {
      const states = await Promise.all(keys.map(async (key) => (await a.state(Counter, key))?.state.value));
      return states.every((value) => value === 1) ? true : undefined;
    });
    const letters = await until('the always-failing records dead-lettered', async () => {
      const found = await a.deadLetters({ limit: 100 });
      return found.length === keys.length ? found : undefined;
    });
    expect(letters.every((letter) => letter.attempts === 3)).toBe(true);
    expect(letters.every((letter) => letter.error === 'tick fails on attempt 3')).toBe(true);
    expect(new Set(letters.map((letter) => new TextDecoder().decode(letter.key!)))).toEqual(new Set(keys));
  });

  it('a node whose partition another node claimed cannot write for it, and claims it again while the group assigns it there', async () => {
    fresh();
    const a = await node('a', 2, undefined, 2000);
    await until('a owns both partitions', async () => (owned(a).length === 2 ? true : undefined));
    const store = opened[0]!.store;
    // Another node claims a's partitions behind its back (as after a pause a's group session ended).
    const intruder = await store.transaction(async (tx) => [
      await tx.partitions.claim(0, 'intruder', 1),
      await tx.partitions.claim(1, 'intruder', 1),
    ]);
    // Nothing is written under a's old epochs: the command is refused (FENCED) when it meets the
    // new ones; or, when another of a's transactions (its housekeeping singleton) met them first
    // and a gave the partitions up, it is routed, and applied only once a has claimed the
    // partitions again (below) — in time for its reply, or after it (TIMEOUT).
    const first = await a.send(Counter, `f-${suffix}`, 'add', { by: 1 }).then(
      () => 'applied',
      (error: { code?: string }) => error.code,
    );
    expect(['FENCED', 'TIMEOUT', 'applied']).toContain(first);
    // The group still assigns the partitions to a (the intruder is no member): once a write of
    // a's met the intruder's epoch of a partition, a claims that partition again with a newer
    // epoch rather than leaving it held by nobody, and serves it again. (It used to give it up
    // for good, and every request for it waited forever.) A partition a has not written for
    // since keeps its stale epoch until a write meets the new one.
    const partition = a.cluster!.partitionOf(`f-${suffix}`);
    await until('a claimed the partition again', async () => {
      const epochs = await store.transaction((tx) => tx.partitions.epochs([partition]));
      const newer = epochs.get(partition)! > intruder[partition]!;
      return owned(a).includes(partition) && newer ? true : undefined;
    });
    let index = 0;
    while (a.cluster!.partitionOf(`g-${suffix}-${index}`) !== partition) index++;
    expect(await a.send(Counter, `g-${suffix}-${index}`, 'add', { by: 1 })).toBe(1);
    // The first command applied at most once.
    expect([undefined, 1]).toContain((await a.state(Counter, `f-${suffix}`))?.state.value);
  }, 60_000);

  it('a node whose partitions move while their saga steps still run goes on serving the partitions it keeps', async () => {
    fresh();
    const a = await nodeWithStuckSaga('a', true);
    await until('a owns all 4 partitions', async () => (owned(a).length === 4 ? true : undefined));
    // A saga in every partition, each stuck in a step on a.
    const sagaIds: string[] = [];
    for (let index = 0; sagaIds.length < 4; index++) {
      const id = `stuck-${suffix}-${index}`;
      const partition = a.cluster!.partitionOf(id);
      if (!sagaIds.some((other) => a.cluster!.partitionOf(other) === partition)) sagaIds.push(id);
    }
    for (const id of sagaIds)
      await a.startSaga(
        saga('ClusterStuck', async () => 0),
        id,
        undefined,
      );
    // b joins: a gives some partitions up while their steps still run (drainTimeoutMs 1000).
    const b = await nodeWithStuckSaga('b', false);
    await until('the partitions split', async () =>
      owned(a).length > 0 && owned(b).length > 0 && owned(a).length + owned(b).length === 4
        ? true
        : undefined,
    );
    // a still applies what is routed to the partitions it kept (it used to wait for the stuck
    // steps forever, and every routed request timed out), and b finishes the sagas it took.
    let index = 0;
    while (!owned(a).includes(a.cluster!.partitionOf(`kept-${suffix}-${index}`))) index++;
    const key = `kept-${suffix}-${index}`;
    expect(await b.send(Counter, key, 'add', { by: 1 })).toBe(1);
    const taken = sagaIds.filter((id) => owned(b).includes(b.cluster!.partitionOf(id)));
    for (const id of taken) await expect(b.handle(id).result()).resolves.toBe(1);
  });
});
