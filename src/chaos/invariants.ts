/**
 * The built-in invariants and the app's own, checked over a finished run: its history and the
 * final state the spec collected once the faults were healed.
 *
 * - `exactly-once`: an effect the app acknowledged (or may have carried out) exists at most once;
 * - `no-lost-write`: an effect the app acknowledged exists;
 * - `saga-terminal`: every saga (order, transfer…) reached a terminal state within the bound;
 * - `linearizable`: the operations on each key agree with the key's sequential model;
 * - the app's own, each named by the spec (`no-oversell`).
 */

import type { Operation } from './history.ts';
import { checkLinearizable, type Model } from './linearizability.ts';

/** A broken invariant: which, what was wrong, and the operations involved. */
export interface Violation {
  readonly invariant: string;
  readonly message: string;
  readonly operations: readonly number[];
}

/** What one invariant concluded. */
export interface InvariantResult {
  readonly invariant: string;
  /** 'unknown' when the checker could not decide (a linearizability search gave up). */
  readonly outcome: 'holds' | 'violated' | 'unknown';
  /** What was checked: '412 effects', '3 keys'. */
  readonly checked: string;
}

/** A saga's state as the spec reads it from the app. */
export interface SagaState {
  readonly id: string;
  readonly status: string;
  readonly terminal: boolean;
  /** The effect (as `effects.id` names it) that started the saga: links it to its operations. */
  readonly effectId?: string;
}

/** A violation an app-specific invariant reports: a message, and the operations it is about. */
export type AppViolation = string | { readonly message: string; readonly operations?: readonly number[] };

/**
 * The invariants a spec asks for. Each built-in one is on when its part is given; `custom` are
 * the app's own.
 */
export interface Invariants<Final> {
  /**
   * Effects: `id` names the effect an operation asks for (undefined: none, e.g. a read); `counts`
   * reads how many times each effect exists in the final state. Turns on `exactly-once` and
   * `no-lost-write`.
   */
  readonly effects?: {
    id(operation: Operation): string | undefined;
    counts(final: Final): ReadonlyMap<string, number>;
  };
  /**
   * Sagas: the run waits (polling the final state) up to `terminalWithinMs` after the faults
   * are healed for every saga to be terminal. Turns on `saga-terminal`.
   */
  readonly sagas?: {
    list(final: Final): readonly SagaState[];
    readonly terminalWithinMs: number;
  };
  /** Per-key linearizability of the operations that have a key and whose kind `kinds` lists. */
  readonly linearizable?: {
    readonly model: Model;
    readonly kinds: readonly string[];
    /** @default 200_000 */
    readonly maxStates?: number;
  };
  /** The app's own: a name and a check returning violations (empty: it holds). */
  readonly custom?: readonly {
    readonly name: string;
    check(final: Final, operations: readonly Operation[]): readonly AppViolation[];
  }[];
}

export interface CheckOutcome {
  readonly results: readonly InvariantResult[];
  readonly violations: readonly Violation[];
}

/** How many violations of one invariant the report lists at most (the rest are counted). */
const maxViolationsPerInvariant = 20;

/** Checks every invariant the spec asks for over a run's operations and final state. */
export function checkInvariants<Final>(
  invariants: Invariants<Final>,
  operations: readonly Operation[],
  final: Final,
): CheckOutcome {
  const results: InvariantResult[] = [];
  const violations: Violation[] = [];
  const record = (invariant: string, checked: string, found: Violation[], unknown = false) => {
    results.push({
      invariant,
      checked,
      outcome: found.length > 0 ? 'violated' : unknown ? 'unknown' : 'holds',
    });
    violations.push(...found.slice(0, maxViolationsPerInvariant));
    if (found.length > maxViolationsPerInvariant) {
      violations.push({
        invariant,
        message: `… and ${found.length - maxViolationsPerInvariant} more violations of ${invariant}`,
        operations: [],
      });
    }
  };
  if (invariants.effects !== undefined) checkEffects(invariants.effects, operations, final, record);
  if (invariants.sagas !== undefined) {
    const sagas = invariants.sagas.list(final);
    const stuck = sagas.filter((saga) => !saga.terminal);
    record(
      'saga-terminal',
      `${sagas.length} sagas`,
      stuck.map((saga) => ({
        invariant: 'saga-terminal',
        message: `saga ${saga.id} is still '${saga.status}' ${invariants.sagas!.terminalWithinMs} ms after the faults were healed`,
        operations: operations
          .filter(
            (operation) =>
              operation.key === saga.id ||
              (saga.effectId !== undefined && invariants.effects?.id(operation) === saga.effectId),
          )
          .map((operation) => operation.id),
      })),
    );
  }
  if (invariants.linearizable !== undefined) {
    const { model, kinds, maxStates } = invariants.linearizable;
    const chosen = operations.filter((operation) => kinds.includes(operation.kind));
    const keys = checkLinearizable(chosen, model, maxStates === undefined ? {} : { maxStates });
    const found: Violation[] = [];
    for (const key of keys) {
      if (key.outcome === 'violation')
        found.push({ invariant: 'linearizable', message: key.message, operations: key.operations });
    }
    record(
      'linearizable',
      `${keys.length} keys, ${chosen.length} operations`,
      found,
      keys.some((key) => key.outcome === 'unknown'),
    );
  }
  for (const custom of invariants.custom ?? []) {
    const found = custom
      .check(final, operations)
      .map((violation) =>
        typeof violation === 'string'
          ? { invariant: custom.name, message: violation, operations: [] }
          : { invariant: custom.name, message: violation.message, operations: violation.operations ?? [] },
      );
    record(custom.name, 'history and final state', found);
  }
  return { results, violations };
}

function checkEffects<Final>(
  effects: NonNullable<Invariants<Final>['effects']>,
  operations: readonly Operation[],
  final: Final,
  record: (invariant: string, checked: string, found: Violation[]) => void,
): void {
  const counts = effects.counts(final);
  const asked = new Map<string, Operation[]>();
  for (const operation of operations) {
    if (operation.status === 'fail') continue;
    const id = effects.id(operation);
    if (id === undefined) continue;
    asked.set(id, [...(asked.get(id) ?? []), operation]);
  }
  const duplicated: Violation[] = [];
  const lost: Violation[] = [];
  for (const [id, askedBy] of asked) {
    const count = counts.get(id) ?? 0;
    const ids = askedBy.map((operation) => operation.id);
    if (count > 1) {
      duplicated.push({
        invariant: 'exactly-once',
        message: `effect ${id} exists ${count} times (asked for by ${ids.length} deliveries)`,
        operations: ids,
      });
    }
    const acknowledged = askedBy.filter((operation) => operation.status === 'ok');
    if (count === 0 && acknowledged.length > 0) {
      lost.push({
        invariant: 'no-lost-write',
        message: `effect ${id} was acknowledged (operation ${acknowledged[0]!.id}) but is not in the final state`,
        operations: ids,
      });
    }
  }
  for (const [id, count] of counts) {
    if (count > 1 && !asked.has(id)) {
      duplicated.push({
        invariant: 'exactly-once',
        message: `effect ${id} exists ${count} times`,
        operations: [],
      });
    }
  }
  const acknowledged = [...asked.values()].filter((list) =>
    list.some((operation) => operation.status === 'ok'),
  );
  record('exactly-once', `${counts.size} effects`, duplicated);
  record('no-lost-write', `${acknowledged.length} acknowledged effects`, lost);
}
