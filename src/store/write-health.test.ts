// Write health and the integrity check at open: a damaged SQLite file is refused before anything
// writes to it, with an error that says what to do; checkWrites commits a real write; storage
// faults are told apart from a request's own errors, and listeners hear each change once.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { openPostgresStore } from './postgres/store.ts';
import { testSchemas } from './postgres/test-schema.ts';
import { SqliteDatabase } from './sqlite/database.ts';
import { SqliteStore } from './sqlite/store.ts';
import { isStorageFault, StoreIntegrityError, WriteHealth, type WriteHealthState } from './write-health.ts';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});
function tempPath(): string {
  const directory = mkdtempSync(join(tmpdir(), 'meridian-health-'));
  directories.push(directory);
  return join(directory, 'meridian.db');
}

describe('SQLite integrity check at open', () => {
  it('refuses a file that is not a database, saying to restore it or move it aside', () => {
    const path = tempPath();
    writeFileSync(path, Buffer.alloc(8192, 0x5a));
    expect(() => new SqliteDatabase({ path })).toThrow(StoreIntegrityError);
    expect(() => new SqliteDatabase({ path })).toThrow(
      /failed its integrity check.*Restore it from a backup/,
    );
  });

  it('refuses a database whose pages were damaged, and opens it when told to skip the check', () => {
    const path = tempPath();
    const database = new SqliteDatabase({ path, checkpoints: 'inline' });
    database.writeSync(() => {
      database.prepare('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)').run();
      for (let i = 0; i < 2000; i++)
        database.prepare('INSERT INTO t (v) VALUES (?)').run(`row-${i}`.repeat(8));
    });
    database.close();
    // Collapse the WAL into the file, then scribble over a page in the middle of the table.
    const folded = new SqliteDatabase({ path, checkpoints: 'inline' });
    folded.close();
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xff), 0, 4096, 4096 * 5);
    closeSync(fd);
    expect(() => new SqliteDatabase({ path })).toThrow(StoreIntegrityError);
    const unchecked = new SqliteDatabase({ path, integrityCheck: 'off' });
    unchecked.close();
    expect(() => new SqliteDatabase({ path, integrityCheck: 'full' as 'off' })).toThrow(ValidationError);
  });
});

describe('write health', () => {
  it('tells storage faults (SQLite, system, PostgreSQL codes, causes) from a request error', () => {
    expect(isStorageFault(Object.assign(new Error('database or disk is full'), { errcode: 13 }))).toBe(true);
    expect(isStorageFault(Object.assign(new Error('disk I/O error'), { errcode: 10 | (3 << 8) }))).toBe(true);
    expect(isStorageFault(Object.assign(new Error('readonly'), { errcode: 8 }))).toBe(true);
    expect(isStorageFault(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBe(true);
    expect(
      isStorageFault(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: '53100' }) })),
    ).toBe(true);
    expect(isStorageFault(Object.assign(new Error('constraint'), { errcode: 19 }))).toBe(false);
    expect(isStorageFault(new ValidationError('bad input'))).toBe(false);
  });

  it('tells listeners once when writes start failing and once when they succeed again', () => {
    const clock = new ManualClock(1000);
    const health = new WriteHealth(() => clock.now());
    const heard: WriteHealthState[] = [];
    health.onChange((state) => heard.push(state));
    const full = Object.assign(new Error('database or disk is full'), { errcode: 13 });
    health.failed(new ValidationError('not a storage fault'));
    health.failed(full);
    health.failed(full);
    health.succeeded();
    health.succeeded();
    expect(heard).toEqual([{ ok: false, sinceMs: 1000, cause: 'database or disk is full' }, { ok: true }]);
  });

  it('checkWrites commits a real write on SQLite', async () => {
    const store = new SqliteStore({ path: tempPath() });
    try {
      expect(await store.checkWrites()).toEqual({ ok: true, detail: 'sqlite store takes writes' });
    } finally {
      await store.close();
    }
    expect(await store.checkWrites()).toEqual({ ok: false, detail: 'the SQLite store is closed' });
  });

  const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
  it.skipIf(pgUrl === undefined)(
    'checkWrites takes a transaction id on PostgreSQL (skipped without MERIDIAN_TEST_PG_URL)',
    async () => {
      // A schema of its own: a fixed name would be shared with other runs (and other versions).
      const schemas = testSchemas(pgUrl!, 'health');
      const schema = schemas.next();
      const store = await openPostgresStore({ connectionString: pgUrl!, schema });
      try {
        expect(await store.checkWrites()).toEqual({ ok: true, detail: 'postgres store takes writes' });
      } finally {
        await store.close();
        await schemas.drop(schema);
        await schemas.end();
      }
    },
  );
});
