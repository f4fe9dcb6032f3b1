/**
 * A verification spec: what an app ships beside itself so `meridian verify` can run it under
 * faults and check it. A spec module's default export is `defineVerifySpec({...})`.
 */

import { ValidationError } from '../errors.ts';
import type { Random } from '../time.ts';
import type { Completion, Operation, OperationRequest } from './history.ts';
import type { Invariants } from './invariants.ts';

/** What the runner tells `start`: where the app keeps its data, which port, which seed. */
export interface StartContext {
  /** A directory of the run's own (on the small filesystem when the spec allows disk faults); one per node. */
  readonly dataDir: string;
  /** A free loopback port, the same for every restart of the run (of this node). */
  readonly port: number;
  readonly seed: number;
  /** Which node this process is, 0-based (always 0 for a single-process spec). */
  readonly node: number;
  /** For a cluster spec: the services the run's nodes share. */
  readonly cluster?: ClusterContext;
}

/**
 * The shared services of a cluster run, fresh for each run so runs never see each other's state:
 * a PostgreSQL schema and a Kafka work topic and group of their own (made by the nodes as they
 * start, removed by the run when it ends).
 */
export interface ClusterContext {
  readonly pgUrl: string;
  readonly pgSchema: string;
  /** host:port,host:port */
  readonly kafkaBrokers: string;
  readonly group: string;
  readonly workTopic: string;
}

/** A spec that runs as several nodes of the cluster shape (`meridian node`) over Kafka and PostgreSQL. */
export interface ClusterSpec {
  /** Node processes, 2..5: a kill, a pause or a partition hits one of them at a time. */
  readonly nodes: number;
  /**
   * How long a node may be silent before the group moves its work partitions (the session
   * timeout its start command gives it, `--session-timeout-ms`): a pause fault lasts longer than
   * this, so the partitions do move and the paused node's late writes meet the epoch fence.
   * 6000..60000 (Kafka's brokers refuse less than 6 s by default).
   */
  readonly sessionTimeoutMs: number;
}

/** How to start one process of the app. */
export interface ProcessCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

/** The running app as operations and hooks see it. */
export interface AppHandle {
  /** The app's base URL (`http://127.0.0.1:<port>`), stable across restarts. */
  readonly url: string;
  /** What the ready line matched: group 1 is the URL, named groups are the spec's to use (a key). */
  readonly ready: Readonly<Record<string, string>>;
  /** Everything the current process printed (bounded to its last 64 KiB). */
  output(): string;
}

/** Dependency faults at the app's resilience seams (its payment provider, its auth service). */
export type DependencyMode = 'healthy' | 'slow' | 'failing';

export interface Workload {
  /** Clients invoking operations concurrently, one at a time each. 1..64. */
  readonly workers: number;
  /** The next operation of a worker, drawn from its own seeded source. */
  next(random: Random, context: { readonly worker: number; readonly index: number }): OperationRequest;
  /**
   * Carries an operation out against the app. Return `ok` (it took effect and the app said so)
   * or `fail` (it certainly did not); throw when the outcome is unknown (a dropped connection, a
   * timeout, a 5xx): the history records it as indeterminate. `signal` aborts at the run's
   * per-operation timeout.
   */
  invoke(app: AppHandle, operation: Operation, signal: AbortSignal): Promise<Completion>;
  /** Whether a request may be delivered twice as is (it carries its own Idempotency-Key). @default never */
  duplicable?(operation: Operation): boolean;
}

