import { MeridianError, type MeridianErrorOptions } from '../errors.ts';

/**
 * The runtime's own errors. Like the shared ones they carry a stable `code`, so callers (the
 * HTTP gateway, the CLI, tests) can tell them apart without `instanceof`.
 */

/**
 * A saga's code no longer matches its journal on resume: at some position the code asked for a
 * different step (name or kind) than the one journaled, or it finished while the journal holds
 * more. Replaying further could repeat or skip side effects, so the saga is marked `failed`
 * with this error's message and left for an operator.
 */
export class NonDeterminismError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('NON_DETERMINISM', message, options);
  }
}

/**
 * A saga step that failed for good: a terminal error, its retries exhausted, or its deadline
 * passed. The saga code receives it from `ctx.step`/`ctx.send` (the same error, rebuilt from
 * the journal, on replay); if the code lets it escape, the saga compensates.
 */
export class StepFailedError extends MeridianError {
  readonly step: string;
  readonly attempts: number;
  /** The `code` of the error that ended the step, when it had one. */
  readonly causeCode: string | null;
  /** The message of the error that ended the step: data, so nobody parses it out of `message`. */
  readonly causeMessage: string;
  constructor(
    step: string,
    attempts: number,
    causeMessage: string,
    causeCode: string | null,
    options: MeridianErrorOptions = {},
  ) {
    super('STEP_FAILED', `Step '${step}' failed after ${attempts} attempt(s): ${causeMessage}`, {
      ...options,
      details: { step, attempts, causeCode, ...options.details },
    });
    this.step = step;
    this.attempts = attempts;
    this.causeCode = causeCode;
    this.causeMessage = causeMessage;
  }
}

/** No signal of that name reached the saga before its `timeoutMs` passed (`ctx.waitForSignal`). */
export class SignalTimeoutError extends MeridianError {
  readonly signal: string;
  constructor(signal: string, timeoutMs: number) {
    super('SIGNAL_TIMEOUT', `No signal '${signal}' arrived within ${timeoutMs} ms`, {
      details: { signal, timeoutMs },
    });
    this.signal = signal;
  }
}

/** A step's deadline (`timeoutMs`, measured from its first attempt, across restarts) passed. */
export class StepTimeoutError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('TIMEOUT', message, options);
  }
}

/** How a saga ended without completing: the status `handle.result()` names. */
export type SagaNotCompletedStatus = 'compensated' | 'failed' | 'cancelled';

const notCompletedCodes = {
  compensated: 'SAGA_COMPENSATED',
  failed: 'SAGA_FAILED',
  cancelled: 'SAGA_CANCELLED',
} as const;

/**
 * A saga ended without completing; `handle.result()` rejects with it. `status` says how:
 * `compensated` (a step failed and the finished steps were undone), `failed` (non-determinism,
 * or a compensation that cannot succeed) or `cancelled` (`runtime.cancelSaga`; the finished
 * steps were undone).
 */
export class SagaNotCompletedError extends MeridianError {
  readonly sagaId: string;
  readonly status: SagaNotCompletedStatus;
  readonly reason: string;
  constructor(sagaId: string, status: SagaNotCompletedStatus, reason: string) {
    super(notCompletedCodes[status], `Saga '${sagaId}' ${status}: ${reason}`, {
      details: { sagaId, status },
    });
    this.sagaId = sagaId;
    this.status = status;
    this.reason = reason;
  }
}

/**
 * What the saga's code receives from the durable call at which it noticed its cancellation
 * (`runtime.cancelSaga`), and from every call after it. It need not catch it: the runtime
 * compensates the finished steps and ends the saga `cancelled` whatever the code does next.
 */
export class SagaCancelledError extends MeridianError {
  readonly reason: string;
  constructor(sagaId: string, reason: string) {
    super('SAGA_CANCELLED', `Saga '${sagaId}' was cancelled: ${reason}`, { details: { sagaId, reason } });
    this.reason = reason;
  }
}

/**
 * A request for a saga that has ended (cancelling a saga that completed, compensated or failed):
 * nothing can change it any more. `details.status` names how it ended, when known.
 */
export class SagaEndedError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('SAGA_ENDED', message, options);
  }
}

/**
 * This runtime lost its ownership: another runtime claimed the same partitions (a newer epoch)
 * and the store refused our write. The runtime stops writing; its work continues on the owner.
 */
export class FencedError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('FENCED', message, options);
  }
}
