// bindEntityChanges on a real embedded runtime (SQLite): a committed entity change invalidates
// its cached reads on every node before the writer's `send` resolves, a projection keeps hot
// fields from thrashing the cache, and a load that read the old state and lands after the
// invalidation stores nothing — in process, and in Redis (where the other node missed the
// message and only the version stamps stand between it and the stale value).
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { entity } from '../runtime/definitions.ts';
import { type EmbeddedFixture, openEmbedded } from '../runtime/harness.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { type Cache, createCache } from './cache.ts';
import { bindEntityChanges } from './entity-binding.ts';
import { MemoryInvalidationHub } from './invalidation.ts';
import type { CacheOptions } from './options.ts';
import { redisTier } from './redis-tier.ts';

interface Profile {
  name: string;
  visits: number;
}

const Customer = entity('BoundCustomer', {
  initial: (): Profile => ({ name: '', visits: 0 }),
  commands: {
    rename(state, input: { name: string }) {
      return { state: { ...state, name: input.name } };
    },
    visit(state) {
      return { state: { ...state, visits: state.visits + 1 } };
    },
    forget() {
      return { delete: true };
    },
  },
});

const Other = entity('BoundOther', {
  initial: () => ({ n: 0 }),
  commands: { bump: (state) => ({ state: { n: state.n + 1 } }) },
});

/** What the cache holds: the profile's name with the entity version it was read at (0: absent). */
type Cached = { name: string; version: number } | null;

const redisUrl = process.env.MERIDIAN_TEST_REDIS_URL;

/** A gate a loader waits at: the test learns when the load has read, and decides when it may finish. */
function gate(): { wait: Promise<void>; open: () => void; read: Promise<void>; hasRead: () => void } {
  let open!: () => void;
  let hasRead!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  const read = new Promise<void>((resolve) => (hasRead = resolve));
  return { wait, open, read, hasRead };
}

