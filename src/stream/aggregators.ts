import type { Json } from '../store/types.ts';
import type { Window } from './windows.ts';

/**
 * An incremental aggregation: the window keeps one accumulator per key, never the records.
 * The accumulator is JSON (it is committed with the input offsets), so `add` must return a
 * JSON value; it may change `acc` in place and return it. `merge` is needed only for session
 * windows, whose windows merge as records bridge their gaps.
 *
 * `sequence` is the record's place in the input (dense, from 0, restored after a restart), so
 * "first" and "last" break ties between equal event times by input order, deterministically.
 */
export interface Aggregator<T, A extends Json, R> {
  create(): A;
  add(acc: A, value: T, timestampMs: number, sequence: number): A;
  merge?(a: A, b: A): A;
  result(acc: A, window: Window): R;
}

/** Builds a user-defined aggregator (a typed identity: the shape is checked once, here). */
export function aggregator<T, A extends Json, R>(definition: Aggregator<T, A, R>): Aggregator<T, A, R> {
  return definition;
}

/** How many records fell in the window. */
export function count<T>(): Aggregator<T, number, number> {
  return {
    create: () => 0,
    add: (acc) => acc + 1,
    merge: (a, b) => a + b,
    result: (acc) => acc,
  };
}

/** The sum of `of(value)` over the window. */
export function sum<T>(of: (value: T) => number): Aggregator<T, number, number> {
  return {
    create: () => 0,
    add: (acc, value) => acc + of(value),
    merge: (a, b) => a + b,
    result: (acc) => acc,
  };
}

/** The least `of(value)` in the window (null for none, which a fired window never has). */
export function min<T>(of: (value: T) => number): Aggregator<T, number | null, number | null> {
  return {
    create: () => null,
    add: (acc, value) => {
      const x = of(value);
      return acc === null || x < acc ? x : acc;
    },
    merge: (a, b) => (a === null ? b : b === null ? a : Math.min(a, b)),
    result: (acc) => acc,
  };
}

/** The greatest `of(value)` in the window. */
export function max<T>(of: (value: T) => number): Aggregator<T, number | null, number | null> {
  return {
    create: () => null,
    add: (acc, value) => {
      const x = of(value);
      return acc === null || x > acc ? x : acc;
    },
    merge: (a, b) => (a === null ? b : b === null ? a : Math.max(a, b)),
    result: (acc) => acc,
  };
}

/** [event time, input sequence, value]: the value with the earliest (or latest) event time. */
type Stamped = [number, number, Json] | null;

function earlier(a: Stamped, b: Stamped): Stamped {
  if (a === null) return b;
  if (b === null) return a;
  return a[0] < b[0] || (a[0] === b[0] && a[1] <= b[1]) ? a : b;
}

function later(a: Stamped, b: Stamped): Stamped {
  if (a === null) return b;
  if (b === null) return a;
  return a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]) ? a : b;
}

/** `of(value)` of the record with the earliest event time (ties: the first in input order). */
export function first<T, V extends Json>(of: (value: T) => V): Aggregator<T, Stamped, V | null> {
  return {
    create: () => null,
    add: (acc, value, timestampMs, sequence) => earlier(acc, [timestampMs, sequence, of(value)]),
    merge: earlier,
    result: (acc) => (acc === null ? null : (acc[2] as V)),
  };
}

/** `of(value)` of the record with the latest event time (ties: the last in input order). */
export function last<T, V extends Json>(of: (value: T) => V): Aggregator<T, Stamped, V | null> {
  return {
    create: () => null,
    add: (acc, value, timestampMs, sequence) => later(acc, [timestampMs, sequence, of(value)]),
    merge: later,
    result: (acc) => (acc === null ? null : (acc[2] as V)),
  };
}
