/**
 * Support for cluster.multinode.test.ts: node processes (cluster-node-child.ts) the test starts,
 * stops, kills and freezes; audit triggers that record which node committed every write to the
 * store and every partition claim; and a bounded poll. Not part of the API.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { systemClock, systemTimers } from '../time.ts';

export const nodeChildScript = join(import.meta.dirname, 'cluster-node-child.ts');

export interface NodeConfig {
  readonly pg: string;
  readonly schema: string;
  readonly brokers: string;
  readonly workTopic: string;
  readonly group: string;
  readonly run: string;
  readonly partitions: number;
  readonly seed: number;
  readonly sessionTimeoutMs: number;
  /** Of the work topic; other topics get the brokers' default (3 on the cluster layout). */
  readonly replicationFactor?: number;
  /** Each process's stdout and stderr are appended to `<logDirectory>/<name>.log`. */
  readonly logDirectory: string;
}

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

/** One node process and what it printed. */
export class NodeProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  port = 0;
  owned: number[] = [];
  /** Ever owned a partition (OWNED with at least one). */
  ownedAny = false;
  fenced = 0;
  relayExit: { topic: string; ids: string[] } | undefined;
  /** Set when the test ends it on purpose (SIGKILL, SIGTERM) or expects it to end itself. */
  exitExpected = false;
  #ready: Promise<void>;
  #stderr: string[] = [];
  #exit: Exit | undefined;

  constructor(name: string, config: NodeConfig, env: Record<string, string> = {}) {
    this.name = name;
    const args = [
      nodeChildScript,
      ...['--pg', config.pg, '--schema', config.schema, '--brokers', config.brokers],
      ...['--work-topic', config.workTopic, '--group', config.group, '--node', name, '--run', config.run],
      ...['--partitions', String(config.partitions), '--seed', String(config.seed)],
      ...['--session-timeout-ms', String(config.sessionTimeoutMs)],
      ...(config.replicationFactor === undefined
        ? []
        : ['--replication-factor', String(config.replicationFactor)]),
    ];
    this.child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.exited = new Promise<Exit>((resolve) =>
      this.child.once('exit', (code, signal) => {
        keep(`--- exited ${JSON.stringify({ code, signal })}`);
        this.#exit = { code, signal };
        resolve(this.#exit);
      }),
    );
    const logFile = join(config.logDirectory, `${name}.log`);
    const keep = (line: string) =>
      appendFileSync(logFile, `${new Date(systemClock.now()).toISOString()} ${line}\n`);
    keep(`--- started pid ${this.child.pid}`);
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      keep(line);
      this.#stderr.push(line);
      if (this.#stderr.length > 40) this.#stderr.shift();
    });
    this.#ready = new Promise<void>((resolve, reject) => {
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        keep(line);
        const [kind, rest = '', more = ''] = line.split(' ');
        if (kind === 'READY') {
          this.port = Number(rest);
          resolve();
        } else if (kind === 'OWNED') {
          this.owned = rest === '' ? [] : rest.split(',').map(Number);
          this.ownedAny ||= this.owned.length > 0;
        } else if (kind === 'FENCED') this.fenced = Number(rest);
        else if (kind === 'RELAY-EXIT') this.relayExit = { topic: rest, ids: more.split(',') };
      });
      void this.exited.then((exit) =>
        reject(new Error(`node ${name} exited before READY (${JSON.stringify(exit)}): ${this.stderr()}`)),
      );
    });
    this.#ready.catch(() => {});
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** How it ended, when it did without the test asking (a crash). */
  get unexpectedExit(): Exit | undefined {
    return this.exitExpected ? undefined : this.#exit;
  }

  /** The last lines it wrote to stderr, for failure messages. */
  stderr(): string {
    return this.#stderr.join('\n').slice(-4000);
  }

  async ready(timeoutMs: number): Promise<void> {
    await withDeadline(this.#ready, timeoutMs, `node ${this.name} printed READY`);
  }

  /** SIGKILL (also ends a stopped process) and waits for the exit. */
  async kill(): Promise<Exit> {
    this.exitExpected = true;
    if (this.alive) this.child.kill('SIGKILL');
    return this.exited;
  }

  signal(signal: NodeJS.Signals): void {
    if (signal === 'SIGTERM' || signal === 'SIGKILL') this.exitExpected = true;
    if (this.alive) this.child.kill(signal);
  }
}

