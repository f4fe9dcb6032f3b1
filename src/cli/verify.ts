// `meridian verify <spec>`: runs an app as real processes under a fault schedule drawn from a
// seed, records the history of its operations, checks it, and prints a report with the command
// that replays the run (docs/verify.md).
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type ClusterServices,
  formatReport,
  formatShrunk,
  formatSimulation,
  isSimulationSpec,
  isVerifySpec,
  replayEnvironment,
  runVerify,
  type SimulationSpec,
  shrinkRun,
  simulateSeedsOnThreads,
  type VerifyOptions,
  type VerifyReport,
  type VerifySpec,
} from '../chaos/index.ts';
import { ensureError, ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, integer, parseCommand } from './args.ts';

export const VERIFY_USAGE = `Usage: meridian verify <spec> [--seed <n>] [--duration <time>] [--faults <list>] [--shrink <time>] [--json]
       meridian verify <cluster spec> --pg <url> --kafka <brokers> [--broker-control <command>] [...]
       meridian verify <spec> --simulate [--seed <n>] [--seeds <count>] [--threads <n>] [--json]

Runs the app a verification spec describes (a module whose default export is
defineVerifySpec({...}), from 'meridian/chaos') as real processes for --duration, under faults
drawn from --seed: kill -9 and restart (with clock skew), a slow or failing dependency,
duplicated and reordered deliveries, a full disk (on a small filesystem of the run's own, when
the machine allows mounts). A cluster spec (one with 'cluster') runs as several nodes over
PostgreSQL and Kafka, and its faults also freeze a node past its session timeout and lose a
Kafka broker. Then it heals every fault, checks the history of operations against
the spec's invariants, and prints the operations, the faults, each invariant's outcome, the
violations with the operations involved, and the command that replays the run.

With --simulate it runs the spec's simulation instead (its module's 'simulation' export): the
app's definitions in this process under a virtual clock, seeds --seed.. --seed+--seeds-1, each
a pure function of its seed, spread over worker threads; the first failing seed is shrunk to a
short schedule.

Options:
  --seed <n>          the seed of the workload and the fault schedule, 0..4294967295
                      (default: drawn at random, and printed in the replay command)
  --duration <time>   how long the workload runs: 500ms, 20s, 2m; 1s..1h (default 20s)
  --faults <list>     only these faults of the seed's schedule, by index: 0,2 or none
                      (what the replay command of a shrunk run says)
  --shrink <time>     when the run fails, run it again with fewer faults (none, then halves,
                      … single faults dropped) while an invariant of the same name still
                      breaks, for this long at most: 30s..1h; prints the smallest failing
                      schedule and its replay command
  --json              print the report as JSON instead of text
  --out <dir>         where history.jsonl and report.json go (default a new temporary directory)
  --pg <url>          a cluster spec's PostgreSQL [MERIDIAN_PG_URL]: the run makes a schema of
                      its own there and drops it at the end
  --kafka <brokers>   a cluster spec's Kafka, host:port,... [MERIDIAN_KAFKA_BROKERS]
  --broker-control <command>
                      loses and brings back broker N (the Nth of --kafka) as '<command>
                      kill-node N' and '<command> start-node N', such as 'bash
                      scripts/kafka/kafka.sh' on its cluster layout; without it, no broker faults
  --simulate          run the deterministic simulation instead of real processes
  --seeds <count>     seeds to simulate, 1..1000000 (default 1000)
  --threads <n>       worker threads the seeds are spread over, 1..64 (default: the cores
                      this process may use; one per 100 seeds at most; 1 runs them here)

Exit status: 0 every invariant holds, 1 a violation was found, 2 bad arguments or spec.`;

export interface VerifyCommandOptions {
  specPath: string;
  seed: number;
  /** Seeds to simulate; undefined: a real-process run. */
  simulateSeeds?: number;
  /** Worker threads the simulated seeds are spread over. */
  threads?: number;
  durationMs: number;
  json: boolean;
  out?: string;
  /** Indexes of the seed's schedule to keep; undefined: all. */
  faults?: number[];
  /** How long shrinking a failed run may take; undefined: no shrinking. */
  shrinkMs?: number;
  /** A cluster spec's services as given by flags (the environment fills in what they leave out). */
  pg?: string;
  kafka?: string;
  brokerControl?: string;
}

/** Reads `--faults`: `none`, or distinct indexes `0,2,5` (at most 1000, each 0..999999). */
export function parseFaultSelection(raw: string): number[] {
  if (raw === 'none') return [];
  const words = raw.split(',');
  const indexes = words.map((word) => (/^\d{1,6}$/.test(word) ? Number(word) : Number.NaN));
  if (words.length > 1000 || indexes.some(Number.isNaN) || new Set(indexes).size !== indexes.length) {
    throw new ValidationError(
      `'--faults' must be 'none' or distinct fault indexes separated by commas, such as 0,2: current value is '${raw.slice(0, 40)}'`,
    );
  }
  return indexes.sort((a, b) => a - b);
}

