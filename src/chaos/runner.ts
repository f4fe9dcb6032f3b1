/**
 * `meridian verify`'s real-process run: the app started from its spec, its workload driven by
 * seeded clients for the run's duration while the seeded fault schedule kills and restarts it,
 * slows or breaks its dependency, duplicates, reorders and holds back requests, skews its clock
 * and fills its disk; then every fault healed, the final state collected, and the history checked.
 */

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureError, ValidationError } from '../errors.ts';
import { seededRandom, systemClock, systemTimers } from '../time.ts';
import { type AppProcess, removeRunDirectory, SmallFilesystem } from './app-process.ts';
import {
  ClusterDeployment,
  type ClusterServices,
  clusterContext,
  controllableBrokers,
  partitionsUnavailable,
} from './cluster-deployment.ts';
import { type Deployment, SingleDeployment } from './deployment.ts';
import { type Completion, History, type Operation } from './history.ts';
import { type CheckOutcome, checkInvariants } from './invariants.ts';
import { buildReport, type FaultRecord, type VerifyReport } from './report.ts';
import { describeFault, drawSchedule, type Fault, reorderDelayMsMax, selectFaults } from './schedule.ts';
import type { AppHandle, VerifySpec } from './spec.ts';

export interface VerifyOptions {
  readonly spec: VerifySpec<unknown>;
  /** How the replay command names the spec (the path given on the command line). */
  readonly specPath: string;
  readonly seed: number;
  readonly durationMs: number;
  /** The command the replay line starts with. @default 'meridian' */
  readonly program?: string;
  /** How long one operation may take before it counts as indeterminate. @default 5000 */
  readonly operationTimeoutMs?: number;
  /** Operations at most, whatever the duration. @default 20_000 */
  readonly maxOperations?: number;
  /** Where the history and the report are written. @default a new temporary directory */
  readonly runDirectory?: string;
  /** Progress lines (faults as they are injected). */
  readonly log?: (line: string) => void;
  /**
   * Only these faults of the seed's schedule, by their index in it (0-based, in schedule order);
   * what a shrunk run replays. @default every fault of the schedule
   */
  readonly faults?: readonly number[] | undefined;
  /** Where a cluster spec's nodes find PostgreSQL and Kafka; required for one, refused otherwise. */
  readonly cluster?: ClusterServices;
}

export interface VerifyRun {
  readonly report: VerifyReport;
  readonly history: History;
}

const sleep = (ms: number) => new Promise<void>((resolve) => systemTimers.setTimeout(resolve, ms));

/** A free loopback port for the app, the same across its restarts. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * The run's clock: milliseconds the app was up since the workload started. It stops while a
 * killed app restarts, so on a loaded machine where a restart takes seconds the schedule still
 * lands its faults on a running app, and `--duration` is time under load, not time waiting.
 */
class RunClock {
  readonly #startedMs = systemClock.monotonicNow();
  #pausedMs = 0;
  #pausedAtMs: number | undefined;

