// bindEntityChanges on the cluster shape, against real PostgreSQL, Kafka and Redis: two runtime
// nodes share a schema and a consumer group, and each has the same cache (L1 in front of Redis,
// invalidations over Redis pub/sub) bound to its own runtime. A change is reported by the node
// that owns the entity (wherever the command was sent from), and its invalidation reaches the
// other node's L1; a load on the other node that read the old state and lands after the
// invalidation stores nothing, in its L1 or in Redis.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import { parseBrokerList } from '../log/kafka/options.ts';
import { entity } from '../runtime/definitions.ts';
import type { EntityChange } from '../runtime/entity-changes.ts';
import { createRuntime, type Runtime } from '../runtime/runtime.ts';
import { openPostgresStore, type PostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import { type Cache, createCache } from './cache.ts';
import { bindEntityChanges } from './entity-binding.ts';
import { type RedisInvalidationBus, redisInvalidationBus } from './invalidation.ts';
import { redisTier } from './redis-tier.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const redisUrl = process.env.MERIDIAN_TEST_REDIS_URL;

const Profile = entity('ClusterBoundProfile', {
  initial: () => ({ name: '' }),
  commands: {
    rename: (_state, input: { name: string }) => ({ state: { name: input.name } }),
  },
});

type Cached = { name: string; version: number } | null;

/** Polls `check` (real time, every 5 ms) until it returns true; fails after `timeoutMs`. */
async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

interface TestNode {
  readonly name: string;
  readonly runtime: Runtime;
  readonly cache: Cache<Cached>;
  /** The changes this node's runtime reported (the changes it committed). */
  readonly changes: EntityChange[];
  readonly close: () => Promise<void>;
}

describe.skipIf(!pgUrl || !brokersText || !redisUrl)(
  'bindEntityChanges on the cluster shape (PostgreSQL + Kafka + Redis)',
  () => {
    const schemas = testSchemas(pgUrl ?? '', 'cachebind');
    const schema = schemas.next();
    const suffix = randomUUID().slice(0, 8);
    const keyPrefix = `meridian-test:${suffix}:`;
    const nodes: TestNode[] = [];
    let a: TestNode;
    let b: TestNode;

    async function startNode(name: string): Promise<TestNode> {
      const store: PostgresStore = await openPostgresStore({ connectionString: pgUrl!, schema });
      const log = new KafkaLog({
        brokers: parseBrokerList(brokersText!),
        clientId: `meridian-cachebind-${name}`,
        fetchMaxWaitMs: 100,
      });
      const runtime = createRuntime({
        store,
        log,
        deadLetterTopic: `meridian.dead-letters.${suffix}`,
        topics: { [Profile.eventsTopic]: { partitions: 2 } },
        cluster: {
          node: name,
          workPartitions: 8,
          workTopic: `meridian.work.${suffix}`,
          group: `meridian.nodes.${suffix}`,
          requestTimeoutMs: 20_000,
        },
      }).register(Profile);
      const redis = new Redis(redisUrl!);
      const bus: RedisInvalidationBus = redisInvalidationBus({ redis, channel: `${keyPrefix}invalidations` });
      await bus.ready();
      const cache = createCache<Cached>({
        name: 'profiles',
        ttlMs: 60_000,
        l2: redisTier({ redis, keyPrefix, timeoutMs: 2_000 }),
        invalidation: bus,
        versionOf: (value) => value?.version ?? 0,
        loader: async (id) => {
          const found = await runtime.state(Profile, id);
          return found === null ? null : { name: found.state.name, version: found.version };
        },
      });
      bindEntityChanges(runtime, cache, { entity: Profile });
      const changes: EntityChange[] = [];
      runtime.onEntityChanges((committed) => changes.push(...committed));
      await runtime.start();
      const node: TestNode = {
        name,
        runtime,
        cache,
        changes,
        close: async () => {
          await runtime.stop();
          cache.close();
          await bus.close();
          redis.disconnect();
          await log.close();
          await store.close();
        },
      };
      nodes.push(node);
      return node;
    }

    beforeAll(async () => {
      a = await startNode('a');
      b = await startNode('b');
      const owned = (node: TestNode) => node.runtime.cluster!.owned().length;
      await until(
        'the 8 work partitions split across both nodes',
        () => owned(a) > 0 && owned(b) > 0 && owned(a) + owned(b) === 8,
      );
    }, 60_000);

    afterAll(async () => {
      for (const node of nodes.splice(0)) await node.close();
      await schemas.drop(schema);
      await schemas.end();
    });

    /** An id whose work partition `owner` owns. */
    function idOwnedBy(owner: TestNode, label: string): string {
      for (let n = 0; ; n++) {
        const id = `${label}-${suffix}-${n}`;
        if (owner.runtime.cluster!.owned().includes(owner.runtime.cluster!.partitionOf(id))) return id;
      }
    }

    it("a change sent from either node is reported by the entity's owner and invalidates the other node's copy", async () => {
      const id = idOwnedBy(a, 'p');
      await b.runtime.send(Profile, id, 'rename', { name: 'one' }); // routed to a, its owner
      expect(await b.cache.get(id)).toEqual({ name: 'one', version: 1 });
      expect(await a.cache.get(id)).toEqual({ name: 'one', version: 1 });
      await b.runtime.send(Profile, id, 'rename', { name: 'two' });
      // The owner's reply can reach b before the owner's listeners have run (it travels on the
      // commit itself), so the owner's report is waited for.
      const versions = () => a.changes.filter((change) => change.id === id).map((change) => change.version);
      await until('the owner reporting version 2', () => versions().length === 2);
      expect(versions()).toEqual([1, 2]);
      expect(b.changes.some((change) => change.id === id)).toBe(false);
      // The owner's copy went when it reported the change; the other node's once the message
      // arrived — and from then on no read there returns the old name.
      expect(a.cache.peek(id)).toBeUndefined();
      await until('node b dropping its copy', () => b.cache.peek(id) === undefined);
      for (let read = 0; read < 3; read++) expect(await b.cache.get(id)).toEqual({ name: 'two', version: 2 });
    });

    it('a load on the other node that read the old state and lands after the invalidation stores nothing', async () => {
      const id = idOwnedBy(a, 'race');
      await a.runtime.send(Profile, id, 'rename', { name: 'old' });
      let hasRead!: () => void;
      let finish!: () => void;
      const read = new Promise<void>((resolve) => (hasRead = resolve));
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const lateRead = b.cache.get(id, async () => {
        const found = await b.runtime.state(Profile, id);
        hasRead();
        await finished;
        return { name: found!.state.name, version: found!.version };
      });
      await read;
      const before = b.cache.snapshot().invalidationsReceived;
      await a.runtime.send(Profile, id, 'rename', { name: 'new' });
      await until(
        'node b receiving the invalidation',
        () => b.cache.snapshot().invalidationsReceived > before,
      );
      finish();
      expect(await lateRead).toEqual({ name: 'old', version: 1 }); // its own caller gets what it read
      expect(b.cache.peek(id)).toBeUndefined();
      expect(await b.cache.get(id)).toEqual({ name: 'new', version: 2 });
      expect(await a.cache.get(id)).toEqual({ name: 'new', version: 2 });
    });
  },
);
