/**
 * Simulation mode: the app's definitions hosted by the real runtime in this process, on an empty
 * SQLite database of its own, under a virtual clock (ManualClock), a seeded random source, a
 * microtask yield for the group commit and inline WAL checkpoints (no worker thread), driven by
 * a schedule drawn from the seed: operations delivered after virtual delays (so out of order),
 * some delivered twice, some whose answer is lost, the clock moved on, the runtime stopped and
 * started again on the same database, and crashed (another runtime takes the database over). Nothing in a run reads real time or real randomness, so a
 * run is a pure function of its schedule: the same seed gives the same history, byte for byte.
 *
 * A failing schedule is shrunk by dropping steps while it still fails (delta debugging), so the
 * report shows a short schedule that breaks the invariant.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureError, ValidationError } from '../errors.ts';
import { SqliteLog } from '../log/sqlite/sqlite-log.ts';
import type { Definition } from '../runtime/definitions.ts';
import { createRuntime, type Runtime } from '../runtime/runtime.ts';
import { SqliteDatabase } from '../store/sqlite/database.ts';
import { SqliteStore } from '../store/sqlite/store.ts';
import { flushMicrotasks, ManualClock, type Random, seededRandom } from '../time.ts';
import { type Completion, History, type Operation, type OperationRequest } from './history.ts';
import { type CheckOutcome, checkInvariants, type Invariants } from './invariants.ts';
import type {
  SimulatedHttp,
  SimulatedRequest,
  SimulatedResponse,
  SimulatedServices,
} from './simulation-http.ts';

/** What a simulated client is given to carry an operation out. */
export interface SimulationClient extends SimulatedServices {
  /** Sends a request to the spec's `http` (its gateway of the moment), on virtual time. */
  http(request: SimulatedRequest): Promise<SimulatedResponse>;
}

export interface SimulationSpec<Final = unknown> {
  readonly name: string;
  /** The app's entities, sagas and subscriptions. */
  readonly definitions: readonly Definition[];
  /**
   * The app's HTTP face, when its workload goes through it: made once per run and told each
   * runtime the run starts; `simulatedGateway(routes)` (src/app) serves routes on Meridian's
   * gateway. See simulation-http.ts.
   */
  readonly http?: () => SimulatedHttp;
  readonly workload: {
    /** Simulated clients, one operation at a time each. */
    readonly workers: number;
    /** Operations a run invokes (duplicated deliveries not counted). */
    readonly operations: number;
    next(random: Random, context: { readonly worker: number; readonly index: number }): OperationRequest;
    /**
     * Carries an operation out on the runtime, or through `client.http` on the routes; throwing
     * leaves its outcome unknown. `client` also waits on virtual time and draws seeded numbers.
     */
    invoke(runtime: Runtime, operation: Operation, client: SimulationClient): Promise<Completion>;
    /** Whether the network may deliver this request twice. @default never */
    duplicable?(operation: OperationRequest): boolean;
  };
  /** Reads the final state once the run settled. */
  collect(runtime: Runtime): Promise<Final>;
  readonly invariants: Invariants<Final>;
  /** Environment variables that change what the spec does, repeated in the replay command. */
  readonly replayEnv?: readonly string[];
}

/** One step of a simulated schedule. */
export type SimulationStep =
  | {
      readonly type: 'invoke';
      readonly worker: number;
      readonly request: OperationRequest;
      /** Virtual time before the runtime receives it. */
      readonly delayMs: number;
      /** Delivered a second time after this many ms (a duplicated delivery), or never. */
      readonly duplicateAfterMs?: number;
      /** The runtime's answer never reaches the client: it ends indeterminate. */
      readonly loseAnswer: boolean;
    }
  | { readonly type: 'advance'; readonly ms: number }
  /** The runtime stopped (it finishes what it has in hand) and started again. */
  | { readonly type: 'restart' }
  /**
   * The runtime's process dies `afterMs` of virtual time from now, in the middle of whatever the
   * operations delivered by then are doing: a new runtime takes the database over at once, which
   * fences the old one (every write it still tries is refused, as if it never happened), then the
   * old one is stopped. What it committed stays; what it had not committed is lost.
   */
  | { readonly type: 'crash'; readonly afterMs: number };

