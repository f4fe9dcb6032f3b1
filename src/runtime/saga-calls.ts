import { assert } from '../assert.ts';
import type { JournalEntry, JournalEntryKind } from '../store/types.ts';
import type { Yield } from './group-commit.ts';
import { journalNames } from './saga-journal.ts';

/**
 * The order of a saga's durable calls, so that calls may run concurrently (`Promise.all` over
 * steps, sends, sleeps, signals) and a replay still gives every call the same outcome.
 *
 * - Each call gets an index when the code makes it: the calls' order, which is deterministic as
 *   long as the code between them is (see below).
 * - Entries are appended in the order they commit (the journal stays dense), and their outcomes
 *   are handed to the code in journal order, one at a time, with a full turn of the event loop
 *   between two hand-overs. What the code does after one outcome (the calls it makes, in which
 *   order) is therefore settled before the next outcome arrives — live and on replay alike.
 * - On replay a call asks for its next entry by kind and name: it claims the first unclaimed
 *   journaled entry with that kind and name. When other calls were in flight as an entry was
 *   appended, the entry carries its call's index (`name#index`) and only that call can claim
 *   it, so two concurrent sends of the same command never swap their replies.
 * - A call that finds no entry runs for real, but only once every journaled entry has been
 *   handed over, so live outcomes always come after replayed ones. An entry nobody claims while
 *   the code is waiting is non-determinism (the code asked for something else, or nothing).
 * - A cancellation (`$cancelled`) is journaled by the code's call that noticed it, always tagged
 *   with its index, and answers whatever that call asks next: handing it over rejects that call
 *   and every call waiting for the replay to end (they would find it cancelled once it ended,
 *   and the runtime's compensations, which end it, wait for them).
 */

/** One durable call of the saga's code. */
export interface CallRef {
  readonly index: number;
  /** What the code asked for, for messages: `step 'charge'`. */
  readonly label: string;
  /** A sleep or signal wait: it acts on nothing, so it may be left behind when the code ends. */
  readonly waits: boolean;
  /** A call of the saga's code, which a cancellation stops (the runtime's own calls run on). */
  readonly cancellable: boolean;
}

interface Claim {
  readonly call: CallRef;
  readonly resolve: (entry: JournalEntry) => void;
  readonly reject: (error: Error) => void;
}

/** What a call asks the journal for: its next entry has one of these kinds and names. */
export type Wanted = ReadonlyArray<readonly [JournalEntryKind, string]>;

interface LiveWaiter {
  /** The entry the call asked for and did not find; absent for `afterReplay`. */
  readonly asked?: { readonly kind: JournalEntryKind; readonly name: string };
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** Turns of the event loop an unclaimed replayed entry waits for its call before it is a mismatch. */
const stallTurns = 3;

/** Splits `name#index` into the name and its call index; a name without one has none. */
export function untag(name: string): { name: string; call: number | undefined } {
  const hash = name.lastIndexOf('#');
  if (hash === -1) return { name, call: undefined };
  const call = Number(name.slice(hash + 1));
  return Number.isInteger(call) ? { name: name.slice(0, hash), call } : { name, call: undefined };
}

export interface CallOrderOptions {
  /** A turn of the event loop (the runtime's `yield`). */
  readonly yield: Yield;
  /**
   * Nobody claimed the journaled entry `entry` while the code waited: returns the error every
   * waiting call is then rejected with. `asked` is a call that found no entry of its own, if any.
   */
  readonly mismatch: (entry: JournalEntry, asked: { kind: JournalEntryKind; name: string } | null) => Error;
  /**
   * Nobody claimed `entry`: a chance to settle a call that waits on something the journal does
   * not record when it ended (a replayed sleep). True when it did, so the entry is waited for again.
   */
  readonly stalled: () => boolean;
  /** The cancellation `entry` is handed over: returns the error its call is rejected with. */
  readonly cancelled: (entry: JournalEntry) => Error;
}

export class CallOrder {
  readonly #journal: JournalEntry[];
  /** Entries journaled before this run: the replay. */
  readonly #replayEnd: number;
  readonly #options: CallOrderOptions;
  /** Entries [0, delivered) were handed to their calls. */
  #delivered: number;
  readonly #claims = new Map<number, Claim>();
  readonly #live: LiveWaiter[] = [];
  readonly #pending = new Set<CallRef>();
  #nextIndex = 0;
  #pumping = false;
  #failure: Error | null = null;
  /** Appends are made one at a time, so each knows its sequence. */
  #appending: Promise<void> = Promise.resolve();

  /** `journal` is shared: appended entries are pushed to it here. */
  constructor(journal: JournalEntry[], firstUndelivered: number, options: CallOrderOptions) {
    this.#journal = journal;
    this.#replayEnd = journal.length;
    this.#delivered = firstUndelivered;
    this.#options = options;
  }

  /** True while journaled entries remain to be handed over. */
  get replaying(): boolean {
    return this.#delivered < this.#replayEnd;
  }

  /** The first entry not handed over yet, if any. */
  get undelivered(): JournalEntry | undefined {
    return this.#journal[this.#delivered];
  }

