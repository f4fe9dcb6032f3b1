import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AlreadyExistsError, ClosedError, ConflictError, MeridianError, ValidationError } from '../errors.ts';
import { ManualClock, systemClock, systemTimers } from '../time.ts';
import type {
  Json,
  NewOutboxMessage,
  Store,
  StoredResponse,
  StoreReader,
  StoreTransaction,
} from './types.ts';

/**
 * The store contract: one suite, run unchanged against every backend (SQLite, PostgreSQL).
 * A backend passes when everything a caller can observe through `Store` behaves the same.
 */

export interface StoreFixture {
  readonly store: Store;
  /** Closes the store (if still open) and removes everything the fixture created. */
  cleanup(): Promise<void>;
  /**
   * Resolves once a transaction of this store waits for a lock another transaction holds (a
   * bounded wait: rejects if none does within a few seconds). PostgreSQL: a row lock, seen in
   * pg_locks; SQLite: the writer lock, which a second transaction queues for at once.
   */
  untilLockWait(): Promise<void>;
}

/** Opens a fresh, empty store on `clock`; each test gets its own. */
export type StoreFactory = (clock: ManualClock) => Promise<StoreFixture>;

const startMs = 1_700_000_000_000;

async function expectError<T>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => T,
): Promise<T> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(type);
  return error as T;
}