export interface SimulationResult {
  readonly seed: number;
  readonly steps: readonly SimulationStep[];
  readonly history: History;
  /** SHA-256 of the history's JSON lines: equal hashes, equal histories. */
  readonly hash: string;
  readonly checked: CheckOutcome;
  readonly passed: boolean;
}

/** The schedule a seed stands for: operations, clock moves, restarts and crashes, with the network's faults. */
export function drawSimulation(spec: SimulationSpec<unknown>, seed: number): SimulationStep[] {
  const random = seededRandom(seed);
  const steps: SimulationStep[] = [];
  const indexes = new Array<number>(spec.workload.workers).fill(0);
  let invoked = 0;
  while (invoked < spec.workload.operations) {
    const roll = random.next();
    if (roll < 0.7) {
      const worker = Math.floor(random.next() * spec.workload.workers);
      const request = spec.workload.next(random, { worker, index: indexes[worker]!++ });
      const duplicate = spec.workload.duplicable?.(request) === true && random.next() < 0.15;
      steps.push({
        type: 'invoke',
        worker,
        request,
        delayMs: Math.floor(random.next() * 20),
        ...(duplicate ? { duplicateAfterMs: Math.floor(random.next() * 40) } : {}),
        loseAnswer: random.next() < 0.05,
      });
      invoked += 1;
    } else if (roll < 0.97) {
      steps.push({ type: 'advance', ms: 1 + Math.floor(random.next() * 30) });
    } else {
      steps.push(
        roll < 0.985 ? { type: 'restart' } : { type: 'crash', afterMs: Math.floor(random.next() * 30) },
      );
    }
  }
  return steps;
}

/** Runs one seed: its drawn schedule, then checks. */
export function simulate<Final>(spec: SimulationSpec<Final>, seed: number): Promise<SimulationResult> {
  return runSchedule(spec, seed, drawSimulation(spec as SimulationSpec<unknown>, seed));
}

/** Lets every chain of promises and every yield of the committer run: a few turns of the loop. */
async function settle(turns = 4): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await flushMicrotasks();
}

/**
 * Where runs keep their databases: memory-backed /dev/shm when the machine has it, else the
 * temporary directory.
 */
const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

/**
 * Databases of finished runs, emptied, which the next runs of this process (or thread) take:
 * opening one costs more than most of a run (its connections each parse the schema, statements
 * are prepared again, and its files are made and removed), and emptying it costs little. Each is
 * as good as new for a run: every table is emptied (with the AUTOINCREMENT counters), so ids
 * and row order start over as in a new file; its write health is back to ok after the emptying
 * write; and its clock reads the clock of the run that holds it.
 */
const idleDatabases: PooledDatabase[] = [];

interface PooledDatabase {
  readonly database: SqliteDatabase;
  /** The clock of the run that holds it: what the database's clock reads. */
  clock: ManualClock;
}

function takeDatabase(clock: ManualClock): PooledDatabase {
  const idle = idleDatabases.pop();
  if (idle !== undefined) {
    idle.clock = clock;
    return idle;
  }
  const directory = mkdtempSync(join(scratch, 'meridian-simulation-'));
  process.once('exit', () => rmSync(directory, { recursive: true, force: true }));
  const pooled = { clock } as PooledDatabase & { database: SqliteDatabase };
  const database = new SqliteDatabase({
    path: join(directory, 'sim.db'),
    checkpoints: 'inline',
    // A new file: its integrity check would only cost time.
    integrityCheck: 'off',
    clock: { now: () => pooled.clock.now(), monotonicNow: () => pooled.clock.monotonicNow() },
  });
  return Object.assign(pooled, { database });
}

/** Empties the database of a finished run and gives it to the next. */
async function giveBack(pooled: PooledDatabase): Promise<void> {
  const { database } = pooled;
  await database.write(() => {
    const tables = database
      .prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'meridian_migrations'",
      )
      .all() as Array<{ name: string }>;
    for (const { name } of tables) database.prepare(`DELETE FROM "${name}"`).run();
    const counters = database
      .prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'sqlite_sequence'")
      .get() as { n: number };
    if (counters.n > 0) database.prepare('DELETE FROM sqlite_sequence').run();
  });
  idleDatabases.push(pooled);
}

