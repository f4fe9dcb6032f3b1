// `meridian verify <spec>`: runs an app as real processes under a fault schedule drawn from a
// seed, records the history of its operations, checks it, and prints a report with the command
// that replays the run (docs/verify.md).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatReport, isVerifySpec, runVerify, type VerifySpec } from '../chaos/index.ts';
import { ensureError, ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, integer, parseCommand } from './args.ts';

export const VERIFY_USAGE = `Usage: meridian verify <spec> [--seed <n>] [--duration <time>] [--json]

Runs the app a verification spec describes (a module whose default export is
defineVerifySpec({...}), from 'meridian/chaos') as real processes for --duration, under faults
drawn from --seed: kill -9 and restart (with clock skew), a slow or failing dependency,
duplicated and reordered deliveries, a full disk (on a small filesystem of the run's own, when
the machine allows mounts). Then it heals every fault, checks the history of operations against
the spec's invariants, and prints the operations, the faults, each invariant's outcome, the
violations with the operations involved, and the command that replays the run.

Options:
  --seed <n>          the seed of the workload and the fault schedule, 0..4294967295
                      (default: drawn at random, and printed in the replay command)
  --duration <time>   how long the workload runs: 500ms, 20s, 2m; 1s..1h (default 20s)
  --json              print the report as JSON instead of text
  --out <dir>         where history.jsonl and report.json go (default a new temporary directory)

Exit status: 0 every invariant holds, 1 a violation was found, 2 bad arguments or spec.`;

export interface VerifyCommandOptions {
  specPath: string;
  seed: number;
  durationMs: number;
  json: boolean;
  out?: string;
}

/** Reads `20s`, `500ms`, `2m` into milliseconds, within [1 s, 1 h]. */
export function parseDuration(raw: string): number {
  const match = /^(\d+)(ms|s|m)$/.exec(raw.trim());
  const value =
    match === null
      ? Number.NaN
      : Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2] as 'ms' | 's' | 'm'];
  if (!Number.isSafeInteger(value) || value < 1000 || value > 3_600_000) {
    throw new ValidationError(
      `'--duration' must be a time between 1s and 1h written as <n>ms, <n>s or <n>m: current value is '${raw.slice(0, 40)}'`,
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
  const { seed, duration, json, out } = parsed.values;
  return {
    specPath,
    seed:
      seed === undefined ? Math.floor(random() * 4_294_967_296) : integer('--seed', seed, 0, 4_294_967_295),
    durationMs: duration === undefined ? 20_000 : parseDuration(duration),
    json: json === true,
    ...(out === undefined ? {} : { out }),
  };
}

/** Loads a spec module, naming the file and what to do when it is not one. */
export async function loadVerifySpec(path: string, cwd: string): Promise<VerifySpec<unknown>> {
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
  if (!isVerifySpec(module.default)) {
    throw new ValidationError(
      `verify spec '${path}' must export a spec as its default export ('export default defineVerifySpec({...})'): it exports ${Object.keys(module).join(', ') || 'nothing'}`,
    );
  }
  return module.default;
}

export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: VerifyCommandOptions | 'help';
  let spec: VerifySpec<unknown>;
  try {
    options = parseVerifyOptions(argv);
    if (options === 'help') {
      output.out(VERIFY_USAGE);
      return 0;
    }
    spec = await loadVerifySpec(options.specPath, process.cwd());
  } catch (thrown) {
    const error = ensureError(thrown);
    if (!(error instanceof ValidationError)) throw error;
    output.err(`meridian verify: ${error.message}`);
    return 2;
  }
  const { report } = await runVerify({
    spec,
    specPath: resolve(options.specPath),
    seed: options.seed,
    durationMs: options.durationMs,
    ...(options.out === undefined ? {} : { runDirectory: resolve(options.out) }),
    log: options.json ? undefined : (line) => output.err(line),
  });
  output.out(options.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.passed ? 0 : 1;
}
