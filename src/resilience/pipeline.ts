/**
 * Composition: `pipeline(a, b, c)` runs an operation through `a`, which runs it through `b`,
 * which runs it through `c`: the first policy is outermost. A common order for an outbound call
 * is fallback → retry → circuit breaker → bulkhead → timeout: the timeout bounds each attempt,
 * the bulkhead holds a slot only while an attempt runs, the breaker sees every attempt's outcome,
 * retry tries again, and the fallback answers when everything inside has failed.
 *
 * One call context flows through every layer; only the policies that cancel (timeout, hedge)
 * derive a child, and no layer creates an AbortSignal unless the operation reads one.
 * Consecutive gates (breaker, bulkhead, cooperative timeout, rate limit, load shedder) run in a
 * single async frame (see gate.ts), so `retry → breaker → bulkhead → timeout` costs two.
 */

import { ValidationError } from '../errors.ts';
import type { CallContext } from './context.ts';
import { GatePolicy, runGates } from './gate.ts';
import { type AltOf, type Operation, type Policy, PolicyBase } from './policy.ts';

/** Consecutive gates of a pipeline, run in one async frame. */
class GateRun extends PolicyBase {
  readonly gates: readonly GatePolicy<unknown>[];

  constructor(gates: readonly GatePolicy<unknown>[]) {
    super();
    this.gates = gates;
  }

  run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    return runGates(this.gates, operation, context);
  }
}

function isGate(policy: Policy<unknown>): policy is GatePolicy<unknown> {
  return policy instanceof GatePolicy && policy.gateable;
}

export class PipelinePolicy<Alt> extends PolicyBase<Alt> {
  /** The policies composed, outermost first, nested pipelines flattened. */
  readonly policies: readonly Policy<unknown>[];
  /** What actually runs: the wrapping policies, with each run of consecutive gates fused into one. */
  readonly #stages: readonly Policy<unknown>[];

  constructor(policies: readonly Policy<unknown>[]) {
    super();
    if (policies.length === 0) {
      throw new ValidationError("'policies' must hold at least one policy: current value is []");
    }
    this.policies = policies.flatMap((policy) =>
      policy instanceof PipelinePolicy ? policy.policies : [policy],
    );
    const stages: Policy<unknown>[] = [];
    let gates: GatePolicy<unknown>[] = [];
    const flush = () => {
      if (gates.length === 1) stages.push(gates[0]!);
      else if (gates.length > 1) stages.push(new GateRun(gates));
      gates = [];
    };
    for (const policy of this.policies) {
      if (isGate(policy)) {
        gates.push(policy);
      } else {
        flush();
        stages.push(policy);
      }
    }
    flush();
    this.#stages = stages;
  }

  run<T>(operation: Operation<T>, context: CallContext): Promise<T | Alt> {
    return this.#runFrom(0, operation, context) as Promise<T | Alt>;
  }

  #runFrom<T>(index: number, operation: Operation<T>, context: CallContext): Promise<unknown> {
    const stage = this.#stages[index]!;
    if (index === this.#stages.length - 1) return stage.run(operation, context);
    return stage.run((inner) => this.#runFrom(index + 1, operation, inner as CallContext), context);
  }
}

/** Composes policies into one; the first is outermost. */
export function pipeline<const P extends readonly Policy<unknown>[]>(
  ...policies: P
): PipelinePolicy<AltOf<P[number]>> {
  return new PipelinePolicy(policies);
}

/** Cockatiel's name for `pipeline`. */
export const wrap = pipeline;