/** The simulated host: one database and log, and the runtime of the moment (replaced at a restart). */
class SimulatedHost<Final> {
  readonly clock = new ManualClock(1_700_000_000_000);
  readonly #pooled = takeDatabase(this.clock);
  readonly #database = this.#pooled.database;
  readonly #store = new SqliteStore({ database: this.#database, clock: this.clock });
  /** The log each runtime had, as a process has its own (its consumer groups are in memory). */
  readonly #logs: SqliteLog[] = [];
  readonly #spec: SimulationSpec<Final>;
  readonly #seed: number;
  runtime!: Runtime;
  readonly #http: SimulatedHttp | undefined;
  /** What the routes' handlers and the workload's clients use: virtual time and seeded numbers. */
  readonly client: SimulationClient;
  #generation = 0;
  /** A crash under way (it began in a timer), awaited before the next step. */
  crashing: Promise<void> | undefined;

  constructor(spec: SimulationSpec<Final>, seed: number) {
    this.#spec = spec;
    this.#seed = seed;
    this.#http = spec.http?.();
    const host = this;
    const http = this.#http;
    this.client = {
      get runtime() {
        return host.runtime;
      },
      clock: this.clock,
      sleep: (ms) => new Promise((resolve) => this.clock.setTimeout(resolve, ms)),
      random: seededRandom(seed ^ 0x30),
      http: (request) =>
        http === undefined
          ? Promise.reject(
              new ValidationError(
                `The simulation of '${spec.name}' has no 'http' to send ${request.method} ${request.url} to: give it one (simulatedGateway(routes))`,
              ),
            )
          : http.request(request),
    };
  }

