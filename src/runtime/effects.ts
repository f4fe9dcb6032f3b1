import { ClosedError, ConflictError, isMeridianError } from '../errors.ts';
import type { ProducerRecord } from '../log/types.ts';
import { producerSpan, traceparentOf } from '../telemetry/index.ts';
import type { Clock, Random, Timers } from '../time.ts';
import { encodeJson, toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import type { EmitRecord } from './definitions.ts';
import { FencedError } from './errors.ts';
import type { GroupCommitter, SubmitOptions } from './group-commit.ts';
import { requireRuntimeName } from './options.ts';
import { childTraceparent, traceparentHeader } from './trace.ts';

/** The longest error message the runtime keeps (journal, saga reason, dead-letter header). */
export const maxMessageLength = 4096;

/** `text`, cut to `maxMessageLength` characters with a marker when it was longer. */
export function truncateMessage(text: string): string {
  return text.length <= maxMessageLength ? text : `${text.slice(0, maxMessageLength - 15)}... (truncated)`;
}

/** Commit failures that retrying cannot cure: someone else owns the work now, or we stopped. */
export function isOwnershipLoss(error: unknown): boolean {
  return (
    error instanceof FencedError ||
    error instanceof ConflictError ||
    error instanceof ClosedError ||
    (isMeridianError(error) &&
      (error.code === 'CONFLICT' ||
        error.code === 'FENCED' ||
        error.code === 'CLOSED' ||
        error.code === 'NOT_OWNED'))
  );
}

export interface EffectsPorts {
  readonly committer: GroupCommitter;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
}

/** Attempts of one unit before `commit` gives up on an I/O failure. */
const commitAttempts = 5;

/**
 * What saga executions and subscription runners do to the world, written once: records with
 * Meridian's headers, abortable waits on the Timers port, and units committed through the group
 * commit with the retry-on-I/O / give-up-on-ownership-loss rule.
 */
export class Effects {
  readonly committer: GroupCommitter;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;

  constructor(ports: EffectsPorts) {
    this.committer = ports.committer;
    this.clock = ports.clock;
    this.timers = ports.timers;
    this.random = ports.random;
  }

  /**
   * The record user code emits to `topic`: its value as JSON, its own headers, a child of
   * `traceparent`, and `meridianHeaders` (the emitting saga or entity) over them.
   */
  record(
    topic: string,
    emitted: EmitRecord,
    traceparent: string | undefined,
    meridianHeaders: Readonly<Record<string, string>> = {},
  ): ProducerRecord {
    requireRuntimeName('An emit topic', topic);
    const value = toJson(`The value emitted to '${topic}'`, emitted?.value);
    const produce = producerSpan(topic, traceparent, 1);
    produce.end();
    return {
      key: emitted.key ?? null,
      value: encodeJson(value),
      headers: {
        ...emitted.headers,
        [traceparentHeader]: traceparentOf(produce, () => childTraceparent(traceparent, this.random)),
        ...meridianHeaders,
      },
      timestamp: this.clock.now(),
    };
  }

  /** Waits `delayMs` on the Timers port; returns early when `signal` aborts. */
  wait(delayMs: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const onAbort = () => {
        timer.cancel();
        resolve();
      };
      const timer = this.timers.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, delayMs);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Submits a unit. A lost ownership (conflict, fence, closed) gives up at once; other failures
   * (I/O) are tried again a few times, since the unit rolled back and is safe to repeat. On
   * giving up (or when `signal` aborts) returns what `giveUp` returns for the last error.
   */
  async commit<T>(
    work: (scope: UnitScope) => Promise<T>,
    signal: AbortSignal,
    giveUp: (error: unknown) => Promise<T>,
    options?: SubmitOptions,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.committer.submit(work, options);
      } catch (error) {
        if (isOwnershipLoss(error) || attempt >= commitAttempts || signal.aborted) return giveUp(error);
        await this.wait(Math.min(1000, 10 * 2 ** attempt), signal);
      }
    }
  }
}
