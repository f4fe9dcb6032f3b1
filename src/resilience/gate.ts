/**
 * Gates: policies that act only before and after a call (admit or refuse it, then record how it
 * went) without re-running, racing or replacing it: circuit breaker, bulkhead, cooperative
 * timeout, rate limit, load shedder. A pipeline runs a run of consecutive gates in ONE async
 * frame: enter each in order, call the operation once, exit each in reverse. Nesting one async
 * function per policy instead costs a promise and a microtask hop per layer, which was most of
 * a pipeline's overhead.
 *
 * The order of effects is exactly what nesting would give: a gate is entered only after the
 * gates outside it admitted the call (waiting, if one queues), and each gate sees the outcome
 * as transformed by the gates inside it (a cooperative timeout's TimeoutError, an inner refusal).
 */
import type { CallContext } from './context.ts';
import { type Operation, PolicyBase } from './policy.ts';

export abstract class GatePolicy<Ticket> extends PolicyBase {
  /** True when a ticket carries, as `context`, the context the rest of the call runs with. */
  readonly derivesContext: boolean = false;

  /** Whether this instance works as a gate; a policy that races the call (an aggressive timeout) does not. */
  get gateable(): boolean {
    return true;
  }

  /**
   * Admits the call and returns what `exit` needs to know about it, or throws a refusal. May
   * return a promise when admission has to wait (a bulkhead queue, a shared rate limit).
   */
  abstract enter(context: CallContext): Ticket | Promise<Ticket>;

  /**
   * Records how an admitted call ended. `context` is the one `enter` received. On failure it
   * returns the error to pass outwards (usually `error` itself).
   */
  abstract exit(ticket: Ticket, failed: boolean, error: unknown, context: CallContext): unknown;

  /**
   * Runs the call through this gate alone. The hottest gates override it with the same steps
   * written against `this`: one shared runner calling five gate classes is a megamorphic call
   * site, measurably slower than each class's own.
   */
  run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    return runGate(this, operation, context);
  }
}

async function runGate<T, Ticket>(
  gate: GatePolicy<Ticket>,
  operation: Operation<T>,
  context: CallContext,
): Promise<T> {
  let ticket = gate.enter(context);
  if (ticket instanceof Promise) ticket = await ticket;
  const inner = gate.derivesContext ? (ticket as { context: CallContext }).context : context;
  let value: T;
  try {
    value = await operation(inner);
  } catch (error) {
    throw gate.exit(ticket as Ticket, true, error, context);
  }
  gate.exit(ticket as Ticket, false, undefined, context);
  return value;
}

/** Runs `operation` through `gates`, the first outermost, in a single async frame. */
export async function runGates<T>(
  gates: readonly GatePolicy<unknown>[],
  operation: Operation<T>,
  context: CallContext,
): Promise<T> {
  const count = gates.length;
  const tickets: unknown[] = new Array(count);
  const contexts: CallContext[] = new Array(count);
  let current = context;
  let entered = 0;
  try {
    for (; entered < count; entered++) {
      const gate = gates[entered]!;
      contexts[entered] = current;
      let ticket = gate.enter(current);
      if (ticket instanceof Promise) ticket = await ticket;
      tickets[entered] = ticket;
      if (gate.derivesContext) current = (ticket as { context: CallContext }).context;
    }
  } catch (refusal) {
    // Gate `entered` refused: the gates that admitted the call see the refusal as its outcome.
    throw exitAll(gates, tickets, contexts, entered, refusal);
  }
  let value: T;
  try {
    value = await operation(current);
  } catch (error) {
    throw exitAll(gates, tickets, contexts, count, error);
  }
  for (let index = count - 1; index >= 0; index--)
    gates[index]!.exit(tickets[index], false, undefined, contexts[index]!);
  return value;
}

function exitAll(
  gates: readonly GatePolicy<unknown>[],
  tickets: unknown[],
  contexts: CallContext[],
  entered: number,
  error: unknown,
): unknown {
  let outcome = error;
  for (let index = entered - 1; index >= 0; index--)
    outcome = gates[index]!.exit(tickets[index], true, outcome, contexts[index]!);
  return outcome;
}