/** Reads `20s`, `500ms`, `2m` into milliseconds, within [`minMs`, 1 h]. */
export function parseDuration(raw: string, option = '--duration', minMs = 1000): number {
  const match = /^(\d+)(ms|s|m)$/.exec(raw.trim());
  const value =
    match === null
      ? Number.NaN
      : Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2] as 'ms' | 's' | 'm'];
  if (!Number.isSafeInteger(value) || value < minMs || value > 3_600_000) {
    throw new ValidationError(
      `'${option}' must be a time between ${minMs / 1000}s and 1h written as <n>ms, <n>s or <n>m: current value is '${raw.slice(0, 40)}'`,
    );
  }
  return value;
}

export function parseVerifyOptions(argv: string[], random = Math.random): VerifyCommandOptions | 'help' {
  const parsed = parseCommand(
    'meridian verify',
    argv,
    {
      seed: { type: 'string' },
      duration: { type: 'string' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      simulate: { type: 'boolean' },
      seeds: { type: 'string' },
      threads: { type: 'string' },
      faults: { type: 'string' },
      shrink: { type: 'string' },
      pg: { type: 'string' },
      kafka: { type: 'string' },
      'broker-control': { type: 'string' },
    },
    ['spec'],
  );
  if (parsed === 'help') return 'help';
  const specPath = parsed.positionals[0];
  if (specPath === undefined) {
    throw new ValidationError(
      'meridian verify needs a spec module: meridian verify apps/commerce/verify.spec.ts',
    );
  }
  const { seed, duration, json, out, simulate, seeds, threads, faults, shrink, pg, kafka } = parsed.values;
  const brokerControl = parsed.values['broker-control'];
  if (simulate === true && (pg !== undefined || kafka !== undefined || brokerControl !== undefined))
    throw new ValidationError(
      `'--pg', '--kafka' and '--broker-control' go with a real-process cluster run, not '--simulate'`,
    );
  if (simulate !== true && seeds !== undefined) throw new ValidationError(`'--seeds' goes with '--simulate'`);
  if (simulate !== true && threads !== undefined)
    throw new ValidationError(`'--threads' goes with '--simulate'`);
  if (
    simulate === true &&
    (duration !== undefined || out !== undefined || faults !== undefined || shrink !== undefined)
  )
    throw new ValidationError(
      `'--simulate' runs seeds, not a duration: leave out '--duration', '--out', '--faults' and '--shrink' (a failing seed is shrunk anyway)`,
    );
  const shrinkMs = shrink === undefined ? undefined : parseDuration(shrink, '--shrink', 30_000);
  return {
    specPath,
    ...(simulate === true
      ? {
          simulateSeeds: seeds === undefined ? 1000 : integer('--seeds', seeds, 1, 1_000_000),
          threads:
            threads === undefined
              ? Math.min(availableParallelism(), 64)
              : integer('--threads', threads, 1, 64),
        }
      : {}),
    seed:
      seed === undefined ? Math.floor(random() * 4_294_967_296) : integer('--seed', seed, 0, 4_294_967_295),
    durationMs: duration === undefined ? 20_000 : parseDuration(duration),
    json: json === true,
    ...(out === undefined ? {} : { out }),
    ...(faults === undefined ? {} : { faults: parseFaultSelection(faults) }),
    ...(shrinkMs === undefined ? {} : { shrinkMs }),
    ...(pg === undefined ? {} : { pg }),
    ...(kafka === undefined ? {} : { kafka }),
    ...(brokerControl === undefined ? {} : { brokerControl }),
  };
}

/**
 * A cluster spec's PostgreSQL and Kafka: the flags, else MERIDIAN_PG_URL and
 * MERIDIAN_KAFKA_BROKERS (read only for a cluster spec, so a shell that exports them for its
 * nodes does not turn a single-process spec's run into an error). Undefined when neither says.
 */
export function clusterServicesOf(
  spec: VerifySpec<unknown>,
  options: VerifyCommandOptions,
  env: Record<string, string | undefined>,
): ClusterServices | undefined {
  const fromEnv = (value: string | undefined) =>
    spec.cluster === undefined || value === '' ? undefined : value;
  const pgUrl = options.pg ?? fromEnv(env.MERIDIAN_PG_URL);
  const kafkaBrokers = options.kafka ?? fromEnv(env.MERIDIAN_KAFKA_BROKERS);
  if (pgUrl === undefined && kafkaBrokers === undefined && options.brokerControl === undefined)
    return undefined;
  if (pgUrl === undefined || kafkaBrokers === undefined)
    throw new ValidationError(
      `a cluster run needs both PostgreSQL and Kafka: give '--pg <url>' and '--kafka <host:port,...>' (or MERIDIAN_PG_URL and MERIDIAN_KAFKA_BROKERS)`,
    );
  return {
    pgUrl,
    kafkaBrokers,
    ...(options.brokerControl === undefined ? {} : { brokerControl: options.brokerControl }),
  };
}

/** Loads a spec module's exports, naming the file when it is missing or fails to load. */
async function loadSpecModule(path: string, cwd: string): Promise<Record<string, unknown>> {
  const file = resolve(cwd, path);
  if (!existsSync(file))
    throw new ValidationError(`verify spec '${path}' does not exist (looked for ${file})`);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (thrown) {
    const error = ensureError(thrown);
    throw new ValidationError(`verify spec '${path}' failed to load: ${error.message}`, { cause: error });
  }
  return module;
}

/** Loads a spec module's spec (its default export), naming the file and what to do when it is not one. */
export async function loadVerifySpec(path: string, cwd: string): Promise<VerifySpec<unknown>> {
  const module = await loadSpecModule(path, cwd);
  if (!isVerifySpec(module.default)) {
    throw new ValidationError(
      `verify spec '${path}' must export a spec as its default export ('export default defineVerifySpec({...})'): it exports ${Object.keys(module).join(', ') || 'nothing'}`,
    );
  }
  return module.default;
}

/** Loads a spec module's simulation (its `simulation` export). */
export async function loadSimulationSpec(path: string, cwd: string): Promise<SimulationSpec<unknown>> {
  const module = await loadSpecModule(path, cwd);
  if (!isSimulationSpec(module.simulation)) {
    throw new ValidationError(
      `verify spec '${path}' has no simulation: '--simulate' needs 'export const simulation = { name, definitions, workload, collect, invariants }' (docs/verify.md)`,
    );
  }
  return module.simulation;
}

export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: VerifyCommandOptions | 'help';
  let spec: VerifySpec<unknown> | SimulationSpec<unknown>;
  try {
    options = parseVerifyOptions(argv);
    if (options === 'help') {
      output.out(VERIFY_USAGE);
      return 0;
    }
    spec =
      options.simulateSeeds === undefined
        ? await loadVerifySpec(options.specPath, process.cwd())
        : await loadSimulationSpec(options.specPath, process.cwd());
  } catch (thrown) {
    const error = ensureError(thrown);
    if (!(error instanceof ValidationError)) throw error;
    output.err(`meridian verify: ${error.message}`);
    return 2;
  }
  if (options.simulateSeeds !== undefined) {
    return runSimulation(spec as SimulationSpec<unknown>, options, options.simulateSeeds, output);
  }
  return runReal(spec as VerifySpec<unknown>, options, output);
}