  /** Starts the next runtime on the database; it serves once started. */
  async start(): Promise<void> {
    // Made in a write of its own: its schema check writes, and a crashed runtime may be writing.
    const log = await this.#database.write(
      () =>
        new SqliteLog(this.#database, {
          clock: this.clock,
          timers: this.clock,
          random: seededRandom((this.#seed ^ 0x10) + this.#generation),
          retentionCheckIntervalMs: null,
        }),
    );
    this.#logs.push(log);
    const runtime = createRuntime({
      store: this.#store,
      log,
      clock: this.clock,
      timers: this.clock,
      random: seededRandom((this.#seed ^ 0x20) + this.#generation++),
      yield: () => Promise.resolve(),
      // Retention measures the file on a worker thread, in real time: not part of a pure run.
      retention: { enabled: false },
    }).register(...this.#spec.definitions);
    await runtime.start();
    this.runtime = runtime;
    const { clock, sleep, random } = this.client;
    await this.#http?.serve({ runtime, clock, sleep, random });
  }

  async restart(): Promise<void> {
    await this.runtime.stop().catch(() => undefined);
    await this.start();
  }

  /** Crashes the runtime `afterMs` from now (see the 'crash' step). */
  crashAfter(afterMs: number): void {
    this.clock.setTimeout(() => {
      // Two crashes in one tick of the clock: the second is of the runtime the first started.
      this.crashing = (this.crashing ?? Promise.resolve()).then(async () => {
        const crashed = this.runtime;
        await this.start();
        await crashed.stop().catch(() => undefined);
      });
    }, afterMs);
  }

  /** Moves virtual time on in `stepMs` steps, letting the work each step wakes run. */
  async advance(ms: number, stepMs = 5): Promise<void> {
    for (let left = ms; left > 0; left -= stepMs) {
      this.clock.advance(Math.min(stepMs, left));
      await settle();
      await this.#crashed();
    }
  }

  /** Waits for a crash that began to end: the next runtime serves, the crashed one stopped. */
  async #crashed(): Promise<void> {
    const crashing = this.crashing;
    if (crashing === undefined) return;
    this.crashing = undefined;
    await crashing;
  }

  async close(): Promise<void> {
    await this.#crashed();
    await this.runtime.stop().catch(() => undefined);
    for (const log of this.#logs) await log.close();
    await this.#store.close();
    await giveBack(this.#pooled);
  }
}

/**
 * The async context this module was loaded in. Every run starts from it: a run's store and group
 * committers keep AsyncLocalStorages of their own, and a context that outlives a run keeps an
 * entry for each of them, so runs chained one after another in one context piled those entries
 * up (a context switch copies them all: a run cost twice as much after 1,000 runs as at first).
 */
const loadedContext = AsyncLocalStorage.snapshot();

/** Runs a given schedule (a seed's, or a shrunk one) and checks the history it makes. */
export function runSchedule<Final>(
  spec: SimulationSpec<Final>,
  seed: number,
  steps: readonly SimulationStep[],
): Promise<SimulationResult> {
  return loadedContext(() => runScheduleHere(spec, seed, steps));
}

async function runScheduleHere<Final>(
  spec: SimulationSpec<Final>,
  seed: number,
  steps: readonly SimulationStep[],
): Promise<SimulationResult> {
  const host = new SimulatedHost(spec, seed);
  const history = new History(() => host.clock.now() - 1_700_000_000_000);
  try {
    await host.start();
    for (const step of steps) {
      if (step.type === 'advance') await host.advance(step.ms);
      else if (step.type === 'restart') await host.restart();
      else if (step.type === 'crash') host.crashAfter(step.afterMs);
      else deliver(spec, host, history, step);
      await settle();
    }
    // Quiet: no new work, time moves on so retries, timers and subscriptions finish. With an HTTP
    // face, in the schedule's own 5 ms steps: its handlers and clients wait on virtual time
    // (latencies, leases, timeouts), and each wait ends only at the end of the step it falls in.
    await host.advance(10_000, spec.http === undefined ? 100 : 5);
    history.closeOpen('the simulation ended with the operation still open');
    const final = await spec.collect(host.runtime);
    const checked = checkInvariants(spec.invariants, history.operations, final);
    const hash = createHash('sha256').update(history.toJsonLines()).digest('hex');
    return { seed, steps, history, hash, checked, passed: checked.violations.length === 0 };
  } finally {
    await host.close();
  }
}

function deliver<Final>(
  spec: SimulationSpec<Final>,
  host: SimulatedHost<Final>,
  history: History,
  step: Extract<SimulationStep, { type: 'invoke' }>,
): void {
  const send = (operation: Operation, delayMs: number) => {
    host.clock.setTimeout(() => {
      spec.workload.invoke(host.runtime, operation, host.client).then(
        (completion) =>
          history.complete(
            operation,
            step.loseAnswer ? { status: 'info', error: 'the answer was lost' } : completion,
          ),
        (thrown: unknown) =>
          history.complete(operation, { status: 'info', error: ensureError(thrown).message }),
      );
    }, delayMs);
  };
  const operation = history.invoke(step.worker, step.request);
  send(operation, step.delayMs);
  if (step.duplicateAfterMs !== undefined) {
    send(history.invoke(step.worker, step.request, operation.id), step.duplicateAfterMs);
  }
}

export interface SeedsResult {
  readonly runs: number;
  /** The first failing seed, shrunk, or undefined when every seed passed. */
  readonly failure?: { readonly result: SimulationResult; readonly shrunk: SimulationResult };
}

/** Runs `count` seeds from `firstSeed`; stops at the first failure and shrinks it. */
export async function simulateSeeds<Final>(
  spec: SimulationSpec<Final>,
  firstSeed: number,
  count: number,
): Promise<SeedsResult> {
  for (let seed = firstSeed; seed < firstSeed + count; seed++) {
    const result = await simulate(spec, seed);
    if (!result.passed)
      return { runs: seed - firstSeed + 1, failure: { result, shrunk: await shrink(spec, result) } };
  }
  return { runs: count };
}

/**
 * Drops chunks of steps (halves, then quarters, … then single steps) while the schedule still
 * breaks an invariant of the same name; bounded to 200 re-runs.
 */
export async function shrink<Final>(
  spec: SimulationSpec<Final>,
  failed: SimulationResult,
): Promise<SimulationResult> {
  const names = new Set(failed.checked.violations.map((violation) => violation.invariant));
  const stillFails = (result: SimulationResult) =>
    result.checked.violations.some((violation) => names.has(violation.invariant));
  let best = failed;
  let budget = 200;
  for (
    let chunk = Math.ceil(best.steps.length / 2);
    chunk >= 1 && budget > 0;
    chunk = Math.floor(chunk / 2)
  ) {
    for (let start = 0; start < best.steps.length && budget > 0; budget--) {
      const candidate = [...best.steps.slice(0, start), ...best.steps.slice(start + chunk)];
      const result = await runSchedule(spec, failed.seed, candidate);
      if (stillFails(result)) best = result;
      else start += chunk;
    }
  }
  return best;
}
