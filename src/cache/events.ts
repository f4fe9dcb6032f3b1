/** What a cache reports, as disposable subscriptions (see `Cache.onHit` and its siblings). */
export type Tier = 'l1' | 'l2';

export interface HitEvent {
  readonly cache: string;
  readonly key: string;
  readonly tier: Tier;
}

export interface MissEvent {
  readonly cache: string;
  readonly key: string;
}

export interface StaleServedEvent {
  readonly cache: string;
  readonly key: string;
  /** `revalidating`: within staleWhileRevalidateMs; `load-failed`: within staleIfErrorMs. */
  readonly reason: 'revalidating' | 'load-failed';
  /** How long past its freshness the value was. */
  readonly staleForMs: number;
}

export interface LoadFailedEvent {
  readonly cache: string;
  readonly key: string;
  readonly error: Error;
  /** Whether a stale value was served instead of the error. */
  readonly staleServed: boolean;
}

export interface EvictEvent {
  readonly cache: string;
  readonly key: string;
  /** `capacity`: maxEntries or maxBytes reached; `too-large`: the entry alone exceeds maxBytes. */
  readonly reason: 'capacity' | 'too-large';
}

/** Counters and sizes, read by `/metrics` through the gateway's `exposePolicies`. */
export interface CacheSnapshot {
  readonly name: string;
  readonly entries: number;
  readonly bytes: number;
  readonly hitsL1: number;
  readonly hitsL2: number;
  readonly misses: number;
  readonly loads: number;
  readonly loadFailures: number;
  readonly staleServed: number;
  readonly evictions: number;
  /** Writes refused because the tier held a newer version (a late load, an older value). */
  readonly writesRejected: number;
  readonly invalidationsReceived: number;
  readonly repairs: number;
  readonly redisErrors: number;
  readonly pendingInvalidations: number;
}
