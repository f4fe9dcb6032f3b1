// Command-line options of the benchmarks: `--name value`, checked, with a default.

/** The value after `--name`, or `fallback` when it is absent. */
export function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : (process.argv[index + 1] ?? fallback);
}

/** `--name` as an integer in [min, max]; a RangeError naming the option otherwise. */
export function integer(name: string, fallback: number, min: number, max: number): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} must be an integer in [${min}, ${max}]: current value is ${value}`);
  }
  return value;
}
