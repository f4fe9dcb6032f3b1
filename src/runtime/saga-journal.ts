import { isMeridianError } from '../errors.ts';
import type { JournalEntry, Json } from '../store/types.ts';
import { toJson } from './codec.ts';
import type { SagaFailure } from './definitions.ts';
import { truncateMessage } from './effects.ts';
import { StepFailedError } from './errors.ts';

/*
 * What a saga's journal entries are called and hold: written by the execution
 * (saga-execution.ts), read back by it on replay and by the read side (saga-progress.ts).
 * Nothing outside the runtime reads them: applications use `runtime.progress`.
 */

/** Journal names the runtime writes for itself. User names cannot start with '$'. */
export const journalNames = {
  /** Sequence 0 of every saga: the trace context it runs in. */
  start: '$start',
  /** The saga's code failed: the failure, written with the switch to `compensating`. */
  failed: '$failed',
  /** A step's deadline, written before its first attempt so it survives restarts. */
  deadline: (step: string) => `$deadline:${step}`,
  send: (entity: string, command: string) => `${entity}.${command}`,
  /**
   * A send (or a send's compensation) to an entity another node owns: the request, journaled with
   * its id before the reply is awaited (cluster shape). The reply follows as the entry itself.
   */
  request: (kind: 'step' | 'compensation', name: string) => `$request:${kind}:${name}`,
  emit: (topic: string) => `emit:${topic}`,
  /** `ctx.now()` and `ctx.random()`: the value. */
  now: '$now',
  random: '$random',
  /**
   * The end of a sleep, written only when something else was journaled or in flight while it
   * slept: where its end falls among the other calls' outcomes.
   */
  wake: (sleep: string) => `$wake:${sleep}`,
  /** The start of a signal wait: its deadline (and timer), so the timeout survives restarts. */
  awaitSignal: (signal: string) => `$await:${signal}`,
  /** A signal wait's outcome: the value taken from the mailbox, or the timeout. */
  signal: (signal: string) => `$signal:${signal}`,
  /**
   * The saga was cancelled (`runtime.cancelSaga`): journaled by the code's call that noticed it,
   * always tagged with that call's index, with `{ reason }`. The `$failed` entry follows.
   */
  cancelled: '$cancelled',
} as const;

/** The reason a `$cancelled` entry recorded. */
export function cancelReasonOf(entry: Pick<JournalEntry, 'result'>): string {
  return (entry.result as { reason: string }).reason;
}

/** The timer kind that wakes a sleeping saga. */
export const sagaWakeTimerKind = 'meridian.saga.wake';

/** Which send an entry is: the saga's own, or a compensation's. */
export type SendKind = 'step' | 'compensation';

export function codeOf(error: Error): string | null {
  return isMeridianError(error) ? error.code : null;
}

/** An error's details as JSON when they are JSON and small; null otherwise. */
function detailsOf(error: Error): Json | null {
  if (!isMeridianError(error) || Object.keys(error.details).length === 0) return null;
  try {
    const json = toJson('details', error.details);
    return JSON.stringify(json).length <= 4096 ? json : null;
  } catch {
    return null;
  }
}

/** The failure a thrown error stands for. */
export function failureOf(error: Error): SagaFailure {
  return {
    message: truncateMessage(error.message),
    code: codeOf(error),
    step: error instanceof StepFailedError ? error.step : null,
    details: detailsOf(error),
  };
}

/** The failure a `$failed` entry recorded. */
export function failureFromEntry(entry: Pick<JournalEntry, 'result' | 'error'>): SagaFailure {
  const result = (entry.result ?? {}) as { code?: Json; step?: Json; details?: Json };
  return {
    message: entry.error ?? 'unknown error',
    code: typeof result.code === 'string' ? result.code : null,
    step: typeof result.step === 'string' ? result.step : null,
    details: result.details ?? null,
  };
}

/** The journal entry of an applied send: its reply, or (a step's) rejection. */
export function sendEntry(
  sagaId: string,
  sequence: number,
  kind: SendKind,
  name: string,
  at: number,
  outcome: { reply: Json } | Error,
): JournalEntry {
  const failed = outcome instanceof Error;
  return {
    sagaId,
    sequence,
    kind,
    name,
    status: failed ? 'failed' : 'completed',
    result: failed ? { code: codeOf(outcome) } : outcome.reply,
    error: failed ? truncateMessage(outcome.message) : null,
    attempts: 1,
    at,
  };
}
