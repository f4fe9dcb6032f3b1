import type { Migration } from '../sqlite/database.ts';
import type { Dialect, StoreTables } from './dialect.ts';

/** The SQLite trigger that keeps each saga's journal dense, and the message it aborts with. */
const journalDenseTrigger = 'store_saga_journal_dense';
export const journalGapMessage = 'meridian: saga journal entries must be dense';

/** The SQL condition of an ended saga; the same text in the index and in the queries that use it. */
export const endedStatusesSql = `status IN ('completed', 'compensated', 'failed', 'cancelled')`;

/** The ended statuses before `cancelled` (migrations 6 and 7, which must not change). */
const endedStatusesSqlV6 = `status IN ('completed', 'compensated', 'failed')`;

/**
 * The SQL condition of a saga that has not ended. The status indexes hold only those (what a
 * start resumes): ended sagas are most rows, listing them by status reads the table in id order.
 */
export const unendedStatusesSql = `status IN ('running', 'compensating')`;

/** An index of the store's, qualified by the tables' schema on PostgreSQL. */
function indexName(t: StoreTables, name: string): string {
  const dot = t.sagas.lastIndexOf('.');
  return dot === -1 ? name : `${t.sagas.slice(0, dot + 1)}${name}`;
}

/** The component name the store's migrations are recorded under in `meridian_migrations`. */
export const storeComponent = 'store';

/**
 * The store's numbered migrations: one SQL text for both dialects, with the few dialect words
 * (key collation, identity column) filled in from `dialect`. Never edit a released migration;
 * add the next number instead.
 *
 * Times are BIGINT milliseconds since the epoch; JSON is TEXT, so both dialects store and
 * return exactly the text Meridian wrote.
 */
