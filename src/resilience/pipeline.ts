/**
 * Composition: `pipeline(a, b, c)` runs an operation through `a`, which runs it through `b`,
 * which runs it through `c`: the first policy is outermost. A common order for an outbound call
 * is fallback → retry → circuit breaker → bulkhead → timeout: the timeout bounds each attempt,
 * the bulkhead holds a slot only while an attempt runs, the breaker sees every attempt's outcome,
 * retry tries again, and the fallback answers when everything inside has failed.
 *
 * One call context flows through every layer; only the policies that cancel (timeout, hedge)
 * derive a child, and no layer creates an AbortSignal unless the operation reads one.
 */

import { ValidationError } from '../errors.ts';
import type { CallContext } from './context.ts';
import { type AltOf, type Operation, type Policy, PolicyBase } from './policy.ts';

export class PipelinePolicy<Alt> extends PolicyBase<Alt> {
  readonly policies: readonly Policy<unknown>[];

  constructor(policies: readonly Policy<unknown>[]) {
    super();
    if (policies.length === 0)
      throw new ValidationError("'policies' must hold at least one policy: current value is []");
    // Flatten nested pipelines: one less closure per call and per layer of nesting.
    this.policies = policies.flatMap((policy) =>
      policy instanceof PipelinePolicy ? policy.policies : [policy],
    );
  }

  run<T>(operation: Operation<T>, context: CallContext): Promise<T | Alt> {
    return this.#runFrom(0, operation, context) as Promise<T | Alt>;
  }

  #runFrom<T>(index: number, operation: Operation<T>, context: CallContext): Promise<unknown> {
    const policy = this.policies[index]!;
    if (index === this.policies.length - 1) return policy.run(operation, context);
    return policy.run((inner) => this.#runFrom(index + 1, operation, inner as CallContext), context);
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