export interface VerifySpec<Final = unknown> {
  /** Lower-case letters, digits and '-'. */
  readonly name: string;
  readonly description?: string;
  start(context: StartContext): ProcessCommand;
  /** A stdout line that says the app serves; group 1 is its URL. Waited for 120 s at most (a loaded machine starts slowly). */
  readonly ready: RegExp;
  /** Runs once after the first start: stock the shelves, open the accounts. */
  setup?(app: AppHandle): Promise<void>;
  readonly workload: Workload;
  /** Turns the app's dependency faults on and off; without it the schedule has none. */
  dependency?(app: AppHandle, mode: DependencyMode): Promise<void>;
  /** Reads what the invariants need from the running app (after the faults are healed). */
  collect(app: AppHandle): Promise<Final>;
  readonly invariants: Invariants<Final>;
  /** Whether the app's data directory may sit on a small filesystem the run fills. @default false */
  readonly diskFaults?: boolean;
  /** Environment variables that change what the spec does, repeated in the replay command. */
  readonly replayEnv?: readonly string[];
  /**
   * Runs the app as a cluster of `nodes` processes instead of one (`start` is called per node,
   * with `node` and `cluster` set); the run then needs Kafka and PostgreSQL (`--kafka`, `--pg`).
   * Disk faults are left out on the cluster shape (its state is in PostgreSQL).
   */
  readonly cluster?: ClusterSpec;
}

const namePattern = /^[a-z][a-z0-9-]{0,62}$/;

/** Checks a spec and returns it: bad specs fail at import with the field named. */
export function defineVerifySpec<Final>(spec: VerifySpec<Final>): VerifySpec<Final> {
  const fail = (message: string): never => {
    throw new ValidationError(`Verify spec '${String(spec?.name)}': ${message}`);
  };
  if (typeof spec !== 'object' || spec === null) {
    throw new ValidationError(`A verify spec must be an object made with defineVerifySpec({...})`);
  }
  if (typeof spec.name !== 'string' || !namePattern.test(spec.name))
    fail(`'name' must be 1-63 lower-case letters, digits or '-', starting with a letter`);
  if (typeof spec.start !== 'function') fail(`'start' must be a function returning { command, args }`);
  if (!(spec.ready instanceof RegExp)) fail(`'ready' must be a RegExp whose group 1 is the app's URL`);
  if (typeof spec.collect !== 'function') fail(`'collect' must be a function reading the final state`);
  const workload = spec.workload;
  if (typeof workload !== 'object' || workload === null) fail(`'workload' must be an object`);
  if (!Number.isInteger(workload.workers) || workload.workers < 1 || workload.workers > 64)
    fail(`'workload.workers' must be an integer in [1, 64]: current value is ${String(workload.workers)}`);
  if (typeof workload.next !== 'function' || typeof workload.invoke !== 'function')
    fail(`'workload.next' and 'workload.invoke' must be functions`);
  if (typeof spec.invariants !== 'object' || spec.invariants === null)
    fail(`'invariants' must be an object (effects, sagas, linearizable, custom)`);
  const sagas = spec.invariants.sagas;
  if (
    sagas !== undefined &&
    (!Number.isInteger(sagas.terminalWithinMs) ||
      sagas.terminalWithinMs < 0 ||
      sagas.terminalWithinMs > 600_000)
  )
    fail(
      `'invariants.sagas.terminalWithinMs' must be an integer in [0, 600000]: current value is ${String(sagas.terminalWithinMs)}`,
    );
  const cluster = spec.cluster;
  if (cluster !== undefined) {
    if (typeof cluster !== 'object' || cluster === null)
      fail(`'cluster' must be an object { nodes, sessionTimeoutMs }`);
    if (!Number.isInteger(cluster.nodes) || cluster.nodes < 2 || cluster.nodes > 5)
      fail(`'cluster.nodes' must be an integer in [2, 5]: current value is ${String(cluster.nodes)}`);
    if (
      !Number.isInteger(cluster.sessionTimeoutMs) ||
      cluster.sessionTimeoutMs < 6000 ||
      cluster.sessionTimeoutMs > 60_000
    )
      fail(
        `'cluster.sessionTimeoutMs' must be an integer in [6000, 60000]: current value is ${String(cluster.sessionTimeoutMs)}`,
      );
  }
  return spec;
}

/** Whether a module's default export looks like a spec (for the CLI loading one). */
export function isVerifySpec(value: unknown): value is VerifySpec {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as VerifySpec).start === 'function' &&
    typeof (value as VerifySpec).collect === 'function'
  );
}