export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof systemTimers.setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = systemTimers.setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    if (timer !== undefined) timer.cancel();
  }
}

/**
 * Polls `check` until it returns a value other than undefined, every `everyMs`, failing after
 * `timeoutMs` with `what` and the last value `describe` gives. Returns the value and the time taken.
 */
export async function pollUntil<T>(
  check: () => Promise<T | undefined>,
  options: { timeoutMs: number; everyMs?: number; what: string; describe?: () => Promise<string> | string },
): Promise<{ value: T; tookMs: number }> {
  const started = systemClock.monotonicNow();
  for (;;) {
    const value = await check();
    if (value !== undefined) return { value, tookMs: systemClock.monotonicNow() - started };
    if (systemClock.monotonicNow() - started > options.timeoutMs) {
      const detail = options.describe === undefined ? '' : `: ${await options.describe()}`;
      throw new Error(`timed out after ${options.timeoutMs} ms waiting until ${options.what}${detail}`);
    }
    await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, options.everyMs ?? 100));
  }
}

/** The store tables whose writes the audit records, with the column that names the row. */
export const auditedTables = [
  'store_entities',
  'store_sagas',
  'store_saga_journal',
  'store_timers',
  'store_outbox',
  'store_replies',
  'store_inbox',
] as const;

/**
 * Audit triggers in `schema` (after the store's migrations ran). Every committed write to a store
 * table is recorded at commit time (a deferred constraint trigger runs inside COMMIT, after the
 * runtime's fencing check) with the writing node (its connection's application_name), and every
 * partition claim when it takes the row lock. A write that passed its fence therefore has an audit
 * time before any later claim of its partition; one that committed after another node's claim
 * would show up after it. The rows drop large columns: only ids, kinds and partitions are kept.
 */
export function auditSql(schema: string): string {
  const s = `"${schema}"`;
  const triggers = auditedTables
    .map(
      (table) => `CREATE CONSTRAINT TRIGGER audit_write AFTER INSERT OR UPDATE OR DELETE ON ${s}.${table}
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${s}.audit_write();`,
    )
    .join('\n');
  return `
    CREATE TABLE ${s}.audit_writes (seq BIGSERIAL PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL,
      node TEXT NOT NULL, row JSONB NOT NULL, at TIMESTAMPTZ NOT NULL);
    CREATE TABLE ${s}.audit_claims (seq BIGSERIAL PRIMARY KEY, partition INTEGER NOT NULL,
      epoch BIGINT NOT NULL, owner TEXT NOT NULL, node TEXT NOT NULL, at TIMESTAMPTZ NOT NULL);
    CREATE FUNCTION ${s}.audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO ${s}.audit_writes (tbl, op, node, row, at) VALUES (TG_TABLE_NAME, TG_OP,
        current_setting('application_name'),
        (CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END)
          - 'state' - 'input' - 'output' - 'result' - 'value' - 'key' - 'headers' - 'payload' - 'reply',
        clock_timestamp());
      RETURN NULL;
    END $$;
    CREATE FUNCTION ${s}.audit_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO ${s}.audit_claims (partition, epoch, owner, node, at) VALUES (NEW.partition,
        NEW.epoch, NEW.owner, current_setting('application_name'), clock_timestamp());
      RETURN NULL;
    END $$;
    CREATE TRIGGER audit_claim AFTER INSERT OR UPDATE ON ${s}.store_partitions
      FOR EACH ROW EXECUTE FUNCTION ${s}.audit_claim();
    ${triggers}`;
}