export function describeStoreContract(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let clock: ManualClock;
    let fixture: StoreFixture;
    let store: Store;
    const tx = <T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> => store.transaction(fn);

    beforeEach(async () => {
      clock = new ManualClock(startMs);
      fixture = await factory(clock);
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    describe('entities', () => {
      it('creates at version 1 and returns the state, version and write time', async () => {
        expect(await tx((t) => t.entities.put('account', 'a1', { balance: 10 }, 0))).toBe(1);
        expect(await tx((t) => t.entities.get('account', 'a1'))).toEqual({
          type: 'account',
          id: 'a1',
          state: { balance: 10 },
          version: 1,
          updatedAt: startMs,
        });
        expect(await tx((t) => t.entities.get('account', 'missing'))).toBeNull();
      });

      it('reads many entities of a type in one call: those that exist, by id', async () => {
        await tx(async (t) => {
          await t.entities.put('account', 'a1', { balance: 10 }, 0);
          await t.entities.put('account', 'a2', { balance: 20 }, 0);
          await t.entities.put('other', 'a3', { balance: 30 }, 0);
        });
        const found = await tx((t) => t.entities.getMany('account', ['a2', 'missing', 'a1', 'a3']));
        expect([...found.keys()].sort()).toEqual(['a1', 'a2']);
        expect(found.get('a2')).toEqual({
          type: 'account',
          id: 'a2',
          state: { balance: 20 },
          version: 1,
          updatedAt: startMs,
        });
        expect((await tx((t) => t.entities.getMany('account', []))).size).toBe(0);
        // Its own uncommitted write too, read in the same transaction.
        await tx(async (t) => {
          await t.entities.put('account', 'a4', { balance: 40 }, 0);
          expect((await t.entities.getMany('account', ['a4'])).get('a4')?.state).toEqual({ balance: 40 });
        });
        await expectError(
          tx((t) =>
            t.entities.getMany(
              'account',
              Array.from({ length: 1001 }, (_, i) => `id${i}`),
            ),
          ),
          ValidationError,
        );
        await expectError(
          tx((t) => t.entities.getMany('account', [''])),
          ValidationError,
        );
      });

      it('bumps the version on each write and refuses a stale version with ConflictError, changing nothing', async () => {
        await tx((t) => t.entities.put('account', 'a1', { balance: 10 }, 0));
        clock.advance(5);
        expect(await tx((t) => t.entities.put('account', 'a1', { balance: 20 }, 1))).toBe(2);
        const stale = await expectError(
          tx((t) => t.entities.put('account', 'a1', { balance: 99 }, 1)),
          ConflictError,
        );
        expect(stale.message).toBe("Cannot put entity 'account/a1' expecting version 1: its version is 2");
        await expectError(
          tx((t) => t.entities.put('account', 'a1', { balance: 99 }, 0)),
          ConflictError,
        );
        await expectError(
          tx((t) => t.entities.put('account', 'nobody', { balance: 99 }, 3)),
          ConflictError,
        );
        const record = await tx((t) => t.entities.get('account', 'a1'));
        expect(record).toMatchObject({ state: { balance: 20 }, version: 2, updatedAt: startMs + 5 });
        expect(await tx((t) => t.entities.get('account', 'nobody'))).toBeNull();
      });

      it('deletes only at the expected version; a deleted entity can be created again from 0', async () => {
        await tx((t) => t.entities.put('cart', 'c1', ['x'], 0));
        await tx((t) => t.entities.put('cart', 'c1', ['x', 'y'], 1));
        await expectError(
          tx((t) => t.entities.delete('cart', 'c1', 1)),
          ConflictError,
        );
        await expectError(
          tx((t) => t.entities.delete('cart', 'missing', 1)),
          ConflictError,
        );
        await tx((t) => t.entities.delete('cart', 'c1', 2));
        expect(await tx((t) => t.entities.get('cart', 'c1'))).toBeNull();
        expect(await tx((t) => t.entities.put('cart', 'c1', [], 0))).toBe(1);
      });

      it('lists one type in code-point order of ids, a page at a time', async () => {
        const ids = ['b', 'a', 'B', 'é', 'a1', 'z', '0', '🚀', '\uffee'];
        await tx(async (t) => {
          for (const id of ids) await t.entities.put('item', id, id, 0);
          await t.entities.put('other', 'a0', null, 0);
        });
        // Code point order: what SQLite's BINARY and PostgreSQL's "C" collation both give.
        const expected = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        const seen: string[] = [];
        let afterId: string | undefined;
        for (;;) {
          const page = await tx((t) =>
            t.entities.list('item', { limit: 4, ...(afterId ? { afterId } : {}) }),
          );
          expect(page.length).toBeLessThanOrEqual(4);
          if (page.length === 0) break;
          for (const record of page) {
            expect(record.type).toBe('item');
            expect(record.state).toBe(record.id);
          }
          seen.push(...page.map((record) => record.id));
          afterId = page[page.length - 1]?.id;
        }
        expect(seen).toEqual(expected);
        expect((await tx((t) => t.entities.list('item'))).map((record) => record.id)).toEqual(expected);
      });

      it('stores JSON state exactly as written', async () => {
        const state: Json = {
          text: 'ünïcödé \u2028 "quoted" \\ 🚀',
          numbers: [0, -1, 1.5, 1e21, Number.MAX_SAFE_INTEGER],
          nested: { empty: {}, list: [], nothing: null, yes: true, no: false },
        };
        await tx((t) => t.entities.put('doc', 'd', state, 0));
        await tx((t) => t.entities.put('scalar', 's', 'just a string', 0));
        expect((await tx((t) => t.entities.get('doc', 'd')))?.state).toEqual(state);
        expect((await tx((t) => t.entities.get('scalar', 's')))?.state).toBe('just a string');
      });

      it('gives back large states (stored packed) and small ones exactly, whichever form the previous version had', async () => {
        const large = (n: number): Json => ({
          id: 'ord-01a24de8346f32e6bd59f585',
          text: `ünïcödé 🚀 \u0000 ${'repeated words, '.repeat(n)}`,
          items: Array.from({ length: n }, (_, index) => ({ sku: `sku-${index}`, quantity: index })),
        });
        const versions: Json[] = [large(20), 'small', large(3), { tiny: true }, large(40)];
        let version = 0;
        for (const state of versions) {
          version = await tx((t) => t.entities.put('doc', 'ord-01a24de8346f32e6bd59f585', state, version));
          const record = await tx((t) => t.entities.get('doc', 'ord-01a24de8346f32e6bd59f585'));
          expect(record?.state).toEqual(state);
          expect((await tx((t) => t.entities.list('doc')))[0]?.state).toEqual(state);
        }
        expect(version).toBe(versions.length);
      });

      it('refuses bad input with a ValidationError naming the field, rule and value', async () => {
        const empty = await expectError(
          tx((t) => t.entities.put('account', '', {}, 0)),
          ValidationError,
        );
        expect(empty.message).toBe("'id' must be a non-empty string: current value is ''");
        const long = await expectError(
          tx((t) => t.entities.get('account', 'x'.repeat(513))),
          ValidationError,
        );
        expect(long.message).toBe("'id' must be at most 512 characters: current value has 513");
        const nan = await expectError(
          tx((t) => t.entities.put('account', 'a', { balance: Number.NaN }, 0)),
          ValidationError,
        );
        expect(nan.message).toContain("'state' must be JSON-serialisable");
        expect(nan.message).toContain("'balance'");
        const version = await expectError(
          tx((t) => t.entities.put('account', 'a', {}, -1)),
          ValidationError,
        );
        expect(version.message).toBe("'expectedVersion' must be >= 0: current value is -1");
        const limit = await expectError(
          tx((t) => t.entities.list('account', { limit: 1001 })),
          ValidationError,
        );
        expect(limit.message).toBe("'limit' must be <= 1000: current value is 1001");
        await expectError(
          tx((t) => t.entities.put('account', 'nul\u0000', {}, 0)),
          ValidationError,
        );
        await expectError(
          tx((t) => t.entities.put('account', 'big', { blob: 'x'.repeat(1_048_577) }, 0)),
          ValidationError,
        );
      });

      it('retention deletes the idle entities of one type in a scan of bounded steps, and no others', async () => {
        await tx(async (t) => {
          for (const id of ['a', 'b', 'c', 'd', 'e']) await t.entities.put('cart', id, { id }, 0);
          await t.entities.put('other', 'a', { id: 'a' }, 0);
        });
        const written = (await tx((t) => t.entities.get('cart', 'a')))!.updatedAt;
        // Written again later: not idle.
        const later = written + 1000;
        const step = (afterId: string, idleBefore: number) =>
          tx((t) => t.entities.deleteIdle({ type: 'cart', afterId, idleBefore, limit: 2 }));
        expect(await step('', written)).toEqual({ deleted: 0, lastId: 'b' });
        expect(await step('', later)).toEqual({ deleted: 2, lastId: 'b' });
        expect(await step('b', later)).toEqual({ deleted: 2, lastId: 'd' });
        expect(await step('d', later)).toEqual({ deleted: 1, lastId: 'e' });
        expect(await step('e', later)).toEqual({ deleted: 0, lastId: null });
        expect(await tx((t) => t.entities.list('cart'))).toEqual([]);
        expect(await tx((t) => t.entities.get('other', 'a'))).not.toBeNull();
      });

      it('matches a model map under random sequences of puts and deletes with right and wrong versions', async () => {
        type Command =
          | { kind: 'put'; key: string; skew: number; value: number }
          | { kind: 'delete'; key: string; skew: number };
        const key = fc.constantFrom('k1', 'k2', 'k3');
        // skew 0 uses the right version; anything else is a stale or future one.
        const skew = fc.constantFrom(0, 0, 0, -1, 1, -2);
        const command: fc.Arbitrary<Command> = fc.oneof(
          fc.record({ kind: fc.constant('put' as const), key, skew, value: fc.integer() }),
          fc.record({ kind: fc.constant('delete' as const), key, skew }),
        );
        let run = 0;
        await fc.assert(
          fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 25 }), async (commands) => {
            const type = `model${run++}`;
            const model = new Map<string, { version: number; value: number }>();
            for (const step of commands) {
              const current = model.get(step.key);
              const version = Math.max(0, (current?.version ?? 0) + step.skew);
              const rightVersion = version === (current?.version ?? 0);
              if (step.kind === 'put') {
                const outcome = await tx((t) => t.entities.put(type, step.key, step.value, version)).then(
                  (newVersion) => newVersion,
                  (error: unknown) => error,
                );
                if (rightVersion) {
                  expect(outcome).toBe(version + 1);
                  model.set(step.key, { version: version + 1, value: step.value });
                } else {
                  expect(outcome).toBeInstanceOf(ConflictError);
                }
              } else {
                const outcome = await tx((t) => t.entities.delete(type, step.key, version)).then(
                  () => 'deleted',
                  (error: unknown) => error,
                );
                if (rightVersion && current !== undefined) {
                  expect(outcome).toBe('deleted');
                  model.delete(step.key);
                } else {
                  expect(outcome).toBeInstanceOf(ConflictError);
                }
              }
            }
            const stored = await tx((t) => t.entities.list(type));
            expect(stored.map((record) => [record.id, record.version, record.state])).toEqual(
              [...model.entries()]
                .sort(([a], [b]) => (a < b ? -1 : 1))
                .map(([id, entry]) => [id, entry.version, entry.value]),
            );
          }),
          { numRuns: 25, seed: 20240601 },
        );
      });
    });

    describe('sagas', () => {
      const saga = (id: string, type = 'order', status: 'running' | 'completed' = 'running') => ({
        id,
        type,
        status,
        input: { orderId: id },
        createdAt: startMs,
      });

      it('creates a saga at version 1 with no output or reason, and refuses a second with the same id', async () => {
        await tx((t) => t.sagas.create(saga('s1')));
        expect(await tx((t) => t.sagas.get('s1'))).toEqual({
          id: 's1',
          type: 'order',
          status: 'running',
          input: { orderId: 's1' },
          output: null,
          reason: null,
          createdAt: startMs,
          updatedAt: startMs,
          version: 1,
        });
        await expectError(
          tx((t) => t.sagas.create(saga('s1', 'other'))),
          AlreadyExistsError,
        );
        expect((await tx((t) => t.sagas.get('s1')))?.type).toBe('order');
        expect(await tx((t) => t.sagas.get('nope'))).toBeNull();
      });

      it('updates status, output and reason at the expected version; a stale version is a ConflictError', async () => {
        await tx((t) => t.sagas.create(saga('s1')));
        expect(
          await tx((t) =>
            t.sagas.update('s1', { status: 'compensating', reason: 'card declined', at: startMs + 1 }, 1),
          ),
        ).toBe(2);
        expect(await tx((t) => t.sagas.update('s1', { status: 'compensated', at: startMs + 2 }, 2))).toBe(3);
        let record = await tx((t) => t.sagas.get('s1'));
        expect(record).toMatchObject({
          status: 'compensated',
          reason: 'card declined',
          output: null,
          updatedAt: startMs + 2,
          version: 3,
        });
        await tx((t) =>
          t.sagas.update(
            's1',
            { status: 'completed', output: { total: 5 }, reason: null, at: startMs + 3 },
            3,
          ),
        );
        record = await tx((t) => t.sagas.get('s1'));
        expect(record).toMatchObject({ status: 'completed', output: { total: 5 }, reason: null, version: 4 });
        await expectError(
          tx((t) => t.sagas.update('s1', { status: 'failed', at: startMs + 4 }, 3)),
          ConflictError,
        );
        await expectError(
          tx((t) => t.sagas.update('missing', { status: 'failed', at: startMs + 4 }, 1)),
          ConflictError,
        );
        expect((await tx((t) => t.sagas.get('s1')))?.status).toBe('completed');
      });

      it('lists sagas by id, filtered by status and type, a page at a time', async () => {
        await tx(async (t) => {
          await t.sagas.create(saga('s3', 'order'));
          await t.sagas.create(saga('s1', 'order'));
          await t.sagas.create(saga('s2', 'refund'));
          await t.sagas.create(saga('s4', 'order', 'completed'));
        });
        const ids = async (options: Parameters<StoreTransaction['sagas']['list']>[0]) =>
          (await tx((t) => t.sagas.list(options))).map((record) => record.id);
        expect(await ids({})).toEqual(['s1', 's2', 's3', 's4']);
        expect(await ids({ status: 'running' })).toEqual(['s1', 's2', 's3']);
        expect(await ids({ type: 'order' })).toEqual(['s1', 's3', 's4']);
        expect(await ids({ status: 'running', type: 'order' })).toEqual(['s1', 's3']);
        expect(await ids({ limit: 2 })).toEqual(['s1', 's2']);
        expect(await ids({ limit: 2, afterId: 's2' })).toEqual(['s3', 's4']);
        expect(await ids({ status: 'failed' })).toEqual([]);
        await expectError(
          tx((t) => t.sagas.list({ status: 'paused' as never })),
          ValidationError,
        );
      });

      it('keeps each journal dense and in order; a duplicate sequence is a ConflictError, a gap a ValidationError', async () => {
        const entry = (sagaId: string, sequence: number, name: string) => ({
          sagaId,
          sequence,
          kind: 'step' as const,
          name,
          status: 'completed' as const,
          result: { step: name },
          error: null,
          attempts: 1,
          at: startMs + sequence,
        });
        await tx(async (t) => {
          await t.sagas.appendJournal(entry('s1', 0, 'reserve'));
          await t.sagas.appendJournal(entry('s2', 0, 'other'));
          await t.sagas.appendJournal(entry('s1', 1, 'charge'));
        });
        await tx((t) =>
          t.sagas.appendJournal({
            ...entry('s1', 2, 'confirm'),
            kind: 'compensation',
            status: 'failed',
            result: null,
            error: 'boom',
            attempts: 3,
          }),
        );
        const journal = await tx((t) => t.sagas.journal('s1'));
        expect(journal.map((item) => [item.sequence, item.name])).toEqual([
          [0, 'reserve'],
          [1, 'charge'],
          [2, 'confirm'],
        ]);
        expect(journal[0]).toEqual(entry('s1', 0, 'reserve'));
        expect(journal[2]).toMatchObject({
          kind: 'compensation',
          status: 'failed',
          result: null,
          error: 'boom',
          attempts: 3,
        });
        const duplicate = await expectError(
          tx((t) => t.sagas.appendJournal(entry('s1', 1, 'charge-again'))),
          ConflictError,
        );
        expect(duplicate.message).toContain('already has journal entry 1');
        const gap = await expectError(
          tx((t) => t.sagas.appendJournal(entry('s1', 5, 'skipped'))),
          ValidationError,
        );
        expect(gap.message).toContain("'sequence' must be 3: current value is 5");
        expect((await tx((t) => t.sagas.journal('s1'))).length).toBe(3);
        expect(await tx((t) => t.sagas.journal('unknown'))).toEqual([]);
      });

      /** A saga's first journal entry, as retention's tests write it. */
      const startEntry = (id: string) => ({
        sagaId: id,
        sequence: 0,
        kind: 'event' as const,
        name: 'start',
        status: 'completed' as const,
        result: { id },
        error: null,
        attempts: 1,
        at: startMs,
      });

      it('retention deletes ended sagas of one type that ended before a time, with their journals, in bounded batches, and never a running one', async () => {
        const end = (id: string, status: 'completed' | 'compensated' | 'failed', at: number) =>
          tx((t) => t.sagas.update(id, { status, at }, 1));
        await tx(async (t) => {
          for (const id of ['a', 'b', 'c', 'd', 'run']) {
            await t.sagas.create(saga(id));
            await t.sagas.appendJournal(startEntry(id));
          }
          await t.sagas.create(saga('other', 'refund'));
        });
        await end('a', 'completed', startMs + 10);
        await end('b', 'compensated', startMs + 20);
        await end('c', 'failed', startMs + 30);
        await end('d', 'completed', startMs + 40);
        await tx((t) => t.sagas.update('other', { status: 'completed', at: startMs + 10 }, 1));
        const request = { type: 'order', endedBefore: startMs + 40, limit: 2 };
        expect(await tx((t) => t.sagas.deleteEnded(request))).toBe(2);
        expect(await tx((t) => t.sagas.deleteEnded(request))).toBe(1);
        expect(await tx((t) => t.sagas.deleteEnded(request))).toBe(0);
        for (const id of ['a', 'b', 'c']) {
          expect(await tx((t) => t.sagas.get(id))).toBeNull();
          expect(await tx((t) => t.sagas.journal(id))).toEqual([]);
        }
        // Ended at the cutoff (not before it), still running, or of another type: kept.
        expect((await tx((t) => t.sagas.get('d')))?.status).toBe('completed');
        expect(await tx((t) => t.sagas.journal('d'))).toHaveLength(1);
        expect(await tx((t) => t.sagas.journal('run'))).toHaveLength(1);
        expect((await tx((t) => t.sagas.get('other')))?.status).toBe('completed');
        expect(
          await tx((t) =>
            t.sagas.deleteEnded({ type: 'order', endedBefore: startMs + 1_000_000, limit: 10 }),
          ),
        ).toBe(1);
        expect((await tx((t) => t.sagas.get('run')))?.status).toBe('running');
      });

      it('retention deletes the journals of ended sagas once, keeping their records', async () => {
        await tx(async (t) => {
          for (const id of ['a', 'b']) {
            await t.sagas.create(saga(id));
            await t.sagas.appendJournal(startEntry(id));
          }
          await t.sagas.update('a', { status: 'completed', output: { ok: true }, at: startMs + 5 }, 1);
        });
        const request = { type: 'order', endedBefore: startMs + 100, limit: 10 };
        expect(await tx((t) => t.sagas.deleteEndedJournals(request))).toBe(1);
        expect(await tx((t) => t.sagas.deleteEndedJournals(request))).toBe(0);
        expect(await tx((t) => t.sagas.journal('a'))).toEqual([]);
        expect(await tx((t) => t.sagas.get('a'))).toMatchObject({
          status: 'completed',
          output: { ok: true },
        });
        expect(await tx((t) => t.sagas.journal('b'))).toHaveLength(1);
        expect(await tx((t) => t.sagas.deleteEnded(request))).toBe(1);
        expect(await tx((t) => t.sagas.get('a'))).toBeNull();
        await expectError(
          tx((t) => t.sagas.deleteEnded({ type: 'order', endedBefore: startMs, limit: 0 })),
          ValidationError,
        );
      });

      it('folds the journals of ended sagas once into a value that reads the same, and retention deletes it', async () => {
        const entries = (id: string) => [
          startEntry(id),
          { ...startEntry(id), sequence: 1, kind: 'step' as const, name: 'charge', result: { é: [1, 'ü'] } },
          { ...startEntry(id), sequence: 2, kind: 'compensation' as const, name: 'refund', result: null },
          {
            ...startEntry(id),
            sequence: 3,
            name: 'pay',
            status: 'failed' as const,
            error: 'no',
            attempts: 3,
            at: startMs + 7,
          },
        ];
        await tx(async (t) => {
          for (const id of ['a', 'b', 'c', 'run']) {
            await t.sagas.create(saga(id));
            for (const entry of entries(id)) await t.sagas.appendJournal(entry);
          }
          await t.sagas.update('a', { status: 'compensated', reason: 'no', at: startMs + 5 }, 1);
          await t.sagas.update('b', { status: 'completed', at: startMs + 500 }, 1);
          await t.sagas.update('c', { status: 'completed', at: startMs + 6 }, 1);
        });
        const request = { type: 'order', endedBefore: startMs + 100, limit: 10 };
        // Both ended sagas in one call (one statement on PostgreSQL), each with its own journal.
        expect(await tx((t) => t.sagas.foldEndedJournals(request))).toBe(2);
        expect(await tx((t) => t.sagas.foldEndedJournals(request))).toBe(0);
        expect(await tx((t) => t.sagas.journal('a'))).toEqual(entries('a'));
        expect(await tx((t) => t.sagas.journal('c'))).toEqual(entries('c'));
        // Ended after the cutoff or still running: rows, as they were.
        expect(await tx((t) => t.sagas.journal('b'))).toEqual(entries('b'));
        expect(await tx((t) => t.sagas.journal('run'))).toEqual(entries('run'));
        // A late runner of the ended saga is told that another got there first.
        await expectError(
          tx((t) => t.sagas.appendJournal({ ...startEntry('a'), sequence: 4 })),
          ConflictError,
        );
        expect(await tx((t) => t.sagas.deleteEndedJournals(request))).toBe(2);
        expect(await tx((t) => t.sagas.journal('a'))).toEqual([]);
        expect(await tx((t) => t.sagas.get('a'))).toMatchObject({ status: 'compensated', reason: 'no' });
        expect(await tx((t) => t.sagas.foldEndedJournals(request))).toBe(0);
        expect(await tx((t) => t.sagas.deleteEnded(request))).toBe(2);
        expect(await tx((t) => t.sagas.get('a'))).toBeNull();
      });

      it('reads the same input and output of an ended saga after its journal was folded (its record packed) and deleted, and takes a new output for it', async () => {
        const input = {
          orderId: 'big',
          lines: Array.from({ length: 12 }, (_, n) => ({ sku: `sku-${n}`, qty: n })),
        };
        const output = { chargeId: 'ch_1', note: 'ünïcödé 🚀 '.repeat(12) };
        await tx(async (t) => {
          await t.sagas.create({ ...saga('big'), input });
          await t.sagas.appendJournal(startEntry('big'));
          await t.sagas.update('big', { status: 'completed', output, at: startMs + 5 }, 1);
        });
        const request = { type: 'order', endedBefore: startMs + 100, limit: 10 };
        expect(await tx((t) => t.sagas.foldEndedJournals(request))).toBe(1);
        const expected = { id: 'big', status: 'completed', input, output, version: 2 };
        expect(await tx((t) => t.sagas.get('big'))).toMatchObject(expected);
        expect(await tx((t) => t.sagas.list({ status: 'completed' }))).toMatchObject([expected]);
        expect(await tx((t) => t.sagas.deleteEndedJournals(request))).toBe(1);
        expect(await tx((t) => t.sagas.get('big'))).toMatchObject(expected);
        await expectError(
          tx((t) => t.sagas.update('big', { status: 'completed', output: 'late', at: startMs + 6 }, 1)),
          ConflictError,
        );
        expect(
          await tx((t) => t.sagas.update('big', { status: 'failed', output: null, at: startMs + 7 }, 2)),
        ).toBe(3);
        expect(await tx((t) => t.sagas.get('big'))).toMatchObject({ input, output: null, status: 'failed' });
      });

      it('lets a transaction go on after it caught a ConflictError, and commits the rest', async () => {
        await tx((t) =>
          t.sagas.appendJournal({
            sagaId: 's',
            sequence: 0,
            kind: 'event',
            name: 'e',
            status: 'completed',
            result: null,
            error: null,
            attempts: 0,
            at: startMs,
          }),
        );
        await tx(async (t) => {
          await expectError(
            t.sagas.appendJournal({
              sagaId: 's',
              sequence: 0,
              kind: 'event',
              name: 'dup',
              status: 'completed',
              result: null,
              error: null,
              attempts: 0,
              at: startMs,
            }),
            ConflictError,
          );
          await expectError(t.entities.put('e', 'x', 1, 7), ConflictError);
          expect(await t.inbox.markApplied('c', 'm', startMs)).toBe(true);
          expect(await t.inbox.markApplied('c', 'm', startMs)).toBe(false);
          await t.entities.put('e', 'x', 1, 0);
        });
        expect((await tx((t) => t.entities.get('e', 'x')))?.version).toBe(1);
        expect(await tx((t) => t.inbox.has('c', 'm'))).toBe(true);
      });
    });

    describe('timers', () => {
      it('returns due timers earliest first (ties by id), up to the limit, and the next due time', async () => {
        expect(await tx((t) => t.timers.nextDueAt())).toBeNull();
        await tx(async (t) => {
          await t.timers.schedule({ id: 't3', dueAt: 300, kind: 'sleep', payload: { n: 3 } });
          await t.timers.schedule({ id: 't1', dueAt: 100, kind: 'sleep', payload: { n: 1 } });
          await t.timers.schedule({ id: 't2b', dueAt: 200, kind: 'deadline', payload: null });
          await t.timers.schedule({ id: 't2a', dueAt: 200, kind: 'deadline', payload: [1] });
        });
        expect(await tx((t) => t.timers.nextDueAt())).toBe(100);
        expect((await tx((t) => t.timers.due(250, 10))).map((timer) => timer.id)).toEqual([
          't1',
          't2a',
          't2b',
        ]);
        expect(await tx((t) => t.timers.due(250, 2))).toEqual([
          { id: 't1', dueAt: 100, kind: 'sleep', payload: { n: 1 }, partition: 0 },
          { id: 't2a', dueAt: 200, kind: 'deadline', payload: [1], partition: 0 },
        ]);
        expect(await tx((t) => t.timers.due(99, 10))).toEqual([]);
        expect(await tx((t) => t.timers.due(300, 10))).toHaveLength(4);
      });

      it('replaces a timer scheduled again under its id, and deletes it once', async () => {
        await tx((t) => t.timers.schedule({ id: 't', dueAt: 100, kind: 'sleep', payload: 1 }));
        await tx((t) => t.timers.schedule({ id: 't', dueAt: 500, kind: 'deadline', payload: 2 }));
        expect(await tx((t) => t.timers.due(1000, 10))).toEqual([
          { id: 't', dueAt: 500, kind: 'deadline', payload: 2, partition: 0 },
        ]);
        expect(await tx((t) => t.timers.delete('t'))).toBe(true);
        expect(await tx((t) => t.timers.delete('t'))).toBe(false);
        expect(await tx((t) => t.timers.nextDueAt())).toBeNull();
      });
    });

    describe('inbox', () => {
      it('marks a message applied once per consumer, answers has(), and prunes only older entries', async () => {
        expect(await tx((t) => t.inbox.markApplied('billing', 'm1', 100))).toBe(true);
        expect(await tx((t) => t.inbox.markApplied('billing', 'm1', 150))).toBe(false);
        expect(await tx((t) => t.inbox.markApplied('shipping', 'm1', 200))).toBe(true);
        expect(await tx((t) => t.inbox.markApplied('billing', 'm2', 300))).toBe(true);
        expect(await tx((t) => t.inbox.has('billing', 'm1'))).toBe(true);
        expect(await tx((t) => t.inbox.has('billing', 'm3'))).toBe(false);
        expect(await tx((t) => t.inbox.prune(200))).toBe(1);
        expect(await tx((t) => t.inbox.has('billing', 'm1'))).toBe(false);
        expect(await tx((t) => t.inbox.has('shipping', 'm1'))).toBe(true);
        expect(await tx((t) => t.inbox.prune(200))).toBe(0);
        // At most `limit` per call, oldest first.
        await tx(async (t) => {
          for (const id of ['m4', 'm5', 'm6']) await t.inbox.markApplied('billing', id, 250);
        });
        expect(await tx((t) => t.inbox.prune(1000, 2))).toBe(2);
        expect(await tx((t) => t.inbox.prune(1000, 2))).toBe(2);
        expect(await tx((t) => t.inbox.prune(1000, 2))).toBe(1);
      });
    });

    describe('outbox', () => {
      const message = (topic: string, n: number): NewOutboxMessage => ({
        topic,
        key: n % 2 === 0 ? new Uint8Array([n, 0, 255]) : null,
        value: n % 3 === 0 ? null : new TextEncoder().encode(`value-${n}`),
        headers: n % 2 === 0 ? { 'trace-id': `t${n}`, 'content-type': 'application/json' } : {},
        timestamp: startMs + n,
      });

      it('appends in order with increasing ids and returns pending messages oldest first, bytes intact', async () => {
        const first = await tx((t) => t.outbox.add([message('orders', 0), message('orders', 1)]));
        const second = await tx((t) =>
          t.outbox.add([message('payments', 2), message('orders', 3), message('x', 4)]),
        );
        const ids = [...first, ...second];
        expect(ids).toHaveLength(5);
        for (let index = 1; index < ids.length; index++)
          expect(ids[index]).toBeGreaterThan(ids[index - 1] ?? 0);
        const pending = await tx((t) => t.outbox.pending(10));
        expect(pending).toEqual(
          ids.map((id, n) => ({
            id,
            ...message(n === 2 ? 'payments' : n === 4 ? 'x' : 'orders', n),
            partition: 0,
          })),
        );
        expect((await tx((t) => t.outbox.pending(2))).map((item) => item.id)).toEqual(ids.slice(0, 2));
        expect(await tx((t) => t.outbox.add([]))).toEqual([]);
      });

      it('keeps an empty key or value distinct from null', async () => {
        await tx((t) =>
          t.outbox.add([
            { topic: 't', key: new Uint8Array(0), value: new Uint8Array(0), headers: {}, timestamp: 1 },
          ]),
        );
        const [stored] = await tx((t) => t.outbox.pending(1));
        expect(stored?.key).toEqual(new Uint8Array(0));
        expect(stored?.value).toEqual(new Uint8Array(0));
      });

      it('removes published messages and never reuses an id, even after the newest is removed', async () => {
        const ids = await tx((t) => t.outbox.add([0, 1, 2, 3].map((n) => message('t', n))));
        await tx((t) => t.outbox.markPublished([ids[1] ?? 0, ids[3] ?? 0]));
        expect((await tx((t) => t.outbox.pending(10))).map((item) => item.id)).toEqual([ids[0], ids[2]]);
        await tx((t) => t.outbox.markPublished([ids[0] ?? 0, ids[2] ?? 0, 999_999]));
        await tx((t) => t.outbox.markPublished([]));
        expect(await tx((t) => t.outbox.pending(10))).toEqual([]);
        const [next] = await tx((t) => t.outbox.add([message('t', 5)]));
        expect(next).toBeGreaterThan(ids[3] ?? 0);
      });

      it('writes a large batch in order', async () => {
        const batch = Array.from({ length: 250 }, (_, n) => message('bulk', n));
        const ids = await tx((t) => t.outbox.add(batch));
        expect(ids).toHaveLength(250);
        const pending = await tx((t) => t.outbox.pending(1000));
        expect(pending.map((item) => item.timestamp)).toEqual(batch.map((item) => item.timestamp));
        expect(pending.map((item) => item.id)).toEqual(ids);
        await expectError(
          tx((t) => t.outbox.add(Array.from({ length: 1001 }, (_, n) => message('bulk', n)))),
          ValidationError,
        );
      });
    });

    describe('idempotency keys', () => {
      const leaseMs = 30_000;
      const reserve = (key: string, fingerprint: string, nowMs: number) =>
        tx((t) =>
          t.idempotency.reserve({
            scope: 'orders',
            key,
            fingerprint,
            nowMs,
            leaseMs,
            expiresAt: nowMs + 86_400_000,
          }),
        );
      /** Reserves, expecting `reserved`; returns the reservation's token. */
      const reserveToken = async (key: string, fingerprint: string, nowMs: number): Promise<number> => {
        const reservation = await reserve(key, fingerprint, nowMs);
        if (reservation.outcome !== 'reserved')
          throw new Error(`not reserved: ${JSON.stringify(reservation)}`);
        return reservation.token;
      };
      const claim = (key: string, fingerprint: string, token: number) => ({
        scope: 'orders',
        key,
        fingerprint,
        token,
      });
      const response = {
        status: 201,
        headers: { 'content-type': 'application/json' },
        body: '{"orderId":"o1"}',
      };
      const complete = (key: string, fingerprint: string, token: number, stored: StoredResponse = response) =>
        tx((t) => t.idempotency.complete(claim(key, fingerprint, token), stored));
      const release = (key: string, fingerprint: string, token: number) =>
        tx((t) => t.idempotency.release(claim(key, fingerprint, token)));

      it('reserves a new key, answers in_flight to the same request and mismatch to another', async () => {
        // A new key's token is the clock's reading (see nextToken).
        expect(await reserve('k1', 'fp-a', startMs)).toEqual({
          outcome: 'reserved',
          token: startMs,
          reservedAt: startMs,
        });
        expect(await reserve('k1', 'fp-a', startMs + 10)).toEqual({
          outcome: 'in_flight',
          leaseUntil: startMs + leaseMs,
        });
        expect(await reserve('k1', 'fp-b', startMs + 10)).toEqual({ outcome: 'mismatch' });
        expect(
          await tx((t) =>
            t.idempotency.reserve({
              scope: 'payments',
              key: 'k1',
              fingerprint: 'fp-b',
              nowMs: startMs,
              leaseMs,
              expiresAt: startMs + leaseMs,
            }),
          ),
        ).toEqual({ outcome: 'reserved', token: startMs, reservedAt: startMs });
      });

      it('replays the completed response to the same request; completing twice is a ConflictError', async () => {
        const token = await reserveToken('k1', 'fp-a', startMs);
        await complete('k1', 'fp-a', token);
        expect(await reserve('k1', 'fp-a', startMs + 1)).toEqual({ outcome: 'completed', response });
        // Long after the lease: a completed key stays completed until it expires.
        expect(await reserve('k1', 'fp-a', startMs + leaseMs * 10)).toEqual({
          outcome: 'completed',
          response,
        });
        expect(await reserve('k1', 'fp-b', startMs + 1)).toEqual({ outcome: 'mismatch' });
        await expectError(complete('k1', 'fp-a', token), ConflictError);
        await expectError(complete('never', 'fp-a', 1), ConflictError);
      });

      it('tells fingerprints apart exactly, a SHA-256 hex digest (stored in binary) or text that looks like its stored form', async () => {
        const digest = 'a'.repeat(63) + 'f';
        const lookalike = `~${Buffer.from(digest, 'hex').toString('base64url')}`;
        const token = await reserveToken('k-digest', digest, startMs);
        expect(await reserve('k-digest', lookalike, startMs + 1)).toEqual({ outcome: 'mismatch' });
        expect(await reserve('k-digest', digest.toUpperCase(), startMs + 1)).toEqual({ outcome: 'mismatch' });
        await complete('k-digest', digest, token);
        expect(await reserve('k-digest', digest, startMs + 2)).toEqual({ outcome: 'completed', response });
        const other = await reserveToken('k-tilde', lookalike, startMs);
        expect(await reserve('k-tilde', digest, startMs + 1)).toEqual({ outcome: 'mismatch' });
        await expectError(complete('k-tilde', digest, other), ConflictError);
        await complete('k-tilde', lookalike, other);
        expect(await reserve('k-tilde', lookalike, startMs + 2)).toEqual({ outcome: 'completed', response });
      });

      it('gives back a large stored response (kept packed) exactly, headers and body', async () => {
        const large = {
          status: 202,
          headers: {
            location: '/orders/ord-01a24de8346f32e6bd59f585',
            'content-type': 'application/json; ü',
          },
          body: JSON.stringify({ orderId: 'ord-01a24de8346f32e6bd59f585', note: 'ünïcödé 🚀 '.repeat(30) }),
        };
        const token = await reserveToken('k-large', 'fp-a', startMs);
        await complete('k-large', 'fp-a', token, large);
        expect(await reserve('k-large', 'fp-a', startMs + 1)).toEqual({
          outcome: 'completed',
          response: large,
        });
        const empty = { status: 204, headers: {}, body: '' };
        await complete('k-empty', 'fp-a', await reserveToken('k-empty', 'fp-a', startMs), empty);
        expect(await reserve('k-empty', 'fp-a', startMs + 1)).toEqual({
          outcome: 'completed',
          response: empty,
        });
      });

      it('lets the same request take over a key whose lease ran out, with the next token; another request still gets mismatch', async () => {
        await reserve('k1', 'fp-a', startMs);
        expect(await reserve('k1', 'fp-a', startMs + leaseMs - 1)).toMatchObject({ outcome: 'in_flight' });
        expect(await reserve('k1', 'fp-b', startMs + leaseMs)).toEqual({ outcome: 'mismatch' });
        // A retry of the same request: the first attempt's reservedAt, so ids derived from it match.
        expect(await reserve('k1', 'fp-a', startMs + leaseMs)).toEqual({
          outcome: 'reserved',
          token: startMs + leaseMs,
          reservedAt: startMs,
        });
        expect(await reserve('k1', 'fp-a', startMs + leaseMs + 1)).toEqual({
          outcome: 'in_flight',
          leaseUntil: startMs + 2 * leaseMs,
        });
        await complete('k1', 'fp-a', startMs + leaseMs);
        expect(await reserve('k1', 'fp-a', startMs + leaseMs + 2)).toMatchObject({ outcome: 'completed' });
      });

      it('fences off an attempt whose lapsed lease was taken over: it can neither complete nor release the key', async () => {
        const stale = await reserveToken('k1', 'fp-a', startMs);
        const live = await reserveToken('k1', 'fp-a', startMs + leaseMs);
        expect(live).toBeGreaterThan(stale);
        const staleResponse = { ...response, body: '{"orderId":"stale"}' };
        const staleError = await expectError(complete('k1', 'fp-a', stale, staleResponse), ConflictError);
        expect(staleError.details).toMatchObject({ scope: 'orders', key: 'k1', token: stale });
        await release('k1', 'fp-a', stale);
        // The live attempt still holds the key, and completes it as usual.
        expect(await reserve('k1', 'fp-a', startMs + leaseMs + 1)).toEqual({
          outcome: 'in_flight',
          leaseUntil: startMs + 2 * leaseMs,
        });
        await complete('k1', 'fp-a', live);
        // Neither before nor after that can the stale attempt overwrite or drop the response.
        await expectError(complete('k1', 'fp-a', stale, staleResponse), ConflictError);
        await release('k1', 'fp-a', stale);
        expect(await reserve('k1', 'fp-a', startMs + leaseMs + 2)).toEqual({
          outcome: 'completed',
          response,
        });
      });

      it('never gives a key the same token twice, even across a release', async () => {
        const stale = await reserveToken('k1', 'fp-a', startMs);
        const second = await reserveToken('k1', 'fp-a', startMs + leaseMs);
        await release('k1', 'fp-a', second);
        // Reserved again within the same millisecond: the clock has not moved, the count has.
        const third = await reserveToken('k1', 'fp-a', startMs + leaseMs);
        expect([stale, second, third]).toEqual([startMs, startMs + leaseMs, startMs + leaseMs + 1]);
        await expectError(complete('k1', 'fp-a', stale), ConflictError);
        await expectError(complete('k1', 'fp-a', second), ConflictError);
        await release('k1', 'fp-a', stale);
        await release('k1', 'fp-a', second);
        // Still the third reservation's, which alone may complete it.
        expect(await reserve('k1', 'fp-a', startMs + leaseMs + 2)).toMatchObject({ outcome: 'in_flight' });
        await complete('k1', 'fp-a', third);
      });

      it('releases an in-flight key so any request may reserve it, but never a completed one', async () => {
        const first = await reserveToken('k1', 'fp-a', startMs);
        await release('k1', 'fp-b', first);
        await release('k1', 'fp-a', first + 1);
        expect(await reserve('k1', 'fp-a', startMs + 1)).toMatchObject({ outcome: 'in_flight' });
        await release('k1', 'fp-a', first);
        // Releasing twice changes nothing more.
        await release('k1', 'fp-a', first);
        const next = await reserveToken('k1', 'fp-b', startMs + 2);
        expect(next).toBe(startMs + 2);
        await expectError(complete('k1', 'fp-a', first), ConflictError);
        await complete('k1', 'fp-b', next);
        await release('k1', 'fp-b', next);
        expect(await reserve('k1', 'fp-b', startMs + 3)).toMatchObject({ outcome: 'completed' });
      });

      it("keeps reservedAt for retries of the request across releases and lapses, not for another request's", async () => {
        await reserve('k1', 'fp-a', startMs);
        await release('k1', 'fp-a', startMs);
        expect(await reserve('k1', 'fp-a', startMs + 5)).toMatchObject({ reservedAt: startMs });
        expect(await reserve('k1', 'fp-a', startMs + 5 + leaseMs)).toMatchObject({ reservedAt: startMs });
        await release('k1', 'fp-a', startMs + 5 + leaseMs);
        // Released, then taken by another request: that request's own time.
        expect(await reserve('k1', 'fp-b', startMs + 7 + leaseMs)).toMatchObject({
          outcome: 'reserved',
          reservedAt: startMs + 7 + leaseMs,
        });
      });

      it('forgets keys once they expire: expire() deletes them and an expired key is reserved anew', async () => {
        const expiring = (key: string, fingerprint: string, nowMs: number, expiresAt: number) =>
          tx((t) =>
            t.idempotency.reserve({ scope: 'orders', key, fingerprint, nowMs, leaseMs: 10, expiresAt }),
          );
        await expiring('k1', 'fp-a', 0, 100);
        await complete('k1', 'fp-a', 1);
        await expiring('k2', 'fp-a', 0, 200);
        await expiring('k3', 'fp-a', 0, 300);
        // Expired but not yet purged: as good as absent, for any request (its count goes on).
        expect(await expiring('k1', 'fp-other', 100, 1000)).toEqual({
          outcome: 'reserved',
          token: 100,
          reservedAt: 100,
        });
        expect(await tx((t) => t.idempotency.expire(250))).toBe(1);
        expect(await expiring('k2', 'fp-b', 250, 1000)).toEqual({
          outcome: 'reserved',
          token: 250,
          reservedAt: 250,
        });
        expect(await expiring('k3', 'fp-b', 250, 1000)).toEqual({ outcome: 'mismatch' });
        // At most `limit` per call; what is left goes on the next.
        expect(await tx((t) => t.idempotency.expire(10_000, 2))).toBe(2);
        expect(await tx((t) => t.idempotency.expire(10_000))).toBe(1);
        expect(await tx((t) => t.idempotency.expire(10_000))).toBe(0);
      });

      it('never expires a key before its expiry, whatever its lease: a pending key stays', async () => {
        await tx((t) =>
          t.idempotency.reserve({
            scope: 'orders',
            key: 'pending',
            fingerprint: 'fp',
            nowMs: 0,
            leaseMs: 1000,
            expiresAt: 5000,
          }),
        );
        expect(await tx((t) => t.idempotency.expire(4999))).toBe(0);
        expect(
          await tx((t) =>
            t.idempotency.reserve({
              scope: 'orders',
              key: 'pending',
              fingerprint: 'fp',
              nowMs: 10,
              leaseMs: 10,
              expiresAt: 5000,
            }),
          ),
        ).toMatchObject({ outcome: 'in_flight' });
        expect(await tx((t) => t.idempotency.expire(5000))).toBe(1);
      });

      it('fences off an attempt that outlived its key: reserved anew after expire(), the key outranks its old tokens', async () => {
        const reserveAt = (nowMs: number) =>
          tx((t) =>
            t.idempotency.reserve({
              scope: 'orders',
              key: 'k1',
              fingerprint: 'fp-a',
              nowMs,
              leaseMs: 10,
              expiresAt: nowMs + 50,
            }),
          );
        // A first attempt at 1000, taken over twice within one millisecond after releases.
        const zombie = await reserveAt(1000);
        expect(zombie).toEqual({ outcome: 'reserved', token: 1000, reservedAt: 1000 });
        await release('k1', 'fp-a', 1000);
        await reserveAt(1000);
        await release('k1', 'fp-a', 1001);
        expect(await reserveAt(1000)).toEqual({ outcome: 'reserved', token: 1002, reservedAt: 1000 });
        // The key expires (at 1050) and is deleted; the same request comes again later.
        expect(await tx((t) => t.idempotency.expire(1060))).toBe(1);
        const fresh = await reserveAt(1060);
        expect(fresh).toEqual({ outcome: 'reserved', token: 1060, reservedAt: 1060 });
        // The attempts of the old record can neither complete nor release the new reservation.
        for (const stale of [1000, 1001, 1002]) {
          await expectError(complete('k1', 'fp-a', stale), ConflictError);
          await release('k1', 'fp-a', stale);
        }
        await complete('k1', 'fp-a', 1060);
        expect(await reserveAt(1061)).toMatchObject({ outcome: 'completed' });
      });

      it('gives exactly one of many concurrent reserves of one key the reservation', async () => {
        const outcomes = await Promise.all(
          Array.from({ length: 16 }, () => reserve('hot', 'fp-a', startMs).then((result) => result.outcome)),
        );
        expect(outcomes.filter((outcome) => outcome === 'reserved')).toHaveLength(1);
        expect(outcomes.filter((outcome) => outcome === 'in_flight')).toHaveLength(15);
      });

      it('refuses a lease outside 1 ms .. 1 day and an expiry before the lease ends', async () => {
        const bad = (leaseMs: number, expiresAt: number) =>
          tx((t) =>
            t.idempotency.reserve({
              scope: 's',
              key: 'k',
              fingerprint: 'f',
              nowMs: 1000,
              leaseMs,
              expiresAt,
            }),
          );
        expect((await expectError(bad(0, 5000), ValidationError)).message).toBe(
          "'leaseMs' must be >= 1: current value is 0",
        );
        await expectError(bad(86_400_001, 1e12), ValidationError);
        expect((await expectError(bad(100, 1050), ValidationError)).message).toBe(
          "'expiresAt' must be >= 1100: current value is 1050",
        );
      });

      it('refuses a token that no reservation answers (not a positive integer)', async () => {
        await reserve('k1', 'fp-a', startMs);
        expect((await expectError(complete('k1', 'fp-a', 0), ValidationError)).message).toBe(
          "'token' must be >= 1: current value is 0",
        );
        await expectError(release('k1', 'fp-a', 1.5), ValidationError);
        expect(await reserve('k1', 'fp-a', startMs + 1)).toMatchObject({ outcome: 'in_flight' });
      });
    });

    describe('transactions', () => {
      it('leaves nothing behind when the function throws, and rethrows its error', async () => {
        const failure = new Error('handler failed');
        const error = await tx(async (t) => {
          await t.entities.put('account', 'a', { balance: 1 }, 0);
          await t.sagas.create({ id: 's', type: 'order', status: 'running', input: null, createdAt: 1 });
          await t.sagas.appendJournal({
            sagaId: 's',
            sequence: 0,
            kind: 'step',
            name: 'n',
            status: 'completed',
            result: null,
            error: null,
            attempts: 1,
            at: 1,
          });
          await t.timers.schedule({ id: 't', dueAt: 1, kind: 'k', payload: null });
          await t.inbox.markApplied('c', 'm', 1);
          await t.outbox.add([{ topic: 'o', key: null, value: null, headers: {}, timestamp: 1 }]);
          await t.idempotency.reserve({
            scope: 's',
            key: 'k',
            fingerprint: 'f',
            nowMs: 1,
            leaseMs: 10,
            expiresAt: 100,
          });
          throw failure;
        }).catch((caught: unknown) => caught);
        expect(error).toBe(failure);
        await tx(async (t) => {
          expect(await t.entities.get('account', 'a')).toBeNull();
          expect(await t.sagas.get('s')).toBeNull();
          expect(await t.sagas.journal('s')).toEqual([]);
          expect(await t.timers.nextDueAt()).toBeNull();
          expect(await t.inbox.has('c', 'm')).toBe(false);
          expect(await t.outbox.pending(10)).toEqual([]);
          expect(
            await t.idempotency.reserve({
              scope: 's',
              key: 'k',
              fingerprint: 'other',
              nowMs: 2,
              leaseMs: 10,
              expiresAt: 100,
            }),
            // A record left behind would answer mismatch (its lease runs to 11).
          ).toEqual({ outcome: 'reserved', token: 2, reservedAt: 2 });
        });
      });

      it('sees its own writes before commit', async () => {
        await tx(async (t) => {
          await t.entities.put('account', 'a', 1, 0);
          expect((await t.entities.get('account', 'a'))?.state).toBe(1);
          await t.outbox.add([{ topic: 'o', key: null, value: null, headers: {}, timestamp: 1 }]);
          expect(await t.outbox.pending(10)).toHaveLength(1);
        });
      });

      it('runs statements a transaction starts together (Promise.all) correctly', async () => {
        await tx(async (t) => {
          await Promise.all(Array.from({ length: 20 }, (_, n) => t.entities.put('item', `i${n}`, n, 0)));
          const records = await Promise.all(
            Array.from({ length: 20 }, (_, n) => t.entities.get('item', `i${n}`)),
          );
          expect(records.map((record) => record?.state)).toEqual(Array.from({ length: 20 }, (_, n) => n));
        });
        expect(await tx((t) => t.entities.list('item'))).toHaveLength(20);
      });

      it('lets exactly one of several transactions racing on one entity version win', async () => {
        await tx((t) => t.entities.put('account', 'a', { owner: 'nobody' }, 0));
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, n) =>
            tx(async (t) => {
              const read = await t.entities.get('account', 'a');
              expect(read?.version).toBeGreaterThanOrEqual(1);
              return t.entities.put('account', 'a', { owner: `writer-${n}` }, 1).then(() => n);
            }),
          ),
        );
        const winners = results.filter((result) => result.status === 'fulfilled');
        expect(winners).toHaveLength(1);
        for (const result of results) {
          if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(ConflictError);
        }
        const winner = (winners[0] as PromiseFulfilledResult<number>).value;
        expect(await tx((t) => t.entities.get('account', 'a'))).toMatchObject({
          state: { owner: `writer-${winner}` },
          version: 2,
        });
      });

      it('loses no update when concurrent increments retry on ConflictError', async () => {
        await tx((t) => t.entities.put('counter', 'c', 0, 0));
        const increment = async (): Promise<void> => {
          for (let attempt = 0; attempt < 50; attempt++) {
            try {
              await tx(async (t) => {
                const current = await t.entities.get('counter', 'c');
                await t.entities.put('counter', 'c', (current?.state as number) + 1, current?.version ?? 0);
              });
              return;
            } catch (error) {
              if (!(error instanceof ConflictError)) throw error;
            }
          }
          throw new Error('gave up after 50 conflicts');
        };
        await Promise.all(Array.from({ length: 10 }, increment));
        expect(await tx((t) => t.entities.get('counter', 'c'))).toMatchObject({ state: 10, version: 11 });
      });

      it('runs a nested transaction as a savepoint: its failure undoes only its own writes', async () => {
        await tx(async (t) => {
          await t.entities.put('account', 'outer', 1, 0);
          const inner = await store
            .transaction(async (nested) => {
              await nested.entities.put('account', 'inner', 1, 0);
              await nested.outbox.add([{ topic: 'o', key: null, value: null, headers: {}, timestamp: 1 }]);
              throw new Error('inner failed');
            })
            .catch((error: unknown) => (error as Error).message);
          expect(inner).toBe('inner failed');
          expect(await t.entities.get('account', 'inner')).toBeNull();
          await store.transaction((nested) => nested.entities.put('account', 'kept', 1, 0));
          await t.entities.put('account', 'outer', 2, 1);
        });
        expect(
          (await tx((t) => t.entities.list('account'))).map((record) => [record.id, record.version]),
        ).toEqual([
          ['kept', 1],
          ['outer', 2],
        ]);
        expect(await tx((t) => t.outbox.pending(10))).toEqual([]);
      });

      it('refuses a transaction handle used after its transaction ended', async () => {
        let leaked: StoreTransaction | undefined;
        await tx(async (t) => {
          leaked = t;
        });
        await expectError(leaked!.entities.get('account', 'a'), ClosedError);
        await expectError(leaked!.outbox.pending(1), ClosedError);
      });

      it('refuses transactions once closed', async () => {
        await store.close();
        await expectError(
          tx((t) => t.entities.get('account', 'a')),
          ClosedError,
        );
        await expectError(
          store.read((t) => t.entities.get('account', 'a')),
          ClosedError,
        );
        await store.close();
      });
    });

    describe('work partitions', () => {
      it('claims a partition at epoch 1, +1 on each claim, and lists who claimed each one last', async () => {
        expect(await tx((t) => t.partitions.claim(3, 'node-a', startMs))).toBe(1);
        expect(await tx((t) => t.partitions.claim(3, 'node-b', startMs + 5))).toBe(2);
        expect(await tx((t) => t.partitions.claim(0, 'node-a', startMs + 7))).toBe(1);
        expect(await tx((t) => t.partitions.epochs([7, 3, 0]))).toEqual(
          new Map([
            [0, 1],
            [3, 2],
          ]),
        );
        expect(await tx((t) => t.partitions.epochs([3], { lock: true }))).toEqual(new Map([[3, 2]]));
        expect(await tx((t) => t.partitions.epochs([]))).toEqual(new Map());
        expect(await store.read((r) => r.partitions.list())).toEqual([
          { partition: 0, epoch: 1, owner: 'node-a', claimedAt: startMs + 7 },
          { partition: 3, epoch: 2, owner: 'node-b', claimedAt: startMs + 5 },
        ]);
      });

      it('undoes a claim whose transaction or savepoint rolls back', async () => {
        await tx((t) => t.partitions.claim(1, 'node-a', startMs));
        await tx(async (t) => {
          await t.partitions.claim(1, 'node-b', startMs + 1);
          throw new Error('rolled back');
        }).catch(() => undefined);
        await tx(async (t) => {
          await store
            .transaction(async (nested) => {
              expect(await nested.partitions.claim(1, 'node-c', startMs + 2)).toBe(2);
              throw new Error('savepoint rolled back');
            })
            .catch(() => undefined);
          expect(await t.partitions.epochs([1])).toEqual(new Map([[1, 1]]));
        });
        expect(await tx((t) => t.partitions.list())).toEqual([
          { partition: 1, epoch: 1, owner: 'node-a', claimedAt: startMs },
        ]);
      });

      it('gives each of many concurrent claims of one partition its own epoch', async () => {
        const epochs = await Promise.all(
          Array.from({ length: 8 }, (_, n) => tx((t) => t.partitions.claim(5, `node-${n}`, startMs + n))),
        );
        expect([...epochs].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect((await tx((t) => t.partitions.list()))[0]?.epoch).toBe(8);
      });

      it('makes a claim wait for a transaction that read the epoch with lock: true until it ends', async () => {
        await tx((t) => t.partitions.claim(2, 'node-a', startMs));
        let letCommit!: () => void;
        const gate = new Promise<void>((resolve) => (letCommit = resolve));
        let locked!: () => void;
        const read = new Promise<void>((resolve) => (locked = resolve));
        const fenced = tx(async (t) => {
          const before = await t.partitions.epochs([2], { lock: true });
          locked();
          await gate;
          // The claim waits: the epoch this transaction checks is still the one it commits under.
          return [before.get(2), (await t.partitions.epochs([2], { lock: true })).get(2)];
        });
        await read;
        let claimed: number | undefined;
        const claim = tx((t) => t.partitions.claim(2, 'node-b', startMs + 1)).then((epoch) => {
          claimed = epoch;
          return epoch;
        });
        await fixture.untilLockWait();
        expect(claimed).toBeUndefined();
        letCommit();
        expect(await fenced).toEqual([1, 1]);
        expect(await claim).toBe(2);
      });

      it('requireEpochs passes while the epochs are the ones held, and otherwise fails the transaction with FENCED', async () => {
        await tx((t) => t.partitions.claim(4, 'node-a', startMs));
        await tx((t) => t.partitions.claim(6, 'node-a', startMs));
        // Held: the transaction commits its write.
        await tx(async (t) => {
          await t.inbox.markApplied('fence-test', 'kept', startMs);
          await t.partitions.requireEpochs(
            new Map([
              [4, 1],
              [6, 1],
            ]),
          );
        });
        expect(await tx((t) => t.inbox.markApplied('fence-test', 'kept', startMs))).toBe(false);
        await tx((t) => t.partitions.claim(6, 'node-b', startMs + 1));
        // Moved: the check fails, even when nobody awaits it before the transaction ends, and
        // the write before it is rolled back with it.
        const fenced = await expectError(
          tx(async (t) => {
            await t.inbox.markApplied('fence-test', 'dropped', startMs);
            const check = t.partitions.requireEpochs(
              new Map([
                [4, 1],
                [6, 1],
              ]),
            );
            check.catch(() => undefined);
            // SQLite checks in the transaction function: there it must be awaited.
            if (store.dialect === 'sqlite') await check;
          }),
          MeridianError,
        );
        expect(fenced.code).toBe('FENCED');
        expect(await tx((t) => t.inbox.markApplied('fence-test', 'dropped', startMs))).toBe(true);
        await tx((t) => t.partitions.requireEpochs(new Map()));
        await expectError(
          tx((t) => t.partitions.requireEpochs(new Map([[4, 0]]))),
          ValidationError,
        );
      });

      it('refuses bad partitions and owners with a ValidationError', async () => {
        const negative = await expectError(
          tx((t) => t.partitions.claim(-1, 'node-a', startMs)),
          ValidationError,
        );
        expect(negative.message).toBe("'partition' must be >= 0: current value is -1");
        await expectError(
          tx((t) => t.partitions.claim(10_000, 'node-a', startMs)),
          ValidationError,
        );
        await expectError(
          tx((t) => t.partitions.claim(1, '', startMs)),
          ValidationError,
        );
        const fraction = await expectError(
          tx((t) => t.partitions.epochs([1, 1.5])),
          ValidationError,
        );
        expect(fraction.message).toBe("'partitions[1]' must be an integer: current value is 1.5");
        await expectError(
          tx((t) => t.partitions.epochs('1' as never)),
          ValidationError,
        );
        await expectError(
          store.read((r) => (r as unknown as StoreTransaction).partitions.claim(1, 'node-a', startMs)),
          ValidationError,
        );
      });
    });

    describe('replies', () => {
      const reply = (requestId: string, createdAt: number, ok = true) => ({
        requestId,
        partition: 4,
        ok,
        reply: ok ? { total: 5, items: ['a'] } : null,
        error: ok ? null : 'out of stock',
        code: ok ? null : 'CONFLICT',
        createdAt,
      });

      it('stores a reply once: the first writer wins, a second put changes nothing', async () => {
        expect(await tx((t) => t.replies.put(reply('r1', 100)))).toBe(true);
        expect(await tx((t) => t.replies.put(reply('r1', 200, false)))).toBe(false);
        expect(await tx((t) => t.replies.put(reply('r2', 150, false)))).toBe(true);
        expect(await tx((t) => t.replies.get('r1'))).toEqual(reply('r1', 100));
        expect(await store.read((r) => r.replies.get('r2'))).toEqual(reply('r2', 150, false));
        expect(await tx((t) => t.replies.get('missing'))).toBeNull();
        await tx(async (t) => {
          expect(await t.replies.put({ ...reply('r3', 1), reply: null })).toBe(true);
          expect((await t.replies.get('r3'))?.reply).toBeNull();
        });
      });

      it('prunes replies created before a time, and drops a put whose transaction rolls back', async () => {
        await tx(async (t) => {
          await t.replies.put(reply('old', 100));
          await t.replies.put(reply('new', 300));
        });
        await tx(async (t) => {
          await t.replies.put(reply('dropped', 100));
          throw new Error('rolled back');
        }).catch(() => undefined);
        expect(await tx((t) => t.replies.prune(200))).toBe(1);
        expect(await tx((t) => t.replies.get('old'))).toBeNull();
        expect(await tx((t) => t.replies.get('dropped'))).toBeNull();
        expect((await tx((t) => t.replies.get('new')))?.createdAt).toBe(300);
      });

      it('keeps an old reply while the saga that asked for it has not ended, and prunes it once it has', async () => {
        const saga = (id: string) => ({
          id,
          type: 'order',
          status: 'running' as const,
          input: null,
          createdAt: 50,
        });
        await tx(async (t) => {
          await t.sagas.create(saga('s-7'));
          await t.sagas.create(saga('s-8'));
          await t.replies.put(reply('saga/s-7/3', 100));
          await t.replies.put(reply('saga/s-8/12', 100));
          await t.replies.put(reply('saga/gone/1', 100));
          await t.replies.put(reply('sub/g/topic/0/17/x', 100));
        });
        await tx((t) => t.sagas.update('s-8', { status: 'completed', at: 150 }, 1));
        expect(await tx((t) => t.replies.prune(200))).toBe(3);
        expect((await tx((t) => t.replies.get('saga/s-7/3')))?.createdAt).toBe(100);
        await tx((t) => t.sagas.update('s-7', { status: 'failed', at: 250 }, 1));
        expect(await tx((t) => t.replies.prune(200))).toBe(1);
        expect(await tx((t) => t.replies.get('saga/s-7/3'))).toBeNull();
      });

      it('requires a stored reply: a transaction that requires a missing one fails with a ConflictError and writes nothing', async () => {
        await tx((t) => t.replies.put(reply('held', 100)));
        await tx(async (t) => {
          await t.replies.require('held');
          await t.replies.put(reply('after-held', 100));
        });
        expect(await tx((t) => t.replies.get('after-held'))).not.toBeNull();
        const error = await expectError(
          tx(async (t) => {
            await t.replies.put(reply('rolled-back', 100));
            await t.replies.require('never-stored');
          }),
          ConflictError,
        );
        expect(error.message).toContain("The reply to request 'never-stored' is not stored");
        expect(await tx((t) => t.replies.get('rolled-back'))).toBeNull();
        // A reply put earlier in the same transaction counts.
        await tx(async (t) => {
          await t.replies.put(reply('same-tx', 100));
          await t.replies.require('same-tx');
        });
      });

      it('refuses bad replies with a ValidationError', async () => {
        const ok = await expectError(
          tx((t) => t.replies.put({ ...reply('r', 1), ok: 'yes' as never })),
          ValidationError,
        );
        expect(ok.message).toBe("'ok' must be a boolean: current value is yes");
        await expectError(
          tx((t) => t.replies.put({ ...reply('', 1) })),
          ValidationError,
        );
        await expectError(
          tx((t) => t.replies.put({ ...reply('r', 1), partition: -1 })),
          ValidationError,
        );
        await expectError(
          tx((t) => t.replies.put({ ...reply('r', 1), reply: { n: Number.NaN } })),
          ValidationError,
        );
        expect(await tx((t) => t.replies.get('r'))).toBeNull();
      });
    });

    describe('partition filters', () => {
      it('lists only the sagas of the given partitions; no filter lists all, an empty one none', async () => {
        await tx(async (t) => {
          await t.sagas.create({ id: 's0', type: 'order', status: 'running', input: null, createdAt: 1 });
          await t.sagas.create({
            id: 's1',
            type: 'order',
            status: 'running',
            input: null,
            createdAt: 1,
            partition: 1,
          });
          await t.sagas.create({
            id: 's2',
            type: 'order',
            status: 'completed',
            input: null,
            createdAt: 1,
            partition: 2,
          });
          await t.sagas.create({
            id: 's3',
            type: 'refund',
            status: 'running',
            input: null,
            createdAt: 1,
            partition: 2,
          });
        });
        const ids = async (options: Parameters<StoreTransaction['sagas']['list']>[0]) =>
          (await tx((t) => t.sagas.list(options))).map((record) => record.id);
        expect(await ids({})).toEqual(['s0', 's1', 's2', 's3']);
        expect(await ids({ partitions: [2] })).toEqual(['s2', 's3']);
        expect(await ids({ partitions: [0, 2], status: 'running' })).toEqual(['s0', 's3']);
        expect(await ids({ partitions: [1, 2], limit: 2, afterId: 's1' })).toEqual(['s2', 's3']);
        expect(await ids({ partitions: [] })).toEqual([]);
        expect(await store.read(async (r) => (await r.sagas.list({ partitions: [1] })).length)).toBe(1);
        await expectError(
          tx((t) => t.sagas.list({ partitions: [-1] })),
          ValidationError,
        );
        await expectError(
          tx((t) =>
            t.sagas.create({
              id: 'bad',
              type: 'order',
              status: 'running',
              input: null,
              createdAt: 1,
              partition: 0.5,
            }),
          ),
          ValidationError,
        );
      });

      it('fires and reports only the timers of the given partitions, keeping each timer partition', async () => {
        await tx(async (t) => {
          await t.timers.schedule({ id: 'a', dueAt: 100, kind: 'sleep', payload: null });
          await t.timers.schedule({ id: 'b', dueAt: 50, kind: 'sleep', payload: null, partition: 1 });
          await t.timers.schedule({ id: 'c', dueAt: 200, kind: 'sleep', payload: null, partition: 2 });
        });
        const due = async (options?: { partitions?: number[] }) =>
          (await tx((t) => t.timers.due(1000, 10, options))).map((timer) => [timer.id, timer.partition]);
        expect(await due()).toEqual([
          ['b', 1],
          ['a', 0],
          ['c', 2],
        ]);
        expect(await due({ partitions: [0, 2] })).toEqual([
          ['a', 0],
          ['c', 2],
        ]);
        expect(await due({ partitions: [] })).toEqual([]);
        expect(await tx((t) => t.timers.nextDueAt())).toBe(50);
        expect(await tx((t) => t.timers.nextDueAt({ partitions: [0, 2] }))).toBe(100);
        expect(await store.read((r) => r.timers.nextDueAt({ partitions: [2] }))).toBe(200);
        expect(await tx((t) => t.timers.nextDueAt({ partitions: [3] }))).toBeNull();
        expect(await tx((t) => t.timers.nextDueAt({ partitions: [] }))).toBeNull();
        // Scheduling again under the id moves the timer to the new partition.
        await tx((t) =>
          t.timers.schedule({ id: 'a', dueAt: 100, kind: 'sleep', payload: null, partition: 3 }),
        );
        expect(await due({ partitions: [3] })).toEqual([['a', 3]]);
        await expectError(
          tx((t) => t.timers.due(1000, 10, { partitions: [10_000] })),
          ValidationError,
        );
      });

      it('hands a relay only the outbox messages of its partitions, in id order', async () => {
        const add = (topic: string, partition?: number) =>
          tx((t) =>
            t.outbox.add([
              {
                topic,
                key: null,
                value: null,
                headers: {},
                timestamp: 1,
                ...(partition === undefined ? {} : { partition }),
              },
            ]),
          );
        const [a] = await add('a');
        const [b] = await add('b', 1);
        const [c] = await add('c', 2);
        const [d] = await add('d', 1);
        const pending = async (options?: { partitions?: number[] }) =>
          (await tx((t) => t.outbox.pending(10, options))).map((message) => [message.id, message.partition]);
        expect(await pending()).toEqual([
          [a, 0],
          [b, 1],
          [c, 2],
          [d, 1],
        ]);
        expect(await pending({ partitions: [1] })).toEqual([
          [b, 1],
          [d, 1],
        ]);
        expect(await pending({ partitions: [0, 2] })).toEqual([
          [a, 0],
          [c, 2],
        ]);
        expect(await pending({ partitions: [] })).toEqual([]);
        expect(
          (await tx((t) => t.outbox.pending(1, { partitions: [1] }))).map((message) => message.id),
        ).toEqual([b]);
        await expectError(
          tx((t) =>
            t.outbox.add([{ topic: 't', key: null, value: null, headers: {}, timestamp: 1, partition: -2 }]),
          ),
          ValidationError,
        );
      });
    });

    describe('storage', () => {
      it('reports space per table and in all, and reclaim gives back at most what is free', async () => {
        // Text that compresses little (the store packs states, PostgreSQL compresses large
        // values): a seeded sequence of base-36 digits, 2,000 characters kept in ~1,300 bytes.
        let seed = 7;
        const noise = () =>
          Array.from({ length: 250 }, () => {
            seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
            return seed.toString(36).padStart(8, '0').slice(0, 8);
          }).join('');
        await tx(async (t) => {
          for (let index = 0; index < 200; index++) {
            await t.entities.put('blob', `b${index}`, { text: noise() }, 0);
          }
        });
        const report = await store.storage();
        const entities = report.tables.find((table) => table.table.endsWith('store_entities'));
        expect(entities?.bytes).toBeGreaterThan(200 * 1000);
        expect(report.totalBytes).toBeGreaterThanOrEqual(report.tables.reduce((sum, t) => sum + t.bytes, 0));
        expect(report.freeBytes).toBeGreaterThanOrEqual(0);
        await tx(async (t) => {
          for (let index = 0; index < 200; index++) await t.entities.delete('blob', `b${index}`, 1);
        });
        const reclaimed = await store.reclaim(100_000);
        expect(reclaimed).toBeGreaterThanOrEqual(0);
        if (store.dialect === 'sqlite') expect(reclaimed).toBeGreaterThan(200 * 1000 * 0.8);
        expect((await store.storage()).freeBytes).toBe(0);
        await expect(store.reclaim(0)).rejects.toThrow(RangeError);
      });
    });

    describe('notifications', () => {
      /** Collects what a listener hears; `until` waits (bounded) until it heard `count`. */
      const collector = () => {
        const heard: string[] = [];
        let wake = () => {};
        return {
          heard,
          listener: (payload: string) => {
            heard.push(payload);
            wake();
          },
          async until(count: number): Promise<string[]> {
            const deadline = systemClock.now() + 10_000;
            while (heard.length < count) {
              const remaining = deadline - systemClock.now();
              if (remaining <= 0)
                throw new Error(`heard ${JSON.stringify(heard)}, expected ${count} notifications`);
              await new Promise<void>((resolve) => {
                const timer = systemTimers.setTimeout(resolve, remaining);
                wake = () => {
                  timer.cancel();
                  resolve();
                };
              });
            }
            return heard;
          },
        };
      };

      it('delivers a notification only once its transaction commits, and never one rolled back', async () => {
        const orders = collector();
        const stop = await store.listen('contract.orders', orders.listener);
        let letCommit!: () => void;
        const gate = new Promise<void>((resolve) => (letCommit = resolve));
        let notified!: () => void;
        const sent = new Promise<void>((resolve) => (notified = resolve));
        const slow = tx(async (t) => {
          await t.notify('contract.orders', 'first');
          notified();
          await gate;
        });
        await sent;
        expect(orders.heard).toEqual([]);
        letCommit();
        await slow;
        await tx(async (t) => {
          await t.notify('contract.orders', 'dropped');
          throw new Error('rolled back');
        }).catch(() => undefined);
        await tx(async (t) => {
          await t.notify('contract.orders', 'outer');
          await store
            .transaction(async (nested) => {
              await nested.notify('contract.orders', 'savepoint dropped');
              throw new Error('savepoint rolled back');
            })
            .catch(() => undefined);
          await store.transaction((nested) => nested.notify('contract.orders', 'savepoint kept'));
        });
        await tx((t) => t.notify('contract.orders', 'last'));
        // Notifications arrive in commit order: anything rolled back would show up before 'last'.
        expect(await orders.until(4)).toEqual(['first', 'outer', 'savepoint kept', 'last']);
        await stop();
      });

      it('delivers to every listener of the channel only, and not after it stopped listening', async () => {
        const first = collector();
        const second = collector();
        const other = collector();
        const stopFirst = await store.listen('contract.a', first.listener);
        const stopSecond = await store.listen('contract.a', second.listener);
        const stopOther = await store.listen('contract.b', other.listener);
        await tx((t) => t.notify('contract.a', 'one'));
        expect(await first.until(1)).toEqual(['one']);
        expect(await second.until(1)).toEqual(['one']);
        await stopFirst();
        await stopFirst();
        await tx((t) => t.notify('contract.a', 'two'));
        await tx((t) => t.notify('contract.b', 'marker'));
        expect(await other.until(1)).toEqual(['marker']);
        expect(await second.until(2)).toEqual(['one', 'two']);
        expect(first.heard).toEqual(['one']);
        await stopSecond();
        await stopOther();
      });

      it('refuses bad channels and payloads with a ValidationError', async () => {
        const upper = await expectError(
          store.listen('Orders', () => {}),
          ValidationError,
        );
        expect(upper.message).toBe(
          "'channel' must be a channel name matching /^[a-z0-9_.]{1,63}$/: current value is 'Orders'",
        );
        await expectError(
          store.listen('x'.repeat(64), () => {}),
          ValidationError,
        );
        await expectError(store.listen('ok', 'not a function' as never), ValidationError);
        await expectError(
          tx((t) => t.notify('has space', 'p')),
          ValidationError,
        );
        await expectError(
          tx((t) => t.notify('ok', '')),
          ValidationError,
        );
        const big = await expectError(
          tx((t) => t.notify('ok', 'é'.repeat(4000))),
          ValidationError,
        );
        expect(big.message).toBe("'payload' must be at most 7999 bytes: current value has 8000");
        await expectError(
          store.read((r) => (r as unknown as StoreTransaction).notify('ok', 'p')),
          ValidationError,
        );
      });
    });

    describe('read transactions', () => {
      it('read committed entities, sagas and journals', async () => {
        await tx(async (t) => {
          await t.entities.put('account', 'a', { balance: 1 }, 0);
          await t.sagas.create({ id: 's1', type: 'Order', status: 'running', input: {}, createdAt: startMs });
          await t.sagas.appendJournal({
            sagaId: 's1',
            sequence: 0,
            kind: 'step',
            name: 'one',
            status: 'completed',
            result: 1,
            error: null,
            attempts: 1,
            at: startMs,
          });
        });
        const seen = await store.read(async (r) => ({
          account: (await r.entities.get('account', 'a'))?.state,
          saga: (await r.sagas.get('s1'))?.status,
          journal: (await r.sagas.journal('s1')).map((entry) => entry.name),
          missing: await r.entities.get('account', 'nobody'),
        }));
        expect(seen).toEqual({ account: { balance: 1 }, saga: 'running', journal: ['one'], missing: null });
      });

      it('neither see nor wait for a transaction that has not committed', async () => {
        await tx((t) => t.entities.put('account', 'a', { balance: 1 }, 0));
        let letCommit!: () => void;
        const gate = new Promise<void>((resolve) => (letCommit = resolve));
        let written!: () => void;
        const wrote = new Promise<void>((resolve) => (written = resolve));
        const writer = tx(async (t) => {
          await t.entities.put('account', 'a', { balance: 2 }, 1);
          written();
          await gate;
        });
        await wrote;
        // The writer still holds its transaction open: the read answers from committed data.
        expect((await store.read((r) => r.entities.get('account', 'a')))?.state).toEqual({ balance: 1 });
        letCommit();
        await writer;
        expect((await store.read((r) => r.entities.get('account', 'a')))?.state).toEqual({ balance: 2 });
      });

      it('read one snapshot: a commit made while the read is open is not seen by it', async () => {
        await tx(async (t) => {
          await t.entities.put('account', 'a', { balance: 1 }, 0);
          await t.entities.put('account', 'b', { balance: 1 }, 0);
        });
        const seen = await store.read(async (r) => {
          const a = await r.entities.get('account', 'a');
          // Both move while the read is open; it keeps seeing them as they were.
          await tx(async (t) => {
            await t.entities.put('account', 'a', { balance: 0 }, 1);
            await t.entities.put('account', 'b', { balance: 2 }, 1);
          });
          const b = await r.entities.get('account', 'b');
          return [a?.state, b?.state];
        });
        expect(seen).toEqual([{ balance: 1 }, { balance: 1 }]);
      });

      it("see their enclosing transaction's own writes", async () => {
        const seen = await tx(async (t) => {
          await t.entities.put('account', 'a', { balance: 5 }, 0);
          return store.read((r) => r.entities.get('account', 'a'));
        });
        expect(seen?.state).toEqual({ balance: 5 });
      });

      it('refuse to write with a ValidationError, and leave nothing behind', async () => {
        const error = await expectError(
          store.read((r) =>
            (r as unknown as StoreTransaction).entities.put('account', 'a', { balance: 1 }, 0),
          ),
          ValidationError,
        );
        expect(error.message).toMatch(/read-only/);
        expect(await tx((t) => t.entities.get('account', 'a'))).toBeNull();
      });

      it('run many at once alongside writes, each answering from committed data', async () => {
        await tx((t) => t.entities.put('counter', 'c', { n: 0 }, 0));
        const writes = Array.from({ length: 20 }, (_, i) =>
          tx(async (t) => {
            const current = await t.entities.get('counter', `c${i}`);
            await t.entities.put('counter', `c${i}`, { n: i }, current?.version ?? 0);
          }),
        );
        const reads = Array.from({ length: 50 }, () =>
          store.read(async (r: StoreReader) => (await r.entities.get('counter', 'c'))?.state),
        );
        await Promise.all(writes);
        expect(await Promise.all(reads)).toEqual(Array.from({ length: 50 }, () => ({ n: 0 })));
        const listed = await store.read((r) => r.entities.list('counter', { limit: 100 }));
        expect(listed).toHaveLength(21);
      });
    });
  });
}
