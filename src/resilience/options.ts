/**
 * Option validation shared by every policy factory. A bad option is a programmer's mistake found
 * at construction, so each check throws a ValidationError naming the option, the rule it broke
 * and the value it got: "'maxAttempts' must be <= 100: current value is 1000".
 */
import { ValidationError } from '../errors.ts';
import { type Clock, type Random, systemClock, systemRandom, systemTimers, type Timers } from '../time.ts';

/** The longest delay any policy accepts: one day. Anything longer belongs in a durable timer. */
export const MAX_DURATION_MS = 86_400_000;

/** Throws the ValidationError for `option` breaking `rule`. */
export function invalidOption(option: string, rule: string, value: unknown): never {
  throw new ValidationError(`'${option}' must be ${rule}: current value is ${String(value)}`, {
    details: { option, rule, value },
  });
}

/** Returns `value ?? fallback` after checking it is an integer in [min, max]. */
export function integerOption(
  option: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  const actual = value ?? fallback;
  if (typeof actual !== 'number' || !Number.isInteger(actual)) invalidOption(option, 'an integer', actual);
  if (actual < min) invalidOption(option, `>= ${min}`, actual);
  if (actual > max) invalidOption(option, `<= ${max}`, actual);
  return actual;
}

/** Returns `value ?? fallback` after checking it is a finite number in [min, max]. */
export function numberOption(
  option: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  const actual = value ?? fallback;
  if (typeof actual !== 'number' || !Number.isFinite(actual))
    invalidOption(option, 'a finite number', actual);
  if (actual < min) invalidOption(option, `>= ${min}`, actual);
  if (actual > max) invalidOption(option, `<= ${max}`, actual);
  return actual;
}

/** Like numberOption, for a rate in (0, 1]: zero would make a threshold meaningless. */
export function ratioOption(option: string, value: number | undefined, fallback: number): number {
  const actual = numberOption(option, value, fallback, 0, 1);
  if (actual === 0) invalidOption(option, '> 0', actual);
  return actual;
}

/** A duration in milliseconds: an integer in [min, MAX_DURATION_MS]. */
export function durationOption(option: string, value: unknown, fallback: number, min = 0): number {
  return integerOption(option, value, fallback, min, MAX_DURATION_MS);
}

/** Returns `value ?? fallback` after checking it is one of `allowed`. */
export function oneOfOption<T extends string>(
  option: string,
  value: T | undefined,
  fallback: T | undefined,
  allowed: readonly T[],
): T {
  const actual = value ?? fallback;
  if (actual === undefined || !allowed.includes(actual)) {
    invalidOption(option, `one of ${allowed.map((item) => `'${item}'`).join(', ')}`, actual);
  }
  return actual;
}

/** Checks an optional callback option. */
export function functionOption<F extends (...args: never[]) => unknown>(
  option: string,
  value: F | undefined,
  fallback: F,
): F {
  const actual = value ?? fallback;
  if (typeof actual !== 'function') invalidOption(option, 'a function', actual);
  return actual;
}

/** Checks that an option the caller must give explicitly is present. */
export function requiredOption<T>(option: string, value: T | undefined): T {
  if (value === undefined) invalidOption(option, 'given explicitly (there is no safe default)', value);
  return value;
}

/** Ports for time and randomness, defaulting to the real ones. */
export interface TimePorts {
  /** @default systemClock */
  clock?: Clock;
  /** @default systemTimers */
  timers?: Timers;
  /** @default systemRandom */
  random?: Random;
}

export function portsOf(options: TimePorts): Required<TimePorts> {
  return {
    clock: options.clock ?? systemClock,
    timers: options.timers ?? systemTimers,
    random: options.random ?? systemRandom,
  };
}
