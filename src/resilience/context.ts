/**
 * The context a policy hands to the operation it runs: a cancellation signal and the attempt
 * number. The signal is created lazily, on first read: most operations never look at it, and an
 * AbortController plus a listener on the parent signal per call is most of what makes other
 * policy libraries slow. Cancelling a context whose signal nobody has read only sets a flag; a
 * later read returns a signal that is already aborted.
 */
import { assert } from '../assert.ts';

export interface PolicyContext {
  /**
   * Fires when the caller, a timeout or a hedge race cancels this call. Operations that can
   * stop early should pass it on (to fetch, to a database driver) or check it.
   */
  readonly signal: AbortSignal;
  /** 1-based attempt number from the nearest enclosing retry or hedge; 1 outside them. */
  readonly attempt: number;
}

const neverAborted: AbortSignal = new AbortController().signal;

export class CallContext implements PolicyContext {
  readonly attempt: number;
  readonly #parent: CallContext | undefined;
  readonly #external: AbortSignal | undefined;
  /** Only cancellable contexts (made by timeout and hedge) own an abort state of their own. */
  readonly #cancellable: boolean;
  #aborted = false;
  #reason: unknown;
  #controller: AbortController | undefined;
  #parentSignal: AbortSignal | undefined;
  #onParentAbort: (() => void) | undefined;

  private constructor(
    parent: CallContext | undefined,
    external: AbortSignal | undefined,
    cancellable: boolean,
    attempt: number,
  ) {
    this.#parent = parent;
    this.#external = external;
    this.#cancellable = cancellable;
    this.attempt = attempt;
  }

  /** The context of a call made without a signal: shared, since nothing can cancel it. */
  static readonly root: CallContext = new CallContext(undefined, undefined, false, 1);

  /** The context of a call made with the caller's signal. */
  static fromSignal(signal: AbortSignal | undefined): CallContext {
    return signal === undefined ? CallContext.root : new CallContext(undefined, signal, false, 1);
  }

  /** A context that can be cancelled on its own, and is cancelled when this one is. */
  child(attempt = this.attempt): CallContext {
    return new CallContext(this, undefined, true, attempt);
  }

  /** The same cancellation as this context, seen as another attempt. */
  withAttempt(attempt: number): CallContext {
    return attempt === this.attempt ? this : new CallContext(this, undefined, false, attempt);
  }

  get signal(): AbortSignal {
    if (!this.#cancellable) return this.#parent?.signal ?? this.#external ?? neverAborted;
    if (this.#controller === undefined) this.#controller = this.#materialize();
    return this.#controller.signal;
  }

  /** Whether this context was cancelled, found without creating any signal. */
  get aborted(): boolean {
    if (this.#aborted) return true;
    if (this.#parent !== undefined) return this.#parent.aborted;
    return this.#external?.aborted ?? false;
  }

  /** Why this context was cancelled; undefined while it is not. */
  get reason(): unknown {
    if (this.#aborted) return this.#reason;
    if (this.#parent !== undefined) return this.#parent.reason;
    return this.#external?.aborted ? this.#external.reason : undefined;
  }

  /** Cancels this context and its descendants. Only cancellable contexts can be cancelled. */
  abort(reason: unknown): void {
    assert(this.#cancellable, 'only a child context can be aborted');
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.release();
    this.#controller?.abort(reason);
  }

  /**
   * Stops listening to the parent's signal. The policy that made this child calls it when the
   * call is over, so a long-lived caller signal does not collect one listener per call.
   */
  release(): void {
    if (this.#onParentAbort === undefined) return;
    this.#parentSignal?.removeEventListener('abort', this.#onParentAbort);
    this.#onParentAbort = undefined;
  }

  #materialize(): AbortController {
    const controller = new AbortController();
    if (this.#aborted) {
      controller.abort(this.#reason);
      return controller;
    }
    const parentSignal = this.#parent?.signal;
    if (parentSignal === undefined || parentSignal === neverAborted) return controller;
    if (parentSignal.aborted) {
      this.#aborted = true;
      this.#reason = parentSignal.reason;
      controller.abort(parentSignal.reason);
      return controller;
    }
    const onParentAbort = () => this.abort(parentSignal.reason);
    parentSignal.addEventListener('abort', onParentAbort, { once: true });
    this.#parentSignal = parentSignal;
    this.#onParentAbort = onParentAbort;
    return controller;
  }
}
