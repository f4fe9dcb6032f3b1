import { NotFoundError, ValidationError } from '../errors.ts';
import { endedSagaStatuses, type Json } from '../store/types.ts';
import { toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import { requireRuntimeId, requireRuntimeName } from './options.ts';

/**
 * Signals: a value from outside (an approval, a webhook) that a saga waits for by name with
 * `ctx.waitForSignal`, delivered by anyone, on any node, with `runtime.signal(sagaId, name, value)`.
 *
 * A delivered signal waits in the saga's mailbox — one row per saga in the store's entity table,
 * under a type no application entity can have (names cannot start with '$'), keyed by the saga
 * id so it is fenced by the saga's work partition on the cluster shape — until the saga takes it:
 * the unit that takes it journals it and removes it from the mailbox, so it is taken exactly
 * once. The mailbox also remembers the names taken, so delivering a name again is a no-op. It
 * also holds a cancellation asked for (saga-cancellation.ts), which travels the same way.
 */

/** The mailbox's entity type. */
export const mailboxType = '$signals';

export interface Mailbox {
  /** Delivered, not yet taken: name -> value. */
  readonly pending: Record<string, Json>;
  /** Names taken by the saga (journaled). */
  readonly taken: string[];
  /** A cancellation asked for (`runtime.cancelSaga`, saga-cancellation.ts), if any. */
  readonly cancel?: { readonly reason: string; readonly at: number };
}

/** Signals a saga's mailbox holds at most (delivered and taken): a bound on its row. */
export const maxSignalsPerSaga = 1000;

/** What delivering a signal did: taken into the mailbox, or a no-op (that name came before). */
export type SignalDelivery = 'delivered' | 'duplicate';

/** A mailbox's row, as a copy to change. */
export function readMailbox(state: Json | undefined): Mailbox {
  const mailbox = state as Partial<Mailbox> | undefined;
  return {
    pending: { ...(mailbox?.pending ?? {}) },
    taken: [...(mailbox?.taken ?? [])],
    ...(mailbox?.cancel === undefined ? {} : { cancel: mailbox.cancel }),
  };
}

/** Checks a signal's target and name, and turns its value into JSON. */
export function signalRequest(sagaId: string, name: string, value: unknown): { value: Json } {
  requireRuntimeId('A saga id', sagaId);
  requireRuntimeName('A signal name', name);
  return { value: toJson(`The value of signal '${name}'`, value ?? null) };
}

/**
 * Puts signal `name` into the mailbox of saga `sagaId`, inside `scope`: 'duplicate' (changing
 * nothing) when a signal of that name was delivered before, or the error to answer — returned,
 * not thrown, so a refused signal does not roll back the units sharing its transaction — when
 * the saga does not exist or has ended (nobody would ever take it) or its mailbox is full.
 */
export async function deliverSignal(
  scope: UnitScope,
  sagaId: string,
  name: string,
  value: Json,
): Promise<SignalDelivery | Error> {
  const saga = await scope.tx.sagas.get(sagaId);
  if (saga === null || endedSagaStatuses.has(saga.status)) {
    return new NotFoundError(
      saga === null
        ? `Saga '${sagaId}' does not exist: a signal goes to a running saga`
        : `Saga '${sagaId}' has ended (${saga.status}): it waits for no signal any more`,
      { details: { sagaId, signal: name } },
    );
  }
  const stored = await scope.tx.entities.get(mailboxType, sagaId);
  const mailbox = readMailbox(stored?.state);
  if (Object.hasOwn(mailbox.pending, name) || mailbox.taken.includes(name)) return 'duplicate';
  if (Object.keys(mailbox.pending).length + mailbox.taken.length >= maxSignalsPerSaga) {
    return new ValidationError(
      `Saga '${sagaId}' has received ${maxSignalsPerSaga} signals, the most one saga may receive`,
      { details: { sagaId, signal: name } },
    );
  }
  mailbox.pending[name] = value;
  await scope.tx.entities.put(mailboxType, sagaId, mailbox as unknown as Json, stored?.version ?? 0);
  return 'delivered';
}

/**
 * Takes signal `name` from the mailbox inside `scope` (the unit that journals it): its value, or
 * undefined when it has not been delivered.
 */
export async function takeSignal(
  scope: UnitScope,
  sagaId: string,
  name: string,
): Promise<{ value: Json } | undefined> {
  const stored = await scope.tx.entities.get(mailboxType, sagaId);
  if (stored === null) return undefined;
  const mailbox = readMailbox(stored.state);
  if (!Object.hasOwn(mailbox.pending, name)) return undefined;
  const value = mailbox.pending[name]!;
  delete mailbox.pending[name];
  mailbox.taken.push(name);
  await scope.tx.entities.put(mailboxType, sagaId, mailbox as unknown as Json, stored.version);
  return { value };
}

/** Deletes a saga's mailbox (when the saga ends): signals sent later are refused anyway. */
export async function deleteMailbox(scope: UnitScope, sagaId: string): Promise<void> {
  const stored = await scope.tx.entities.get(mailboxType, sagaId);
  if (stored !== null) await scope.tx.entities.delete(mailboxType, sagaId, stored.version);
}