async function runReal(
  spec: VerifySpec<unknown>,
  options: VerifyCommandOptions,
  output: CommandOutput,
): Promise<number> {
  const log = options.json ? undefined : (line: string) => output.err(line);
  let cluster: ClusterServices | undefined;
  try {
    cluster = clusterServicesOf(spec, options, process.env);
  } catch (thrown) {
    output.err(`meridian verify: ${ensureError(thrown).message}`);
    return 2;
  }
  const run: VerifyOptions = {
    spec,
    specPath: resolve(options.specPath),
    seed: options.seed,
    durationMs: options.durationMs,
    ...(options.out === undefined ? {} : { runDirectory: resolve(options.out) }),
    ...(options.faults === undefined ? {} : { faults: options.faults }),
    ...(cluster === undefined ? {} : { cluster }),
    log,
  };
  let report: VerifyReport;
  try {
    report = (await runVerify(run)).report;
  } catch (thrown) {
    const error = ensureError(thrown);
    if (!(error instanceof ValidationError)) throw error;
    output.err(`meridian verify: ${error.message}`);
    return 2;
  }
  const shrunk =
    report.passed || options.shrinkMs === undefined
      ? undefined
      : await shrinkRun({ run, failed: report, budgetMs: options.shrinkMs, log });
  if (options.json)
    output.out(JSON.stringify(shrunk === undefined ? report : { ...report, shrunk }, null, 2));
  else output.out(formatReport(report) + (shrunk === undefined ? '' : `\n${formatShrunk(report, shrunk)}`));
  return report.passed ? 0 : 1;
}

async function runSimulation(
  spec: SimulationSpec<unknown>,
  options: VerifyCommandOptions,
  seeds: number,
  output: CommandOutput,
): Promise<number> {
  const startedMs = performance.now();
  const result = await simulateSeedsOnThreads(
    spec,
    resolve(options.specPath),
    options.seed,
    seeds,
    options.threads ?? 1,
  );
  const elapsedMs = Math.round(performance.now() - startedMs);
  const replay = `${replayEnvironment(spec.replayEnv)
    .map((word) => `${word} `)
    .join(
      '',
    )}meridian verify ${options.specPath} --simulate --seed ${result.failure?.result.seed ?? options.seed} --seeds ${result.failure === undefined ? seeds : 1}`;
  output.out(formatSimulation(spec, { ...result, firstSeed: options.seed, elapsedMs, replay }, options.json));
  return result.failure === undefined ? 0 : 1;
}