/** Polls `check` (real time, every 5 ms) until it returns true; fails after `timeoutMs`. */
async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('bindEntityChanges (embedded runtime)', () => {
  let fixture: EmbeddedFixture;
  let runtime: Runtime;
  const caches: Cache<unknown>[] = [];
  afterEach(async () => {
    for (const cache of caches.splice(0)) cache.close();
    await fixture.destroy();
  });

  async function started(): Promise<Runtime> {
    fixture = openEmbedded();
    runtime = fixture.runtime().register(Customer, Other);
    await runtime.start();
    return runtime;
  }

  /** The profile as the store has it now, read with its version. */
  async function readProfile(id: string): Promise<Cached> {
    const found = await runtime.state(Customer, id);
    return found === null ? null : { name: found.state.name, version: found.version };
  }

  function cache(options: Partial<CacheOptions<Cached>> = {}): Cache<Cached> {
    const made = createCache<Cached>({ name: 'profiles', ttlMs: 60_000, loader: readProfile, ...options });
    caches.push(made as Cache<unknown>);
    return made;
  }

  it("invalidates the changed entity's reads on every node before the writer's send resolves", async () => {
    await started();
    const hub = new MemoryInvalidationHub();
    const nodeA = cache({ invalidation: hub.connect('a') });
    const nodeB = cache({ invalidation: hub.connect('b') });
    bindEntityChanges(runtime, nodeA, { entity: Customer });
    await runtime.send(Customer, 'c1', 'rename', { name: 'Ada' });
    expect(await nodeA.get('c1')).toEqual({ name: 'Ada', version: 1 });
    expect(await nodeB.get('c1')).toEqual({ name: 'Ada', version: 1 });
    await runtime.send(Customer, 'c1', 'rename', { name: 'Ada L.' });
    // No waiting: the commit invalidated both copies before the send resolved.
    expect(nodeA.peek('c1')).toBeUndefined();
    expect(nodeB.peek('c1')).toBeUndefined();
    expect(await nodeB.get('c1')).toEqual({ name: 'Ada L.', version: 2 });
    // Another entity type's changes leave the cache alone.
    await runtime.send(Other, 'c2', 'bump', undefined);
    expect(nodeB.peek('c2')).toBeUndefined();
    expect(nodeB.peek('c1')).toEqual({ name: 'Ada L.', version: 2 });
  });

  it('with a projection, a change the cached reads do not show invalidates nothing', async () => {
    await started();
    const profiles = cache();
    bindEntityChanges(runtime, profiles, { entity: Customer, project: (state) => state?.name });
    await runtime.send(Customer, 'c1', 'rename', { name: 'Bo' });
    await profiles.get('c1');
    for (let visit = 0; visit < 5; visit++) await runtime.send(Customer, 'c1', 'visit', undefined);
    expect(profiles.peek('c1')).toEqual({ name: 'Bo', version: 1 });
    await runtime.send(Customer, 'c1', 'rename', { name: 'Bob' });
    expect(profiles.peek('c1')).toBeUndefined();
    expect(await profiles.get('c1')).toEqual({ name: 'Bob', version: 7 });
    expect(profiles.snapshot()).toMatchObject({ loads: 2 });
  });

  it('invalidates the keys a key function names, and reports bad keys as runtime problems', async () => {
    await started();
    const pages = createCache<string>({ name: 'pages', ttlMs: 60_000 });
    caches.push(pages as Cache<unknown>);
    bindEntityChanges(runtime, pages, {
      entity: Customer,
      keys: (change) => (change.id === 'bad' ? [''] : [`card:${change.id}`, `list:${change.state?.name[0]}`]),
    });
    await pages.set('card:c1', 'old card');
    await pages.set('list:Z', 'old list');
    await pages.set('list:A', 'unrelated');
    await runtime.send(Customer, 'c1', 'rename', { name: 'Zed' });
    expect([pages.peek('card:c1'), pages.peek('list:Z'), pages.peek('list:A')]).toEqual([
      undefined,
      undefined,
      'unrelated',
    ]);
    await runtime.send(Customer, 'bad', 'rename', { name: 'x' });
    expect(runtime.problems().at(-1)?.error).toMatch(/returned a key that is not a string of 1 to 1024/);
    expect(() => bindEntityChanges(runtime, pages, {} as never)).toThrow(ValidationError);
  });

  it('a load that read the old state and finishes after the invalidation serves its caller but stores nothing', async () => {
    await started();
    await runtime.send(Customer, 'c1', 'rename', { name: 'old' });
    const profiles = cache();
    bindEntityChanges(runtime, profiles, { entity: Customer });
    const late = gate();
    const lateRead = profiles.get('c1', async (id) => {
      const read = await readProfile(id);
      late.hasRead();
      await late.wait;
      return read;
    });
    // The load has read version 1; now the entity changes, and its copy is invalidated.
    await late.read;
    await runtime.send(Customer, 'c1', 'rename', { name: 'new' });
    late.open();
    expect(await lateRead).toEqual({ name: 'old', version: 1 });
    expect(profiles.peek('c1')).toBeUndefined();
    expect(await profiles.get('c1')).toEqual({ name: 'new', version: 2 });
  });

  describe.skipIf(!redisUrl)('with Redis (L2) and versions', () => {
    let redis: Redis;
    let prefix: string;
    beforeAll(() => {
      redis = new Redis(redisUrl ?? '');
    });
    afterAll(() => redis.disconnect());

    /** Two nodes' caches over one Redis key prefix, new for each test. */
    function nodes(hub: MemoryInvalidationHub): [writer: Cache<Cached>, reader: Cache<Cached>] {
      prefix = `binding-test:${process.pid}:${Date.now()}:${Math.random()}:`;
      return [versioned(hub, 'writer'), versioned(hub, 'reader')];
    }

    function versioned(hub: MemoryInvalidationHub, node: string): Cache<Cached> {
      return cache({
        l2: redisTier({ redis, keyPrefix: prefix, timeoutMs: 2_000 }),
        invalidation: hub.connect(node),
        versionOf: (value) => value?.version ?? 0,
      });
    }

    it('a late load on a node that missed the invalidation is refused by the version stamps in Redis', async () => {
      await started();
      await runtime.send(Customer, 'c1', 'rename', { name: 'old' });
      const hub = new MemoryInvalidationHub();
      const [writer, reader] = nodes(hub);
      bindEntityChanges(runtime, writer, { entity: Customer });
      const late = gate();
      const lateRead = reader.get('c1', async (id) => {
        const read = await readProfile(id);
        late.hasRead();
        await late.wait;
        return read;
      });
      await late.read;
      hub.disconnect('reader'); // the reader misses the invalidation message
      await runtime.send(Customer, 'c1', 'rename', { name: 'new' });
      await until(
        'the tombstone at version 2 in Redis',
        async () => (await redis.hget(`${prefix}profiles:c1`, 'v')) === '2',
      );
      late.open();
      expect(await lateRead).toEqual({ name: 'old', version: 1 });
      await until('the late write refused', () => reader.snapshot().writesRejected === 1);
      expect(reader.peek('c1')).toBeUndefined();
      expect(await reader.get('c1')).toEqual({ name: 'new', version: 2 });
    });

    it('deleting and re-creating an entity never serves the absence or the old entity afterwards', async () => {
      await started();
      const hub = new MemoryInvalidationHub();
      const [writer, reader] = nodes(hub);
      bindEntityChanges(runtime, writer, { entity: Customer });
      /**
       * The writer's node reads its change at once; the reader's node once the invalidation
       * message reached it (after the tombstone landed in Redis): never anything older after that.
       */
      async function expectBoth(expected: Cached): Promise<void> {
        expect(await writer.get('c1')).toEqual(expected);
        await until(`the reader sees ${JSON.stringify(expected)}`, async () => {
          const seen = await reader.get('c1');
          return JSON.stringify(seen) === JSON.stringify(expected);
        });
        for (let read = 0; read < 3; read++) expect(await reader.get('c1')).toEqual(expected);
      }
      await expectBoth(null); // absences cached at version 0
      await runtime.send(Customer, 'c1', 'rename', { name: 'first' });
      await expectBoth({ name: 'first', version: 1 });
      await runtime.send(Customer, 'c1', 'rename', { name: 'first, renamed' });
      await expectBoth({ name: 'first, renamed', version: 2 });
      await runtime.send(Customer, 'c1', 'forget', undefined);
      await expectBoth(null);
      await runtime.send(Customer, 'c1', 'rename', { name: 'second life' });
      await expectBoth({ name: 'second life', version: 1 });
      await runtime.send(Customer, 'c1', 'rename', { name: 'second life, renamed' });
      await expectBoth({ name: 'second life, renamed', version: 2 });
    });
  });
});
