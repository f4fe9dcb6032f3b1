/**
 * Single flight: concurrent misses of one key share one load, so a stampede on a hot key that
 * just expired reaches the loader once. A flight is marked stale when its key is written or
 * invalidated while it runs (here or, through the invalidation bus, on another node); a stale
 * flight still answers the callers that joined it, but never stores its result, so a load that
 * read old data cannot put it back after the invalidation.
 */
export interface Flight<V> {
  promise: Promise<V>;
  stale: boolean;
  /**
   * Work the flight still does after answering its callers (storing the value in Redis): the
   * key stays in flight until it ends, so readers meanwhile join the answered flight instead of
   * loading again.
   */
  storing?: Promise<unknown>;
  /** Once answered and storing: until when the answer is fresh (later readers start a new load). */
  freshUntilMs?: number;
}

export class Flights<V> {
  readonly #byKey = new Map<string, Flight<V>>();

  get size(): number {
    return this.#byKey.size;
  }

  get(key: string): Flight<V> | undefined {
    return this.#byKey.get(key);
  }

  /** Starts `run` as the key's flight; it leaves the registry when it settles. */
  start(key: string, run: (flight: Flight<V>) => Promise<V>): Flight<V> {
    const flight: Flight<V> = { promise: undefined as unknown as Promise<V>, stale: false };
    this.#byKey.set(key, flight);
    const leave = () => {
      if (this.#byKey.get(key) === flight) this.#byKey.delete(key);
    };
    flight.promise = run(flight);
    flight.promise.then(
      () => (flight.storing === undefined ? leave() : flight.storing.finally(leave)),
      leave,
    );
    return flight;
  }

  /** Marks the key's flight stale; callers from now on start a fresh load instead of joining it. */
  invalidate(key: string): void {
    const flight = this.#byKey.get(key);
    if (flight === undefined) return;
    flight.stale = true;
    this.#byKey.delete(key);
  }

  invalidateAll(): void {
    for (const flight of this.#byKey.values()) flight.stale = true;
    this.#byKey.clear();
  }
}
