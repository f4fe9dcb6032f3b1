/**
 * The outcomes of the last `size` calls, for a count-based circuit breaker. A ring of one byte
 * per call with running totals, so recording is O(1) and never allocates.
 */
import { assert } from '../assert.ts';

const PRESENT = 1;
const FAILED = 2;
const SLOW = 4;

export class CountWindow {
  readonly size: number;
  readonly #outcomes: Uint8Array;
  #next = 0;
  #calls = 0;
  #failures = 0;
  #slowCalls = 0;

  constructor(size: number) {
    assert(Number.isInteger(size) && size >= 1, 'a count window holds at least one call');
    this.size = size;
    this.#outcomes = new Uint8Array(size);
  }

  get calls(): number {
    return this.#calls;
  }

  get failures(): number {
    return this.#failures;
  }

  get slowCalls(): number {
    return this.#slowCalls;
  }

  record(failed: boolean, slow: boolean): void {
    const evicted = this.#outcomes[this.#next] ?? 0;
    if (evicted & PRESENT) this.#calls--;
    if (evicted & FAILED) this.#failures--;
    if (evicted & SLOW) this.#slowCalls--;
    this.#outcomes[this.#next] = PRESENT | (failed ? FAILED : 0) | (slow ? SLOW : 0);
    this.#calls++;
    if (failed) this.#failures++;
    if (slow) this.#slowCalls++;
    this.#next = (this.#next + 1) % this.size;
    assert(
      this.#calls <= this.size && this.#failures <= this.#calls && this.#slowCalls <= this.#calls,
      'window totals stay consistent',
    );
  }

  reset(): void {
    this.#outcomes.fill(0);
    this.#next = 0;
    this.#calls = 0;
    this.#failures = 0;
    this.#slowCalls = 0;
  }
}
