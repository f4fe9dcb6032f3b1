import { NotFoundError, ValidationError } from '../errors.ts';
import { endedSagaStatuses, type Json, type StoreReader } from '../store/types.ts';
import type { UnitScope } from './commit-path.ts';
import { SagaEndedError } from './errors.ts';
import { requireRuntimeId } from './options.ts';
import { mailboxType, readMailbox } from './saga-signals.ts';

/**
 * Cancelling a saga (`runtime.cancelSaga`): a durable request, kept in the saga's mailbox (the
 * row signals wait in, saga-signals.ts, fenced by the saga's work partition), delivered by any
 * node to the owner of the saga's partition the way a signal is. The saga's run notices it at
 * its next durable boundary, journals it (`$cancelled`), compensates its finished steps and ends
 * `cancelled` (saga-execution.ts).
 */

/** What asking a saga to cancel did: recorded, or a no-op (asked before, or it ended cancelled). */
export type SagaCancellation = 'requested' | 'duplicate';

/** The longest cancellation reason, in characters. */
export const maxCancelReasonLength = 500;

/** The reason when the caller gives none. */
const defaultReason = 'cancelled by request';

/** Checks a cancellation's target and reason; the reason to record. */
export function cancelRequest(sagaId: string, reason: unknown): { reason: string } {
  requireRuntimeId('A saga id', sagaId);
  if (reason === undefined) return { reason: defaultReason };
  if (typeof reason !== 'string' || reason.length === 0 || reason.length > maxCancelReasonLength) {
    throw new ValidationError(
      `A cancellation's 'reason' must be a string of 1 to ${maxCancelReasonLength} characters: current value is ${typeof reason === 'string' ? `${reason.length} characters long` : typeof reason}`,
    );
  }
  return { reason };
}

/**
 * Records the cancellation of saga `sagaId` inside `scope`: 'requested', or 'duplicate'
 * (changing nothing) when it was asked before or the saga ended cancelled. The error to answer
 * is returned, not thrown, so that it does not roll back the units sharing its transaction:
 * NotFoundError when there is no such saga, SagaEndedError when it ended otherwise.
 */
export async function requestCancel(
  scope: UnitScope,
  sagaId: string,
  reason: string,
  nowMs: number,
): Promise<SagaCancellation | Error> {
  const saga = await scope.tx.sagas.get(sagaId);
  if (saga === null) {
    return new NotFoundError(`Saga '${sagaId}' does not exist: there is nothing to cancel`, {
      details: { sagaId },
    });
  }
  if (saga.status === 'cancelled') return 'duplicate';
  if (endedSagaStatuses.has(saga.status)) {
    return new SagaEndedError(
      `Saga '${sagaId}' has ended (${saga.status}): a cancellation changes nothing any more`,
      { details: { sagaId, status: saga.status } },
    );
  }
  const stored = await scope.tx.entities.get(mailboxType, sagaId);
  const mailbox = readMailbox(stored?.state);
  if (mailbox.cancel !== undefined) return 'duplicate';
  const changed = { ...mailbox, cancel: { reason, at: nowMs } };
  await scope.tx.entities.put(mailboxType, sagaId, changed as unknown as Json, stored?.version ?? 0);
  return 'requested';
}

/** The reason of the cancellation asked for saga `sagaId`, if any (read when it resumes). */
export async function cancelAskedFor(tx: StoreReader, sagaId: string): Promise<string | undefined> {
  const stored = await tx.entities.get(mailboxType, sagaId);
  return stored === null ? undefined : readMailbox(stored.state).cancel?.reason;
}