  elapsedMs(): number {
    const now = this.#pausedAtMs ?? systemClock.monotonicNow();
    return Math.round(now - this.#startedMs - this.#pausedMs);
  }

  pause(): void {
    this.#pausedAtMs ??= systemClock.monotonicNow();
  }

  resume(): void {
    if (this.#pausedAtMs === undefined) return;
    this.#pausedMs += systemClock.monotonicNow() - this.#pausedAtMs;
    this.#pausedAtMs = undefined;
  }

  /** Resolves once the run's clock reads `atMs` (checked every 20 ms). */
  async waitUntil(atMs: number): Promise<void> {
    while (this.elapsedMs() < atMs) await sleep(Math.max(5, Math.min(20, atMs - this.elapsedMs())));
  }
}

/** Shared by the workers and the fault driver. */
interface RunState {
  readonly clock: RunClock;
  /** Set while a killed app restarts: workers that failed wait for it instead of spinning. */
  restarting: Promise<void> | undefined;
  stopped: boolean;
  duplicating: boolean;
  reordering: boolean;
  dependency: 'healthy' | 'slow' | 'failing';
  readonly deliverable: Operation[];
}

/** The fault kinds this run may use, and notes on those left out and why. */
function faultKinds(options: VerifyOptions): { kinds: Fault['kind'][]; notes: string[] } {
  const { spec } = options;
  checkClusterServices(options);
  const notes: string[] = [];
  const diskUnavailable =
    spec.cluster !== undefined
      ? undefined
      : spec.diskFaults === true
        ? SmallFilesystem.unavailable()
        : 'the spec does not allow disk faults';
  const kinds: Fault['kind'][] = ['kill', 'reorder'];
  if (spec.dependency !== undefined) kinds.push('dependency');
  if (spec.workload.duplicable !== undefined) kinds.push('duplicate');
  if (spec.cluster === undefined && diskUnavailable === undefined) kinds.push('disk-full');
  if (diskUnavailable !== undefined) notes.push(`no disk faults: ${diskUnavailable}`);
  if (spec.cluster !== undefined) {
    kinds.push('pause');
    const partitions = partitionsUnavailable(options.cluster!);
    if (partitions === undefined) kinds.push('partition');
    else notes.push(`no network partitions: ${partitions}`);
    if (controllableBrokers(options.cluster!) > 0) kinds.push('broker');
    else notes.push('no broker faults: no --broker-control command was given');
  }
  return { kinds, notes };
}

/** A cluster spec needs PostgreSQL and Kafka; a single-process spec takes neither. */
function checkClusterServices(options: VerifyOptions): void {
  const { spec } = options;
  if (spec.cluster !== undefined && options.cluster === undefined)
    throw new ValidationError(
      `Verify spec '${spec.name}' runs as a cluster of ${spec.cluster.nodes} nodes: give it PostgreSQL and Kafka (--pg <url> --kafka <host:port,...>, or MERIDIAN_PG_URL and MERIDIAN_KAFKA_BROKERS)`,
    );
  if (spec.cluster === undefined && options.cluster !== undefined)
    throw new ValidationError(
      `Verify spec '${spec.name}' runs as one process: '--pg', '--kafka' and '--broker-control' go with a spec that has 'cluster'`,
    );
}

/** The schedule of the run: drawn from the seed, then narrowed to `--faults`. */
function scheduleOf(options: VerifyOptions, kinds: Fault['kind'][]): Fault[] {
  const { spec, seed, durationMs } = options;
  const cluster =
    spec.cluster === undefined
      ? undefined
      : { ...spec.cluster, brokers: controllableBrokers(options.cluster!) };
  const drawn = drawSchedule({ seed, durationMs, kinds, ...(cluster === undefined ? {} : { cluster }) });
  return selectFaults(drawn, options.faults);
}

/** The app as one process or as a cluster's nodes, each on a port of its own. */
async function deploy(
  options: VerifyOptions,
  kinds: readonly Fault['kind'][],
  runDirectory: string,
  filesystem: SmallFilesystem | undefined,
): Promise<Deployment> {
  const { spec, seed } = options;
  if (spec.cluster === undefined) {
    const dataDir = join(runDirectory, 'data');
    if (filesystem === undefined) mkdirSync(dataDir, { recursive: true });
    return new SingleDeployment(spec, dataDir, await freePort(), seed, filesystem);
  }
  const ports: number[] = [];
  while (ports.length < spec.cluster.nodes) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const context = clusterContext(spec, options.cluster!, seed);
  return ClusterDeployment.create({
    spec,
    services: options.cluster!,
    context,
    runDirectory,
    ports,
    seed,
    namespaces: kinds.includes('partition'),
  });
}

/** Runs the spec under its seed's fault schedule and checks the history; see VerifyOptions. */
export async function runVerify(options: VerifyOptions): Promise<VerifyRun> {
  const { spec } = options;
  const { kinds, notes } = faultKinds(options);
  // Before anything is created: a bad --faults leaves nothing behind.
  const schedule = scheduleOf(options, kinds);
  const runDirectory = options.runDirectory ?? mkdtempSync(join(tmpdir(), `meridian-verify-${spec.name}-`));
  mkdirSync(runDirectory, { recursive: true });
  const dataDir = join(runDirectory, 'data');
  const filesystem = kinds.includes('disk-full') ? await SmallFilesystem.create(dataDir, 48) : undefined;
  const app = await deploy(options, kinds, runDirectory, filesystem);
  const faults: FaultRecord[] = [];
  // Interrupted (Ctrl-C, a test's SIGTERM): the app and the mount holder go with the run.
  const interrupted = () => {
    app.kill();
    filesystem?.destroy();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await app.start();
    await spec.setup?.(app.main);
    const { history, heal: healAll } = await runWorkload(options, app, schedule, faults, filesystem);
    const checked = await checkRun(spec, app, history, healAll);
    const report = buildReport({
      options,
      schedule: faults,
      history,
      checked,
      runDirectory,
      notes,
    });
    writeFileSync(join(runDirectory, 'history.jsonl'), history.toJsonLines());
    writeFileSync(join(runDirectory, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    return { report, history };
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await app.stop().catch(() => undefined);
    await app
      .cleanup()
      .catch((error: unknown) =>
        options.log?.(`  cleanup failed: ${ensureError(error).message.slice(0, 300)}`),
      );
    filesystem?.destroy();
    removeRunDirectory(dataDir);
  }
}

/** The workers and the fault driver for the run's duration; returns the history and how to heal every fault. */
async function runWorkload(
  options: VerifyOptions,
  app: Deployment,
  schedule: readonly Fault[],
  faults: FaultRecord[],
  filesystem: SmallFilesystem | undefined,
): Promise<{ history: History; heal: () => Promise<void> }> {
  const clock = new RunClock();
  const history = new History(() => clock.elapsedMs());
  const state: RunState = {
    clock,
    restarting: undefined,
    stopped: false,
    duplicating: false,
    reordering: false,
    dependency: 'healthy',
    deliverable: [],
  };
  const workers = Array.from({ length: options.spec.workload.workers }, (_, worker) =>
    runWorker(options, app, history, state, worker),
  );
  const driver = driveFaults(options, app, schedule, state, faults, filesystem);
  await clock.waitUntil(options.durationMs);
  state.stopped = true;
  await Promise.all(workers);
  await driver;
  history.closeOpen('the run ended with the operation still open');
  return { history, heal: () => heal(options.spec, app, state, filesystem) };
}

/**
 * Reads the final state and checks the invariants. An app that cannot be started again or read
 * once the faults are healed is itself a violation ('app-available'), reported like the others.
 */
async function checkRun(
  spec: VerifySpec<unknown>,
  app: Deployment,
  history: History,
  healAll: () => Promise<void>,
): Promise<CheckOutcome> {
  try {
    await healAll();
    const final = await quiesce(spec, app.main);
    return checkInvariants(spec.invariants, history.operations, final);
  } catch (thrown) {
    const message = `the app could not be started or read once the faults were healed: ${ensureError(thrown).message.slice(0, 2000)}`;
    return {
      results: [{ invariant: 'app-available', outcome: 'violated', checked: 'final state' }],
      violations: [{ invariant: 'app-available', message, operations: [] }],
    };
  }
}

async function runWorker(
  options: VerifyOptions,
  app: Deployment,
  history: History,
  state: RunState,
  worker: number,
): Promise<void> {
  const { spec } = options;
  const random = seededRandom((Math.imul(options.seed, 0x9e3779b1) ^ (worker + 1)) >>> 0);
  const maxOperations = options.maxOperations ?? 20_000;
  for (let index = 0; !state.stopped && history.operations.length < maxOperations; index++) {
    let request = spec.workload.next(random, { worker, index });
    let duplicateOf: number | undefined;
    if (state.duplicating && state.deliverable.length > 0 && random.next() < 0.3) {
      const original = state.deliverable[Math.floor(random.next() * state.deliverable.length)]!;
      request = { kind: original.kind, key: original.key, input: original.input } as typeof request;
      duplicateOf = original.id;
    }
    const operation = history.invoke(worker, request, duplicateOf);
    if (state.reordering) await sleep(Math.floor(random.next() * reorderDelayMsMax));
    let completion: Completion;
    try {
      completion = await spec.workload.invoke(
        app.target(random),
        operation,
        AbortSignal.timeout(options.operationTimeoutMs ?? 5000),
      );
    } catch (thrown) {
      completion = { status: 'info', error: ensureError(thrown).message };
    }
    history.complete(operation, completion);
    if (duplicateOf === undefined && spec.workload.duplicable?.(operation) === true)
      state.deliverable.push(operation);
    // Pace the clients (the machine is shared), and wait while the app restarts.
    if (completion.status !== 'ok' && state.restarting !== undefined) await state.restarting;
    await sleep(completion.status === 'ok' ? Math.floor(random.next() * 5) : 50);
  }
}

async function driveFaults(
  options: VerifyOptions,
  app: Deployment,
  schedule: readonly Fault[],
  state: RunState,
  records: FaultRecord[],
  filesystem: SmallFilesystem | undefined,
): Promise<void> {
  const steps = schedule
    .flatMap((fault) => [
      { atMs: fault.atMs, fault, heal: false },
      ...('untilMs' in fault ? [{ atMs: fault.untilMs, fault, heal: true }] : []),
    ])
    .sort((a, b) => a.atMs - b.atMs);
  for (const step of steps) {
    await Promise.race([state.clock.waitUntil(step.atMs), state.clock.waitUntil(options.durationMs)]);
    if (state.stopped || state.clock.elapsedMs() >= options.durationMs) {
      // A restart under a loaded machine can outlast the run: what was not reached is said so.
      if (!step.heal)
        records.push({
          fault: step.fault,
          description: describeFault(step.fault),
          appliedAtMs: -1,
          note: 'not injected: the run ended first',
        });
      continue;
    }
    const atMs = state.clock.elapsedMs();
    try {
      const note = await applyFault(options, app, step.fault, step.heal, state, filesystem);
      if (!step.heal || note !== '') {
        const recorded = step.heal ? `healed at +${(atMs / 1000).toFixed(1)} s: ${note}` : note;
        records.push({
          fault: step.fault,
          description: describeFault(step.fault),
          appliedAtMs: atMs,
          note: recorded,
        });
        options.log?.(`  fault ${describeFault(step.fault)}${recorded === '' ? '' : ` (${recorded})`}`);
      }
    } catch (thrown) {
      // A fault that could not be applied is reported; the run goes on.
      records.push({
        fault: step.fault,
        description: describeFault(step.fault),
        appliedAtMs: atMs,
        note: `${step.heal ? 'healing it failed' : 'failed'}: ${ensureError(thrown).message.slice(0, 300)}`,
        ...(step.heal ? { heal: true } : {}),
      });
    }
  }
}

async function applyFault(
  options: VerifyOptions,
  app: Deployment,
  fault: Fault,
  heal: boolean,
  state: RunState,
  filesystem: SmallFilesystem | undefined,
): Promise<string> {
  switch (fault.kind) {
    case 'kill':
    case 'pause':
    case 'partition':
    case 'broker':
      return app.apply(fault, heal, (process, skewMs) => restart(options, process, app.main, state, skewMs));
    case 'dependency':
      state.dependency = heal ? 'healthy' : fault.mode;
      await options.spec.dependency?.(app.main, state.dependency);
      return '';
    case 'duplicate':
      state.duplicating = !heal;
      return '';
    case 'reorder':
      state.reordering = !heal;
      return '';
    case 'disk-full':
      if (!heal) return `${Math.round((filesystem?.fill() ?? 0) / 1024)} KiB written`;
      filesystem?.free();
      // A restart that failed on the full disk is tried again now that there is room.
      if (app instanceof SingleDeployment && !app.main.running) {
        await restart(options, app.main, app.main, state, 0);
        return `restarted the app (pid ${app.main.pid})`;
      }
      return '';
  }
}

/** Starts the app again with the run's clock stopped, and puts its dependency back in the current mode. */
async function restart(
  options: VerifyOptions,
  process: AppProcess,
  main: AppHandle,
  state: RunState,
  skewMs: number,
): Promise<void> {
  state.clock.pause();
  const restarted = process.start(skewMs);
  state.restarting = restarted.catch(() => undefined);
  try {
    await restarted;
  } finally {
    state.restarting = undefined;
    state.clock.resume();
  }
  if (state.dependency !== 'healthy') await options.spec.dependency?.(main, state.dependency);
}

async function heal(
  spec: VerifySpec<unknown>,
  app: Deployment,
  state: RunState,
  filesystem: SmallFilesystem | undefined,
) {
  filesystem?.free();
  state.duplicating = false;
  state.reordering = false;
  // A restart that failed during the run (on a full disk, say) is tried again on a healed system.
  await app.heal();
  if (state.dependency !== 'healthy') {
    state.dependency = 'healthy';
    await spec.dependency?.(app.main, 'healthy');
  }
}

/** Collects the final state; with sagas, polls until every one is terminal or the bound passes. */
async function quiesce(spec: VerifySpec<unknown>, app: AppHandle): Promise<unknown> {
  const sagas = spec.invariants.sagas;
  const deadline = systemClock.monotonicNow() + (sagas?.terminalWithinMs ?? 0);
  for (;;) {
    const final = await spec.collect(app);
    if (sagas === undefined || sagas.list(final).every((saga) => saga.terminal)) return final;
    if (systemClock.monotonicNow() > deadline) return final;
    await sleep(200);
  }
}
