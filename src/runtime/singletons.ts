import { AlreadyExistsError, ValidationError } from '../errors.ts';
import type { StoreTransaction } from '../store/types.ts';
import type { Effects } from './effects.ts';
import { requireRuntimeName } from './options.ts';

/** What a singleton's run gets: its stop signal, fenced transactions, and waits. */
export interface SingletonContext {
  /** Aborted when this node stops leading (it lost the leader partition, or it stops). */
  readonly signal: AbortSignal;
  /**
   * Runs `work` in a transaction that commits only while this node is the leader: on the
   * cluster shape it is fenced by the leader partition's epoch, so a former leader that did not
   * notice it lost leadership (paused, partitioned away) cannot write.
   */
  transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /** Waits `delayMs` on the runtime's timers; returns early when `signal` aborts. */
  wait(delayMs: number): Promise<void>;
}

/**
 * Work that must run on one node of the cluster at a time (cleanup, retention, anything not
 * partitioned). It runs on the leader: the owner of work partition 0 (on the embedded shape, the
 * one runtime). `run` should loop until `ctx.signal` aborts; when it returns or throws while
 * still leading, it is started again after a pause.
 */
export interface SingletonDefinition {
  readonly name: string;
  run(ctx: SingletonContext): Promise<void>;
}

/** The leader partition: its owner runs the singletons, fenced by its epoch. */
export const leaderPartition = 0;
/** After a singleton's run ended while still leading, the pause before it starts again. */
const restartAfterMs = 1000;

interface Running {
  readonly controller: AbortController;
  readonly done: Promise<void>;
}

/** Runs the singletons while this node leads, and stops them when it no longer does. */
export class Singletons {
  readonly #definitions = new Map<string, SingletonDefinition>();
  readonly #effects: Effects;
  readonly #report: (problem: { message: string; error: unknown }) => void;
  #running: Running[] = [];

  constructor(effects: Effects, report: (problem: { message: string; error: unknown }) => void) {
    this.#effects = effects;
    this.#report = report;
  }

  add(definition: SingletonDefinition): void {
    if (typeof definition?.run !== 'function') {
      throw new ValidationError(`A singleton needs a 'name' and a 'run(ctx)' function`);
    }
    const name = requireRuntimeName('A singleton name', definition.name);
    if (this.#definitions.has(name))
      throw new AlreadyExistsError(`A singleton named '${name}' is registered`);
    this.#definitions.set(name, definition);
  }

  get leading(): boolean {
    return this.#running.length > 0;
  }

  /** This node became the leader: start every singleton. */
  lead(): void {
    if (this.leading || this.#definitions.size === 0) return;
    this.#running = [...this.#definitions.values()].map((definition) => {
      const controller = new AbortController();
      return { controller, done: this.#loop(definition, controller.signal) };
    });
  }

  /** This node is no longer the leader (or stops): stop every singleton and wait for them. */
  async abdicate(): Promise<void> {
    const running = this.#running;
    this.#running = [];
    for (const { controller } of running) controller.abort();
    await Promise.all(running.map(({ done }) => done));
  }

  async #loop(definition: SingletonDefinition, signal: AbortSignal): Promise<void> {
    const ctx: SingletonContext = {
      signal,
      transaction: (work) =>
        this.#effects.committer.submit((scope) => {
          scope.fence(leaderPartition);
          return work(scope.tx);
        }),
      wait: (delayMs) => this.#effects.wait(delayMs, signal),
    };
    while (!signal.aborted) {
      try {
        await definition.run(ctx);
      } catch (error) {
        if (!signal.aborted)
          this.#report({ message: `singleton '${definition.name}' failed; restarting it`, error });
      }
      if (!signal.aborted) await ctx.wait(restartAfterMs);
    }
  }
}

/** How long the housekeeping singleton keeps replies of routed requests and inbox entries. */
export interface HousekeepingOptions {
  /**
   * Replies older than this are deleted (a caller waits far less), but not those of sagas that
   * have not ended. @default 3600000 (1 h)
   */
  replyRetentionMs: number;
  /**
   * Inbox entries older than this are deleted: a record re-sent or redelivered later than this
   * would apply again, so keep it above the longest a relay or consumer can lag. @default 604800000 (7 days, Kafka's default retention)
   */
  inboxRetentionMs: number;
  /** How often it runs. @default 60000 */
  intervalMs: number;
}

/** Rows one housekeeping transaction deletes at most. */
const housekeepingBatch = 500;

/** The runtime's own singleton: deletes old replies and inbox entries, on the leader only. */
export function housekeeping(options: HousekeepingOptions, now: () => number): SingletonDefinition {
  return {
    name: 'meridian.housekeeping',
    async run(ctx) {
      while (!ctx.signal.aborted) {
        const nowMs = now();
        // Bounded batches of both, one transaction each, until neither fills its batch: a
        // backlog never becomes one long transaction holding the writer.
        let full = true;
        while (full && !ctx.signal.aborted) {
          full = await ctx.transaction(async (tx) => {
            const replies = await tx.replies.prune(nowMs - options.replyRetentionMs, housekeepingBatch);
            const inbox = await tx.inbox.prune(nowMs - options.inboxRetentionMs, housekeepingBatch);
            return replies === housekeepingBatch || inbox === housekeepingBatch;
          });
        }
        await ctx.wait(options.intervalMs);
      }
    },
  };
}
