import { ValidationError } from '../../errors.ts';

export type DialectName = 'sqlite' | 'postgres';

/**
 * Everything that differs between SQLite and PostgreSQL in the store's SQL, in one place.
 * The rest of the SQL (schema and queries) is one text for both: types both accept (TEXT,
 * INTEGER, BIGINT, BYTEA — SQLite takes any type name), `ON CONFLICT`, `RETURNING` and `$n`
 * parameters (rewritten to SQLite's `?n`).
 */
export interface Dialect {
  readonly name: DialectName;
  /**
   * Key columns that paging orders by. PostgreSQL compares text by the database's locale
   * unless told otherwise; "C" compares code points, as SQLite's default BINARY does, so a
   * page boundary means the same on both.
   */
  readonly keyText: string;
  /** An increasing 64-bit id that is never reused, even after the newest row is deleted. */
  readonly identityKey: string;
  /** Appended to a SELECT that must lock its row until commit (SQLite's writer lock already does). */
  readonly forUpdate: string;
  /**
   * Appended to a SELECT whose rows must not change until commit while others may still read
   * them (partition epochs): a concurrent UPDATE of them waits. SQLite's one writer already does.
   */
  readonly forShare: string;
  /** A subquery yielding the integers of the JSON array in `parameter`. */
  jsonIntegers(parameter: string): string;
  /** A subquery yielding the strings of the JSON array in `parameter`. */
  jsonTexts(parameter: string): string;
}

export const sqliteDialect: Dialect = {
  name: 'sqlite',
  keyText: 'TEXT',
  identityKey: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  forUpdate: '',
  forShare: '',
  jsonIntegers: (parameter) => `SELECT value FROM json_each(${parameter})`,
  jsonTexts: (parameter) => `SELECT value FROM json_each(${parameter})`,
};

export const postgresDialect: Dialect = {
  name: 'postgres',
  keyText: 'TEXT COLLATE "C"',
  identityKey: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY',
  forUpdate: ' FOR UPDATE',
  forShare: ' FOR SHARE',
  jsonIntegers: (parameter) =>
    `SELECT CAST(value AS BIGINT) FROM json_array_elements_text(CAST(${parameter} AS json))`,
  jsonTexts: (parameter) => `SELECT value FROM json_array_elements_text(CAST(${parameter} AS json))`,
};

/** The store's table names, qualified by schema on PostgreSQL. */
export interface StoreTables {
  readonly entities: string;
  readonly sagas: string;
  readonly sagaJournal: string;
  readonly timers: string;
  readonly inbox: string;
  readonly outbox: string;
  readonly idempotencyKeys: string;
  readonly partitions: string;
  readonly replies: string;
}

const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/;

/** A PostgreSQL schema name Meridian accepts: lower-case letters, digits and '_', at most 63. */
export function requireSchemaName(schema: unknown): string {
  if (typeof schema !== 'string' || !schemaPattern.test(schema)) {
    throw new ValidationError(`'schema' must match ${schemaPattern}: current value is '${String(schema)}'`, {
      details: { field: 'schema', rule: 'pattern' },
    });
  }
  return schema;
}

/**
 * Table names. Every table carries the `store_` prefix because on SQLite it shares one file
 * with the log's tables; on PostgreSQL they also live in `schema`.
 */
export function storeTables(schema?: string): StoreTables {
  const prefix = schema === undefined ? '' : `"${requireSchemaName(schema)}".`;
  return {
    entities: `${prefix}store_entities`,
    sagas: `${prefix}store_sagas`,
    sagaJournal: `${prefix}store_saga_journal`,
    timers: `${prefix}store_timers`,
    inbox: `${prefix}store_inbox`,
    outbox: `${prefix}store_outbox`,
    idempotencyKeys: `${prefix}store_idempotency_keys`,
    partitions: `${prefix}store_partitions`,
    replies: `${prefix}store_replies`,
  };
}

/**
 * Builds a sub-store's SQL text once per store (per `StoreTables`), not on every call: the text
 * keys the prepared-statement cache, and a string rebuilt per call must be flattened and hashed
 * anew each time, which showed up in the commerce benchmark's profile.
 */
export function sqlPerStore<T>(
  build: (tables: StoreTables, dialect: Dialect) => T,
): (session: { readonly tables: StoreTables; readonly dialect: Dialect }) => T {
  const built = new WeakMap<StoreTables, T>();
  return (session) => {
    let text = built.get(session.tables);
    if (text === undefined) {
      text = build(session.tables, session.dialect);
      built.set(session.tables, text);
    }
    return text;
  };
}
