import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { ValidationError } from '../errors.ts';

/** The parsed flags: a string option's text, a boolean flag's presence; absent when not given. */
export type ParsedValues<O extends ParseArgsOptionsConfig> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string;
};

/** A command's parsed flags and its positional arguments. */
export interface ParsedCommand<O extends ParseArgsOptionsConfig> {
  values: ParsedValues<O>;
  positionals: string[];
}

/**
 * Parses one command's arguments the same way for every command: unknown options are
 * ValidationErrors (exit 2) naming what was wrong, as are positional arguments beyond
 * `positionals` (their names, for the message), and `--help`/`-h` returns 'help'. Values are
 * left as text for the command to validate with its own bounds. `command` is the whole name the
 * user typed: `meridian dev`, `commerce node`.
 */
export function parseCommand<O extends ParseArgsOptionsConfig>(
  command: string,
  argv: string[],
  options: O,
  positionals: readonly string[] = [],
): ParsedCommand<O> | 'help' {
  let parsed: { values: ParsedValues<O> & { help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
    }) as typeof parsed;
  } catch (error) {
    throw new ValidationError(`${command}: ${(error as Error).message}`, { cause: error });
  }
  if (parsed.values.help === true) return 'help';
  if (parsed.positionals.length > positionals.length) {
    const extra = parsed.positionals[positionals.length];
    throw new ValidationError(
      positionals.length === 0
        ? `${command} takes no positional arguments: current value is '${extra}'`
        : `${command} takes ${positionals.map((name) => `<${name}>`).join(' ')} only: '${extra}' is one too many`,
    );
  }
  delete parsed.values.help;
  return { values: parsed.values, positionals: parsed.positionals };
}

/** parseCommand for a command without positional arguments: its flags, or 'help'. */
export function parseCommandLine<O extends ParseArgsOptionsConfig>(
  command: string,
  argv: string[],
  options: O,
): ParsedValues<O> | 'help' {
  const parsed = parseCommand(command, argv, options);
  return parsed === 'help' ? 'help' : parsed.values;
}

/** `raw` when it is one of `allowed`, `fallback` when absent; a ValidationError naming the option otherwise. */
export function choice<T extends string>(
  name: string,
  raw: string | undefined,
  fallback: T,
  allowed: readonly T[],
): T {
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ValidationError(
      `'${name}' must be one of ${allowed.map((value) => `'${value}'`).join(', ')}: current value is '${raw}'`,
    );
  }
  return raw as T;
}

/** `raw` as an integer in [min, max]; a ValidationError naming the option otherwise. */
export function integer(name: string, raw: string, min: number, max: number): number {
  const value = /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ValidationError(`'${name}' must be an integer in [${min}, ${max}]: current value is '${raw}'`);
  }
  return value;
}

/** `raw` as a number in [min, max], `fallback` when absent; a ValidationError naming the option otherwise. */
export function number(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return fallback;
  const value = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ValidationError(`'${name}' must be a number in [${min}, ${max}]: current value is '${raw}'`);
  }
  return value;
}

/**
 * The HTTP port a command listens on: `--port`, else the PORT environment variable (when set and
 * not empty), else `fallback`. 0 picks a free port.
 */
export function port(flag: string | undefined, env: NodeJS.ProcessEnv, fallback: number): number {
  if (flag !== undefined) return integer('--port', flag, 0, 65_535);
  if (env.PORT !== undefined && env.PORT !== '') return integer('PORT', env.PORT, 0, 65_535);
  return fallback;
}

/** Where a command writes its lines: the console, or a test's collector. */
export interface CommandOutput {
  out(line: string): void;
  err(line: string): void;
}

export const consoleOutput: CommandOutput = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};
