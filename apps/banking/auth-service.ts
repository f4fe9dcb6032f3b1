// The bank's auth service, in process: it verifies a mobile session token. Its latency and
// failure rate can be changed at run time, to replay the incident where an overloaded auth
// service took balances and the mobile app down with it.
import { type Random, RetryableError, type Timers, ValidationError } from '../../src/index.ts';

export interface AuthSettings {
  /** How long each verification takes, in [0, 60_000] ms. */
  latencyMs: number;
  /** The share of verifications that fail (as if auth answered 503), in [0, 1]. */
  failureRate: number;
}

export class AuthUnavailableError extends RetryableError {
  constructor() {
    super('The auth service failed to verify the session');
  }
}

export function checkAuthSettings(settings: Partial<AuthSettings>, current: AuthSettings): AuthSettings {
  const latencyMs = settings.latencyMs ?? current.latencyMs;
  const failureRate = settings.failureRate ?? current.failureRate;
  if (!Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 60_000) {
    throw new ValidationError(`'latencyMs' must be an integer in [0, 60000]: current value is ${latencyMs}`);
  }
  if (typeof failureRate !== 'number' || !(failureRate >= 0 && failureRate <= 1)) {
    throw new ValidationError(`'failureRate' must be in [0, 1]: current value is ${failureRate}`);
  }
  return { latencyMs, failureRate };
}

export class AuthService {
  readonly #timers: Timers;
  readonly #random: Random;
  #settings: AuthSettings;
  #inFlight = 0;
  #calls = 0;

  constructor(options: { timers: Timers; random: Random; settings?: Partial<AuthSettings> }) {
    this.#timers = options.timers;
    this.#random = options.random;
    this.#settings = checkAuthSettings(options.settings ?? {}, { latencyMs: 2, failureRate: 0 });
  }

  get settings(): AuthSettings {
    return { ...this.#settings };
  }

  set(settings: Partial<AuthSettings>): AuthSettings {
    this.#settings = checkAuthSettings(settings, this.#settings);
    return this.settings;
  }

  /** Verifications under way: the queue a slow auth builds up in its callers. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Verifications ever started: what tells a caller's policies kept load off auth. */
  get calls(): number {
    return this.#calls;
  }

  /** Resolves with the customer the token belongs to; the signal abandons the wait. */
  async verify(token: string, signal?: AbortSignal): Promise<string> {
    const { latencyMs, failureRate } = this.#settings;
    this.#calls++;
    this.#inFlight++;
    try {
      if (latencyMs > 0) await this.#sleep(latencyMs, signal);
      if (this.#random.next() < failureRate) throw new AuthUnavailableError();
      // Demo tokens are `token-<customer>`: a real service would check a signature here.
      if (!token.startsWith('token-')) throw new ValidationError('The session token is not valid');
      return token.slice('token-'.length);
    } finally {
      this.#inFlight--;
    }
  }

  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        timer.cancel();
        reject(signal?.reason);
      };
      const timer = this.#timers.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
