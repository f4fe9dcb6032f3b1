import { ValidationError } from '../errors.ts';

/**
 * Reads an optional integer option, applying its default and bounds. The message names the
 * option, the rule and the value, so a misconfiguration is fixed without reading the source.
 */
export function integerOption(
  name: string,
  value: number | undefined,
  defaultValue: number,
  min: number,
  max: number,
): number {
  const actual = value ?? defaultValue;
  if (typeof actual !== 'number' || !Number.isInteger(actual)) {
    throw new ValidationError(`'${name}' must be an integer: current value is ${String(actual)}`);
  }
  if (actual < min) throw new ValidationError(`'${name}' must be >= ${min}: current value is ${actual}`);
  if (actual > max) throw new ValidationError(`'${name}' must be <= ${max}: current value is ${actual}`);
  return actual;
}
