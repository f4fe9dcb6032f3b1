/**
 * A cached entry and the windows it lives through. Every tier stores the same shape, so an entry
 * read from Redis is promoted into the in-process tier unchanged (its windows capped by L1's own
 * TTL), and every tier compares the same version stamps.
 *
 * Windows (wall-clock ms, so copies on different nodes agree):
 * - fresh until `freshUntilMs`: served as is;
 * - then, until `revalidateUntilMs`: served stale while one background load refreshes it;
 * - then, until `errorUntilMs`: served only when a load fails (serve-stale-on-error grace).
 */
export interface Entry<V> {
  readonly value: V;
  /** The version stamp: a source version (an entity's) or the fence epoch the load started at. */
  readonly version: number;
  /** Whether the value is a cached absence (negative caching). */
  readonly negative: boolean;
  readonly freshUntilMs: number;
  readonly revalidateUntilMs: number;
  readonly errorUntilMs: number;
  /** What the entry counts against `maxBytes`. */
  readonly bytes: number;
}

export interface Windows {
  readonly ttlMs: number;
  readonly staleWhileRevalidateMs: number;
  readonly staleIfErrorMs: number;
}

export function makeEntry<V>(
  value: V,
  version: number,
  negative: boolean,
  bytes: number,
  nowMs: number,
  windows: Windows,
): Entry<V> {
  const freshUntilMs = nowMs + windows.ttlMs;
  const revalidateUntilMs = freshUntilMs + windows.staleWhileRevalidateMs;
  return {
    value,
    version,
    negative,
    bytes,
    freshUntilMs,
    revalidateUntilMs,
    errorUntilMs: Math.max(revalidateUntilMs, freshUntilMs + windows.staleIfErrorMs),
  };
}

/**
 * The entry as L1 keeps it: fresh no longer than `freshCapMs`, then stale-while-revalidate for at
 * most the configured window after that; the stale-on-error grace is kept as it was.
 */
export function capEntry<V>(entry: Entry<V>, freshCapMs: number, staleWhileRevalidateMs: number): Entry<V> {
  if (entry.freshUntilMs <= freshCapMs) return entry;
  const revalidateUntilMs = Math.min(entry.revalidateUntilMs, freshCapMs + staleWhileRevalidateMs);
  return {
    ...entry,
    freshUntilMs: freshCapMs,
    revalidateUntilMs,
    errorUntilMs: Math.max(entry.errorUntilMs, revalidateUntilMs),
  };
}
