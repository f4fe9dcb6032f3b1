/**
 * The history of a verification run: every operation's invocation and completion, in the order
 * they happened, as Jepsen records them. An operation completes `ok` (it took effect and the
 * caller was told so), `fail` (it certainly did not take effect) or `info` (nobody knows: the
 * process died under it, the connection dropped, it timed out). Checkers read the history; the
 * sequence numbers (`invokedAt`, `completedAt`) order events without relying on clock resolution.
 */

export type OperationStatus = 'ok' | 'fail' | 'info';

/** What a workload asks for: a kind (`order`, `write`, `read`), the key it touches, its input. */
export interface OperationRequest {
  readonly kind: string;
  /** The key the operation is about: per-key linearizability groups by it. */
  readonly key?: string;
  readonly input?: unknown;
}

export interface Operation extends OperationRequest {
  readonly id: number;
  /** The client (worker) that invoked it; one operation at a time per worker. */
  readonly worker: number;
  /** The history sequence number of the invocation. */
  readonly invokedAt: number;
  /** Milliseconds since the run started (real time, or virtual time in simulation). */
  readonly invokedAtMs: number;
  /** Set when this is the same request delivered again (a duplicated delivery). */
  readonly duplicateOf?: number;
  completedAt?: number;
  completedAtMs?: number;
  status?: OperationStatus;
  output?: unknown;
  error?: string;
}

/** One line of the history: what happened, to which operation, when. */
export interface HistoryEvent {
  readonly sequence: number;
  readonly type: 'invoke' | OperationStatus;
  readonly operation: number;
  readonly worker: number;
  readonly kind: string;
  readonly key?: string;
  readonly value?: unknown;
  readonly timeMs: number;
}

/** What an operation's completion says. */
export interface Completion {
  readonly status: OperationStatus;
  readonly output?: unknown;
  readonly error?: string;
}

/** Errors are bounded in the history so a huge response cannot blow the report up. */
const maxErrorChars = 300;

export class History {
  readonly #operations: Operation[] = [];
  readonly #events: HistoryEvent[] = [];
  readonly #nowMs: () => number;

  /** `nowMs` reads the run's clock: milliseconds since it started. */
  constructor(nowMs: () => number) {
    this.#nowMs = nowMs;
  }

  invoke(worker: number, request: OperationRequest, duplicateOf?: number): Operation {
    const timeMs = this.#nowMs();
    const operation: Operation = {
      id: this.#operations.length,
      worker,
      kind: request.kind,
      ...(request.key === undefined ? {} : { key: request.key }),
      ...(request.input === undefined ? {} : { input: request.input }),
      invokedAt: this.#events.length,
      invokedAtMs: timeMs,
      ...(duplicateOf === undefined ? {} : { duplicateOf }),
    };
    this.#operations.push(operation);
    this.#push('invoke', operation, request.input, timeMs);
    return operation;
  }

  complete(operation: Operation, completion: Completion): void {
    if (operation.status !== undefined) return;
    const timeMs = this.#nowMs();
    operation.status = completion.status;
    operation.completedAt = this.#events.length;
    operation.completedAtMs = timeMs;
    if (completion.output !== undefined) operation.output = completion.output;
    if (completion.error !== undefined) operation.error = completion.error.slice(0, maxErrorChars);
    this.#push(completion.status, operation, completion.output ?? operation.error, timeMs);
  }

  /** Marks every operation still open as indeterminate: the run ended (or crashed) under them. */
  closeOpen(reason: string): void {
    for (const operation of this.#operations) {
      if (operation.status === undefined) this.complete(operation, { status: 'info', error: reason });
    }
  }

  get operations(): readonly Operation[] {
    return this.#operations;
  }

  get events(): readonly HistoryEvent[] {
    return this.#events;
  }

  /** The history as JSON lines, one event a line: what `--json` and the run directory keep. */
  toJsonLines(): string {
    return this.#events.map((event) => JSON.stringify(event)).join('\n') + (this.#events.length ? '\n' : '');
  }

  #push(type: HistoryEvent['type'], operation: Operation, value: unknown, timeMs: number): void {
    this.#events.push({
      sequence: this.#events.length,
      type,
      operation: operation.id,
      worker: operation.worker,
      kind: operation.kind,
      ...(operation.key === undefined ? {} : { key: operation.key }),
      ...(value === undefined ? {} : { value }),
      timeMs,
    });
  }
}

/** Counts of a history's operations by status and by kind, for the report. */
export interface OperationCounts {
  readonly total: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  readonly duplicates: number;
  readonly byKind: Readonly<Record<string, number>>;
}

export function countOperations(operations: readonly Operation[]): OperationCounts {
  const byKind: Record<string, number> = {};
  let ok = 0;
  let fail = 0;
  let info = 0;
  let duplicates = 0;
  for (const operation of operations) {
    byKind[operation.kind] = (byKind[operation.kind] ?? 0) + 1;
    if (operation.status === 'ok') ok += 1;
    else if (operation.status === 'fail') fail += 1;
    else info += 1;
    if (operation.duplicateOf !== undefined) duplicates += 1;
  }
  return { total: operations.length, ok, fail, info, duplicates, byKind };
}
