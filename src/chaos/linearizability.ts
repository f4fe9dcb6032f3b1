/**
 * Per-key linearizability: can the operations on one key be put in a single order that respects
 * real time (an operation that completed before another was invoked comes first) and that a
 * sequential model of the key accepts, outputs included? The search is Wing & Gong's with Lowe's
 * memoisation (as in Knossos and Porcupine): depth first over the operations that may go next,
 * skipping a (done set, model state) pair already explored.
 *
 * An `ok` operation must appear in the order; an `info` (indeterminate) one may appear anywhere
 * after its invocation, or not at all, and its output is not checked; a `fail` one never happened.
 * No JavaScript library does this (Porcupine is Go, Knossos Clojure), so it is Meridian's own:
 * see docs/dependencies.md.
 */

import type { Operation } from './history.ts';

/**
 * A key's sequential specification. `step` applies an operation to a state and returns the next
 * state, or `undefined` when the operation could not have produced `output` from that state.
 * `output` is `undefined` for an indeterminate operation: apply it without checking anything.
 * States are compared by their JSON, so keep them plain data.
 */
export interface Model<State = unknown> {
  init(key: string): State;
  step(state: State, operation: Operation, output: unknown): State | undefined;
}

export type LinearizabilityResult =
  | { readonly key: string; readonly outcome: 'linearizable'; readonly operations: number }
  | {
      readonly key: string;
      readonly outcome: 'violation';
      /** The operations the longest valid order could not continue with, and the last it placed. */
      readonly operations: readonly number[];
      readonly message: string;
    }
  | {
      readonly key: string;
      readonly outcome: 'unknown';
      readonly operations: number;
      readonly message: string;
    };

export interface LinearizabilityOptions {
  /** Search states explored per key before giving up with 'unknown'. @default 200_000 */
  readonly maxStates?: number;
}

interface Entry {
  readonly operation: Operation;
  readonly call: number;
  /** Infinity for an indeterminate operation: it never constrains what comes after it. */
  readonly ret: number;
  readonly required: boolean;
}

/** Checks every key of `operations` (those with a key and a completion other than `fail`). */
export function checkLinearizable<State>(
  operations: readonly Operation[],
  model: Model<State>,
  options: LinearizabilityOptions = {},
): LinearizabilityResult[] {
  const byKey = new Map<string, Entry[]>();
  for (const operation of operations) {
    if (operation.key === undefined || operation.status === 'fail') continue;
    const required = operation.status === 'ok';
    const entries = byKey.get(operation.key) ?? [];
    entries.push({
      operation,
      call: operation.invokedAt,
      ret: required ? (operation.completedAt ?? Number.POSITIVE_INFINITY) : Number.POSITIVE_INFINITY,
      required,
    });
    byKey.set(operation.key, entries);
  }
  return [...byKey.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, entries]) => checkKey(key, entries, model, options.maxStates ?? 200_000));
}

function checkKey<State>(
  key: string,
  entries: Entry[],
  model: Model<State>,
  maxStates: number,
): LinearizabilityResult {
  entries.sort((a, b) => a.call - b.call);
  const requiredCount = entries.filter((entry) => entry.required).length;
  const seen = new Set<string>();
  const done = new Array<boolean>(entries.length).fill(false);
  let explored = 0;
  let deepest = { depth: -1, last: -1, stuck: [] as number[] };

  // Explicit stack instead of recursion: a key can have thousands of operations.
  const candidatesOf = () => candidates(entries, done);
  const stack: Frame<State>[] = [
    { state: model.init(key), candidates: candidatesOf(), next: 0, placed: -1, requiredPlaced: 0 },
  ];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.requiredPlaced === requiredCount) {
      return { key, outcome: 'linearizable', operations: entries.length };
    }
    if (frame.next >= frame.candidates.length) {
      if (stack.length - 1 > deepest.depth) {
        deepest = {
          depth: stack.length - 1,
          last: frame.placed,
          stuck: frame.candidates.filter((index) => entries[index]!.required),
        };
      }
      stack.pop();
      if (frame.placed >= 0) done[frame.placed] = false;
      continue;
    }
    const index = frame.candidates[frame.next++]!;
    const entry = entries[index]!;
    const next = model.step(
      frame.state,
      entry.operation,
      entry.required ? entry.operation.output : undefined,
    );
    if (next === undefined) continue;
    done[index] = true;
    const signature = `${done.map((flag) => (flag ? '1' : '0')).join('')}|${JSON.stringify(next)}`;
    if (seen.has(signature)) {
      done[index] = false;
      continue;
    }
    seen.add(signature);
    if (++explored > maxStates) {
      return {
        key,
        outcome: 'unknown',
        operations: entries.length,
        message: `gave up after ${maxStates} search states on key '${key}' (${entries.length} operations)`,
      };
    }
    stack.push({
      state: next,
      candidates: candidatesOf(),
      next: 0,
      placed: index,
      requiredPlaced: frame.requiredPlaced + (entry.required ? 1 : 0),
    });
  }
  return violation(key, entries, deepest);
}

/** One level of the search: a state, the operations that may go next, which one is being tried. */
interface Frame<State> {
  state: State;
  candidates: number[];
  next: number;
  placed: number;
  requiredPlaced: number;
}

/** The operations not yet placed that were invoked before every unplaced one returned. */
function candidates(entries: readonly Entry[], done: readonly boolean[]): number[] {
  let minRet = Number.POSITIVE_INFINITY;
  for (let i = 0; i < entries.length; i++) if (!done[i] && entries[i]!.ret < minRet) minRet = entries[i]!.ret;
  const list: number[] = [];
  for (let i = 0; i < entries.length; i++) if (!done[i] && entries[i]!.call < minRet) list.push(i);
  return list;
}

/** The violation, from the deepest point the search reached: the last placed and the stuck operations. */
function violation(
  key: string,
  entries: readonly Entry[],
  deepest: { depth: number; last: number; stuck: number[] },
): LinearizabilityResult {
  const stuck = deepest.stuck.map((index) => entries[index]!.operation.id);
  return {
    key,
    outcome: 'violation',
    operations: [...(deepest.last >= 0 ? [entries[deepest.last]!.operation.id] : []), ...stuck],
    message: `no order of the ${entries.length} operations on key '${key}' agrees with the model: after ${Math.max(0, deepest.depth)} operations, none of ${stuck.length === 0 ? 'the remaining ones' : `operations ${stuck.join(', ')}`} can come next`,
  };
}

/**
 * A register: `write` sets the value (its input's `value`), `read` returns it. The output of a
 * read is compared with the state; a write's output is not checked.
 */
export function registerModel(initial: unknown = null, field = 'value'): Model<unknown> {
  return {
    init: () => initial,
    step(state, operation, output) {
      if (operation.kind === 'write') return (operation.input as Record<string, unknown>)[field];
      if (operation.kind === 'read') {
        if (output === undefined) return state;
        return JSON.stringify(output) === JSON.stringify(state) ? state : undefined;
      }
      return state;
    },
  };
}
