/**
 * Deadlines for many calls with one timer. A timeout or hedge policy gives every call the same
 * delay, so deadlines fall due in the order calls started: a FIFO list is a priority queue here,
 * adding and removing are O(1), and a single timer armed for the head serves every call. This
 * replaces a setTimeout/clearTimeout pair per call, which costs more than the rest of a policy.
 *
 * The timer is not cancelled when the list empties (that would bring the per-call timer churn
 * back); it fires once more, finds nothing due and stops. It is unref'd, as Node's own
 * `AbortSignal.timeout` timer is: a deadline guards work that keeps the process alive by itself
 * (a socket, a query), and must not hold an otherwise finished process open for a whole delay.
 */
import type { Clock, TimerHandle, Timers } from '../time.ts';

/** One pending deadline. Subclasses say what happens when it passes. */
export abstract class DeadlineEntry {
  dueMs = 0;
  previous: DeadlineEntry | undefined = undefined;
  next: DeadlineEntry | undefined = undefined;
  queued = false;

  /** Called once, from the timer, when the deadline passes before the entry was removed. */
  abstract expire(): void;
}

export class DeadlineQueue {
  readonly delayMs: number;
  readonly #clock: Clock;
  readonly #timers: Timers;
  #head: DeadlineEntry | undefined;
  #tail: DeadlineEntry | undefined;
  #size = 0;
  #timer: TimerHandle | undefined;
  #firing = false;

  constructor(delayMs: number, clock: Clock, timers: Timers) {
    this.delayMs = delayMs;
    this.#clock = clock;
    this.#timers = timers;
  }

  /** How many deadlines are pending. */
  get size(): number {
    return this.#size;
  }

  /** Starts `entry`'s deadline: it expires `delayMs` from now unless removed first. */
  add(entry: DeadlineEntry): void {
    const tail = this.#tail;
    let dueMs = this.#clock.monotonicNow() + this.delayMs;
    // Keep the list sorted even if a clock steps backwards: a deadline may then fire late, never early.
    if (tail !== undefined && tail.dueMs > dueMs) dueMs = tail.dueMs;
    entry.dueMs = dueMs;
    entry.previous = tail;
    entry.next = undefined;
    entry.queued = true;
    if (tail === undefined) this.#head = entry;
    else tail.next = entry;
    this.#tail = entry;
    this.#size++;
    // While firing, an expiring entry may add another (a hedge's next attempt); #fire arms the
    // timer for the head afterwards, which may be due sooner than this new entry.
    if (this.#timer === undefined && !this.#firing) this.#arm(this.delayMs);
  }

  /** Removes `entry` if it is still pending; its `expire` will not be called. */
  remove(entry: DeadlineEntry): void {
    if (!entry.queued) return;
    entry.queued = false;
    const { previous, next } = entry;
    if (previous === undefined) this.#head = next;
    else previous.next = next;
    if (next === undefined) this.#tail = previous;
    else next.previous = previous;
    entry.previous = undefined;
    entry.next = undefined;
    this.#size--;
  }

  #arm(delayMs: number): void {
    this.#timer = this.#timers.setTimeout(() => this.#fire(), delayMs);
    this.#timer.unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    const nowMs = this.#clock.monotonicNow();
    this.#firing = true;
    for (let head = this.#head; head !== undefined && head.dueMs <= nowMs; head = this.#head) {
      this.remove(head);
      try {
        head.expire();
      } catch (error) {
        // One broken entry must not strand the deadlines behind it; the error still surfaces.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    this.#firing = false;
    const head = this.#head;
    // A timer may fire a fraction of a millisecond before the monotonic clock says the head is
    // due; re-arm for at least 1 ms rather than spinning.
    if (head !== undefined && this.#timer === undefined)
      this.#arm(Math.max(1, Math.ceil(head.dueMs - nowMs)));
  }
}