export function storeMigrations(dialect: Dialect, t: StoreTables): Migration[] {
  const key = dialect.keyText;
  return [
    {
      version: 1,
      name: 'entities, sagas, journal, timers, inbox, outbox, idempotency keys',
      sql: `
CREATE TABLE ${t.entities} (
  type TEXT NOT NULL,
  id ${key} NOT NULL,
  state TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (type, id)
);

CREATE TABLE ${t.sagas} (
  id ${key} NOT NULL PRIMARY KEY,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT NOT NULL,
  output TEXT,
  reason TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  version BIGINT NOT NULL
);
CREATE INDEX store_sagas_status ON ${t.sagas} (status, id);

CREATE TABLE ${t.sagaJournal} (
  saga_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  error TEXT,
  attempts INTEGER NOT NULL,
  at BIGINT NOT NULL,
  PRIMARY KEY (saga_id, sequence)
);

CREATE TABLE ${t.timers} (
  id ${key} NOT NULL PRIMARY KEY,
  due_at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  payload TEXT NOT NULL
);
CREATE INDEX store_timers_due ON ${t.timers} (due_at, id);

CREATE TABLE ${t.inbox} (
  consumer TEXT NOT NULL,
  message_id TEXT NOT NULL,
  applied_at BIGINT NOT NULL,
  PRIMARY KEY (consumer, message_id)
);
CREATE INDEX store_inbox_applied ON ${t.inbox} (applied_at);

CREATE TABLE ${t.outbox} (
  id ${dialect.identityKey},
  topic TEXT NOT NULL,
  key BYTEA,
  value BYTEA,
  headers TEXT NOT NULL,
  timestamp BIGINT NOT NULL
);

CREATE TABLE ${t.idempotencyKeys} (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('in_flight', 'completed')),
  lease_until BIGINT,
  response_status INTEGER,
  response_headers TEXT,
  response_body TEXT,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX store_idempotency_expires ON ${t.idempotencyKeys} (expires_at);
`,
    },
    {
      version: 2,
      name: 'idempotency keys: fencing token per reservation',
      // The token of the key's latest reservation: 1 for a new key, +1 on each takeover, and
      // complete/release must present it. Keys reserved before this migration have 0, which no
      // reservation answers: they complete or release only once taken over. From here on an
      // 'in_flight' row with a NULL lease_until is a released key, kept so its count goes on.
      sql: `
ALTER TABLE ${t.idempotencyKeys} ADD COLUMN token BIGINT NOT NULL DEFAULT 0;
`,
    },
    {
      version: 3,
      name: 'idempotency keys: when the request holding the key first reserved it',
      // NULL for keys reserved before this migration: their next reservation starts afresh.
      sql: `
ALTER TABLE ${t.idempotencyKeys} ADD COLUMN reserved_at BIGINT;
`,
    },
    {
      version: 4,
      name: 'saga journal: density checked by a trigger (SQLite)',
      // SQLite runs an INSERT whose SELECT reads the target table through a temporary table: the
      // guarded append (see SqlSagaStore.appendJournal) cost ~2.5x a plain one, the largest
      // statement of a commerce order. On SQLite the append is a plain INSERT and this trigger
      // refuses a gap (one index seek); PostgreSQL keeps the guard in the statement.
      sql: dialect.name === 'sqlite' ? journalDenseTriggerSql(t) : 'SELECT 1;',
    },
    {
      version: 5,
      name: 'work partitions: fencing epochs, replies of routed commands, partition of sagas, timers and outbox rows',
      // Existing sagas, timers and outbox rows fall in partition 0. `ok` is INTEGER 0/1: the one
      // boolean both dialects store alike.
      sql: `
CREATE TABLE ${t.partitions} (
  partition INTEGER NOT NULL PRIMARY KEY,
  epoch BIGINT NOT NULL,
  owner TEXT NOT NULL,
  claimed_at BIGINT NOT NULL
);

CREATE TABLE ${t.replies} (
  request_id ${key} NOT NULL PRIMARY KEY,
  partition INTEGER NOT NULL,
  ok INTEGER NOT NULL CHECK (ok IN (0, 1)),
  reply TEXT,
  error TEXT,
  code TEXT,
  created_at BIGINT NOT NULL
);
CREATE INDEX store_replies_created ON ${t.replies} (created_at);

ALTER TABLE ${t.sagas} ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
CREATE INDEX store_sagas_partition ON ${t.sagas} (partition, status, id);
ALTER TABLE ${t.timers} ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
CREATE INDEX store_timers_partition ON ${t.timers} (partition, due_at, id);
ALTER TABLE ${t.outbox} ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
CREATE INDEX store_outbox_partition ON ${t.outbox} (partition, id);
`,
    },
    {
      version: 6,
      name: 'retention: ended sagas by type and end time, and whether their journal is deleted',
      // Retention deletes an ended saga's journal after its type's period and its record (the
      // outcome a retried start is answered with) later; `journal_deleted` marks the first step
      // so that no pass reads those sagas again. The index holds ended sagas only (a partial
      // index, in both dialects), so a pass reads exactly the rows it deletes.
      sql: `
ALTER TABLE ${t.sagas} ADD COLUMN journal_deleted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX store_sagas_ended ON ${t.sagas} (type, journal_deleted, updated_at)
  WHERE ${endedStatusesSqlV6};
`,
    },
    {
      version: 7,
      name: 'smaller records: journal, sagas, entities and idempotency keys stored by their primary key (SQLite)',
      // A SQLite table with a TEXT primary key keeps each row twice: in the table under a hidden
      // rowid, and in the key's index. WITHOUT ROWID stores the row in the key's b-tree only:
      // the journal's index alone was ~345 of the ~3,400 bytes of a commerce order
      // (docs/benchmarks.md). PostgreSQL has no such option (its tables are heaps).
      sql: `${dialect.name === 'sqlite' ? withoutRowidTables(t) : autovacuumSettings(t)}
DROP INDEX IF EXISTS ${indexName(t, 'store_sagas_status')};
DROP INDEX IF EXISTS ${indexName(t, 'store_sagas_partition')};
CREATE INDEX store_sagas_status ON ${t.sagas} (status, id) WHERE ${unendedStatusesSql};
CREATE INDEX store_sagas_partition ON ${t.sagas} (partition, status, id) WHERE ${unendedStatusesSql};
`,
    },
    {
      version: 8,
      name: "folded journals: an ended saga's journal as one compressed value on its record",
      // `journal` holds the folded journal (src/store/sql/journal-codec.ts) once `journal_deleted`
      // is 2: 0 rows in the journal table, 1 deleted by retention, 2 folded. Sagas that ended
      // before this migration still have their rows: the next retention passes fold them.
      sql: `
ALTER TABLE ${t.sagas} ADD COLUMN journal BYTEA;
`,
    },
    {
      version: 9,
      name: "cancelled sagas: 'cancelled' is an ended status, in the index retention reads",
      // The queries name every ended status; a partial index serves them only when its own
      // condition is the same, so the index is made again with `cancelled` in it.
      sql: `
DROP INDEX IF EXISTS ${indexName(t, 'store_sagas_ended')};
CREATE INDEX store_sagas_ended ON ${t.sagas} (type, journal_deleted, updated_at) WHERE ${endedStatusesSql};
`,
    },
    {
      version: 10,
      name: "packed values: entity states, stored Idempotency-Key responses and ended sagas' input and output compressed when smaller",
      // `state_packed` / `response_packed` hold the value packed (src/store/sql/packed-text.ts)
      // when that is smaller; `state` is then '' and `response_headers`/`response_body` NULL.
      // `record_packed` holds an ended saga's input and output, packed when its journal is folded
      // (`input` '' and `output` NULL then).
      // Rows written before keep their text (NULL packed columns) and read as before; each is
      // packed the next time it is written.
      sql: `
ALTER TABLE ${t.entities} ADD COLUMN state_packed BYTEA;
ALTER TABLE ${t.idempotencyKeys} ADD COLUMN response_packed BYTEA;
ALTER TABLE ${t.sagas} ADD COLUMN record_packed BYTEA;
`,
    },
  ];
}

