/**
 * Planted bugs: known classes of bugs put back into Meridian's core on purpose, one at a time,
 * so that the verifier (`meridian verify`, src/chaos) can be shown to catch each of them. Issue
 * 20 asks for this: a checker that has never caught a real bug proves nothing.
 *
 * The switch is the environment variable `MERIDIAN_PLANTED_BUG`, read once when this module
 * loads, and honoured only when `NODE_ENV` is `test` as well (vitest sets it; a deployment never
 * should). Set without `NODE_ENV=test`, loading Meridian fails at once with a message naming
 * both variables, so a plant can never be on in production by accident, nor silently ignored.
 * No public entry exports this module; each plant is one `if (plantedBug === '…')` at its seam.
 */

import { ValidationError } from './errors.ts';

/** The bug classes that can be planted, and where each one sits. */
export const plantedBugs = {
  /**
   * A subscription commits its consumer offsets in a later transaction than the batch's effects
   * (as Kafka's auto-commit does, on the next poll): a stop or crash in between redelivers the
   * batch, and its records are applied twice. (src/runtime/subscription-runner.ts)
   */
  'offsets-apart': 'consumer offsets committed apart from their effects',
  /**
   * A completed Idempotency-Key is taken over as if it were free: a repeated request runs its
   * handler again instead of getting the stored response. (src/store/idempotency-rule.ts)
   */
  'idempotency-forgotten': 'a completed Idempotency-Key taken over as if new',
  /**
   * A claim completes or releases an Idempotency-Key without its token matching the key's: an
   * attempt that outlived its lease and failed releases the reservation of the attempt that took
   * the key over, so a third attempt takes the key and runs the handler while the second still
   * does. (src/store/idempotency-rule.ts, which MemoryIdempotencyStore applies; the SQL stores
   * match the token in their statements.)
   */
  'idempotency-released': 'an Idempotency-Key released without its token',
  /**
   * A subscription handles the records behind one whose handler failed (in the same partition of
   * the same batch) instead of holding them back with it: when the partition rewinds to the
   * failed record for its retry, they are read and applied a second time.
   * (src/runtime/subscription-runner.ts)
   */
  'applied-twice':
    'a consumed record applied twice (the records behind a failed one handled before its retry)',
  /**
   * A saga's step (a command sent to an entity) journals its result in one transaction and
   * applies the command in the next: a crash in between leaves the step journaled as done
   * without its effect, and the saga's replay trusts the journal and never applies it.
   * (src/runtime/saga-execution.ts)
   */
  'journal-before-effect': "a saga step's result journaled before its effect",
  /**
   * The embedded shape's ownership fence is skipped: a runtime whose database another runtime
   * opened since (its process paused, then resumed; or a crash the other took over from) goes on
   * committing. (src/runtime/embedded.ts)
   */
  'unfenced-write': 'a write without the ownership fence',
  /**
   * The in-process cache tier stores a write whatever version it holds: a write-through set that
   * arrives late (its source version older than the one stored) overwrites the newer value, which
   * reads then serve until the next write. (src/cache/memory-tier.ts; Redis's write script keeps
   * its own check.)
   */
  'cache-stale-set': 'a cache set that overwrites a newer version',
} as const;

export type PlantedBug = keyof typeof plantedBugs;

export const plantedBugVariable = 'MERIDIAN_PLANTED_BUG';

/** Reads the switch: undefined (the normal case), or the one bug planted in this process. */
export function readPlantedBug(env: Readonly<Record<string, string | undefined>>): PlantedBug | undefined {
  const value = env[plantedBugVariable];
  if (value === undefined || value === '') return undefined;
  if (!Object.hasOwn(plantedBugs, value)) {
    throw new ValidationError(
      `${plantedBugVariable} must be one of ${Object.keys(plantedBugs).join(', ')}: current value is '${value.slice(0, 60)}'`,
    );
  }
  if (env.NODE_ENV !== 'test') {
    throw new ValidationError(
      `${plantedBugVariable}=${value} plants a bug in Meridian's core for the verifier's tests, and is honoured only with NODE_ENV=test: current NODE_ENV is '${(env.NODE_ENV ?? '').slice(0, 30)}'. Unset ${plantedBugVariable}`,
    );
  }
  return value as PlantedBug;
}

/** The bug planted in this process, if any (see the module comment for the switch). */
export const plantedBug: PlantedBug | undefined = readPlantedBug(process.env);