  /** Calls in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  /** What the earliest call still in flight that is not a wait asked for, if any. */
  get runningLabel(): string | undefined {
    for (const call of this.#pending) if (!call.waits) return call.label;
    return undefined;
  }

  /** The journal's next sequence (its length). */
  get length(): number {
    return this.#journal.length;
  }

  begin(label: string, waits = false, cancellable = false): CallRef {
    const call = { index: this.#nextIndex++, label, waits, cancellable };
    this.#pending.add(call);
    return call;
  }

  end(call: CallRef): void {
    this.#pending.delete(call);
  }

  /** Rejects every waiting call with `error`, and every later ask. */
  fail(error: Error): void {
    if (this.#failure !== null) return;
    this.#failure = error;
    for (const claim of this.#claims.values()) claim.reject(error);
    this.#claims.clear();
    for (const waiter of this.#live.splice(0)) waiter.reject(error);
  }

  /**
   * The journaled entry of `call` with this kind and name, handed over in journal order; or
   * undefined, once the replay is over, when the journal has none (the call runs for real).
   */
  async next(call: CallRef, kind: JournalEntryKind, name: string): Promise<JournalEntry | undefined> {
    return this.nextOf(call, [[kind, name]]);
  }

  /** `next` for an entry that may be any of `wanted` (the last is what messages name). */
  async nextOf(call: CallRef, wanted: Wanted): Promise<JournalEntry | undefined> {
    if (this.#failure !== null) throw this.#failure;
    const sequence = this.#find(call, wanted, true);
    if (sequence !== undefined) {
      const delivered = this.#claim(sequence, call);
      void this.#pump();
      return delivered;
    }
    if (!this.replaying) return undefined;
    const [kind, name] = wanted[wanted.length - 1]!;
    await this.#waitForReplayEnd({ kind, name });
    return undefined;
  }

  /** True when a journaled entry not handed over yet is one `call` may claim. */
  journaled(call: CallRef, kind: JournalEntryKind, name: string): boolean {
    return this.#find(call, [[kind, name]], false) !== undefined;
  }

  /** Resolves once every journaled entry has been handed over (at once when they have). */
  afterReplay(): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return this.replaying ? this.#waitForReplayEnd(undefined) : Promise.resolve();
  }

  #find(call: CallRef, wanted: Wanted, unclaimed: boolean): number | undefined {
    for (let sequence = this.#delivered; sequence < this.#replayEnd; sequence++) {
      if (unclaimed && this.#claims.has(sequence)) continue;
      const entry = this.#journal[sequence]!;
      const tagged = untag(entry.name);
      if (tagged.call !== undefined && tagged.call !== call.index) continue;
      if (wanted.some(([kind, name]) => entry.kind === kind && tagged.name === name)) return sequence;
      // Tagged with this call's index (checked above): the answer to whatever it asks.
      if (tagged.name === journalNames.cancelled && call.cancellable) return sequence;
    }
    return undefined;
  }

  #waitForReplayEnd(asked: LiveWaiter['asked']): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#live.push({ ...(asked === undefined ? {} : { asked }), resolve, reject });
      void this.#pump();
    });
  }

  /**
   * Commits `work` as the journal's next entry of `call` (one at a time per saga, so each knows
   * its sequence), then waits for its turn to be handed over. `work` receives the sequence and the
   * name to write (tagged with the call's index when other calls are in flight) and returns the
   * entry it appended with whatever else it returns; an `undefined` entry appended nothing.
   */
  async append<T>(
    call: CallRef,
    name: string,
    work: (sequence: number, name: string) => Promise<{ entry: JournalEntry | undefined; value: T }>,
  ): Promise<T> {
    const previous = this.#appending;
    let release!: () => void;
    this.#appending = new Promise<void>((resolve) => (release = resolve));
    await previous;
    let committed: { entry: JournalEntry | undefined; value: T };
    try {
      if (this.#failure !== null) throw this.#failure;
      const tagged = this.#pending.size > 1 ? `${name}#${call.index}` : name;
      committed = await work(this.#journal.length, tagged);
    } finally {
      release();
    }
    if (committed.entry === undefined) return committed.value;
    assert(committed.entry.sequence === this.#journal.length, 'journal entries are appended densely');
    this.#journal.push(committed.entry);
    const delivered = this.#claim(committed.entry.sequence, call);
    void this.#pump();
    await delivered;
    return committed.value;
  }

  #claim(sequence: number, call: CallRef): Promise<JournalEntry> {
    return new Promise<JournalEntry>((resolve, reject) => {
      this.#claims.set(sequence, { call, resolve, reject });
    });
  }

  /** Hands a cancellation over: its call, and every call waiting for the replay's end, reject. */
  #cancel(claim: Claim, entry: JournalEntry): void {
    const error = this.#options.cancelled(entry);
    claim.reject(error);
    for (const waiter of this.#live.splice(0)) waiter.reject(error);
  }

  /** Hands entries over in journal order, a turn of the event loop apart. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      let idleTurns = 0;
      while (this.#failure === null && this.#delivered < this.#journal.length) {
        const claim = this.#claims.get(this.#delivered);
        if (claim === undefined) {
          if (idleTurns < stallTurns) {
            idleTurns++;
            await this.#options.yield();
            continue;
          }
          if (this.#options.stalled()) {
            idleTurns = 0;
            continue;
          }
          const asked = this.#live.find((waiter) => waiter.asked !== undefined)?.asked;
          const entry = this.#journal[this.#delivered]!;
          this.fail(this.#options.mismatch(entry, asked ?? null));
          return;
        }
        idleTurns = 0;
        const entry = this.#journal[this.#delivered]!;
        this.#claims.delete(this.#delivered);
        this.#delivered++;
        if (untag(entry.name).name === journalNames.cancelled) this.#cancel(claim, entry);
        else claim.resolve({ ...entry, name: untag(entry.name).name });
        if (this.#delivered < this.#journal.length || this.#live.length > 0) await this.#options.yield();
        idleTurns = 0;
      }
      if (!this.replaying) for (const waiter of this.#live.splice(0)) waiter.resolve();
    } finally {
      this.#pumping = false;
    }
  }
}