/** SQLite: the trigger that refuses a gap in a saga's journal (migration 4; again in 7). */
function journalDenseTriggerSql(t: StoreTables): string {
  return `
CREATE TRIGGER ${journalDenseTrigger} BEFORE INSERT ON ${t.sagaJournal}
WHEN NEW.sequence > 0 AND NOT EXISTS (
  SELECT 1 FROM ${t.sagaJournal} WHERE saga_id = NEW.saga_id AND sequence = NEW.sequence - 1
)
BEGIN
  SELECT RAISE(ABORT, '${journalGapMessage}');
END;
`;
}

/** SQLite: rebuilds four tables WITHOUT ROWID, rows, indexes and trigger kept. */
function withoutRowidTables(t: StoreTables): string {
  const rebuild = (table: string, columns: string, definition: string) => `
CREATE TABLE ${table}_rebuilt (${definition}) WITHOUT ROWID;
INSERT INTO ${table}_rebuilt (${columns}) SELECT ${columns} FROM ${table};
DROP TABLE ${table};
ALTER TABLE ${table}_rebuilt RENAME TO ${table};
`;
  return `
${rebuild(
  t.sagaJournal,
  'saga_id, sequence, kind, name, status, result, error, attempts, at',
  `saga_id TEXT NOT NULL, sequence INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
  status TEXT NOT NULL, result TEXT, error TEXT, attempts INTEGER NOT NULL, at BIGINT NOT NULL,
  PRIMARY KEY (saga_id, sequence)`,
)}
${journalDenseTriggerSql(t)}
${rebuild(
  t.sagas,
  'id, type, status, input, output, reason, created_at, updated_at, version, partition, journal_deleted',
  `id TEXT NOT NULL PRIMARY KEY, type TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL,
  output TEXT, reason TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  version BIGINT NOT NULL, partition INTEGER NOT NULL DEFAULT 0,
  journal_deleted INTEGER NOT NULL DEFAULT 0`,
)}
CREATE INDEX store_sagas_ended ON ${t.sagas} (type, journal_deleted, updated_at) WHERE ${endedStatusesSqlV6};
${rebuild(
  t.entities,
  'type, id, state, version, updated_at',
  `type TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, PRIMARY KEY (type, id)`,
)}
${rebuild(
  t.idempotencyKeys,
  'scope, key, fingerprint, status, lease_until, response_status, response_headers, response_body, expires_at, token, reserved_at',
  `scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('in_flight', 'completed')), lease_until BIGINT,
  response_status INTEGER, response_headers TEXT, response_body TEXT, expires_at BIGINT NOT NULL,
  token BIGINT NOT NULL DEFAULT 0, reserved_at BIGINT, PRIMARY KEY (scope, key)`,
)}
CREATE INDEX store_idempotency_expires ON ${t.idempotencyKeys} (expires_at);
`;
}

/**
 * PostgreSQL: retention deletes from these tables all the time, in small batches; autovacuum
 * makes the dead rows reusable once 5 % of a table is dead (its default, 20 %, lets a table
 * carry a fifth of dead rows before new ones can reuse their space).
 */
function autovacuumSettings(t: StoreTables): string {
  return [t.sagaJournal, t.sagas, t.entities, t.idempotencyKeys]
    .map(
      (table) =>
        `ALTER TABLE ${table} SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000);`,
    )
    .join('\n');
}
