import { NotFoundError, RetryableError, TerminalError, ValidationError } from '../../src/index.ts';
import type { PaymentGatewaySettings } from './payment-gateway.ts';
import type { ChargeStatus } from './payment-gateway-ledger.ts';

export interface ChargeResult {
  chargeId: string;
  orderId: string;
  amount: number;
  status: ChargeStatus;
  refundId?: string;
}

export interface RefundResult {
  refundId: string;
  chargeId: string;
  orderId: string;
  amount: number;
  status: 'refunded';
}

export interface CallOptions {
  /** The caller's cancellation (a saga being shut down, say). */
  signal?: AbortSignal;
  /** Overrides the client's timeout for this call (ms). */
  timeoutMs?: number;
}

export interface PaymentGatewayClientOptions {
  /** The gateway's base URL: `http://127.0.0.1:7071`. */
  baseUrl: string;
  /** How long one call may take before it is abandoned (ms). Range [1, 600000]. @default 2000 */
  timeoutMs?: number;
}

function checkTimeout(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 600_000) {
    throw new ValidationError(`'${name}' must be an integer in [1, 600000]: current value is ${value}`);
  }
  return value;
}

/**
 * A typed client for the simulated payment gateway. Its errors say what retrying can do:
 * - RetryableError: 5xx, a timeout or a dropped connection. The outcome is unknown (the charge
 *   may have happened); retry with the SAME idempotency key, which cannot charge twice.
 * - TerminalError: the key was used for another request (422). Never retried.
 * - NotFoundError: refund of a charge that does not exist.
 * - ValidationError: the gateway refused the request as malformed (400).
 * A call aborted through the caller's `signal` rejects with the signal's reason.
 */
export class PaymentGatewayClient {
  readonly #baseUrl: string;
  readonly #timeoutMs: number;

  constructor(options: PaymentGatewayClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new ValidationError(
        `'baseUrl' must be an absolute URL: current value is '${String(options.baseUrl)}'`,
      );
    }
    this.#baseUrl = url.toString().replace(/\/$/, '');
    this.#timeoutMs = checkTimeout('timeoutMs', options.timeoutMs ?? 2000);
  }

  charge(
    request: { orderId: string; amount: number; idempotencyKey: string },
    options: CallOptions = {},
  ): Promise<ChargeResult> {
    return this.#call<ChargeResult>('POST', '/charges', request, options);
  }

  refund(
    request: { chargeId: string; idempotencyKey: string },
    options: CallOptions = {},
  ): Promise<RefundResult> {
    return this.#call<RefundResult>('POST', '/refunds', request, options);
  }

  /** What the gateway recorded, optionally for one order. */
  charges(orderId?: string, options: CallOptions = {}): Promise<ChargeResult[]> {
    const query = orderId === undefined ? '' : `?orderId=${encodeURIComponent(orderId)}`;
    return this.#call<ChargeResult[]>('GET', `/charges${query}`, undefined, options);
  }

  settings(options: CallOptions = {}): Promise<PaymentGatewaySettings> {
    return this.#call<PaymentGatewaySettings>('GET', '/settings', undefined, options);
  }

  updateSettings(
    change: Partial<PaymentGatewaySettings>,
    options: CallOptions = {},
  ): Promise<PaymentGatewaySettings> {
    return this.#call<PaymentGatewaySettings>('PUT', '/settings', change, options);
  }

  async #call<T>(method: string, path: string, body: unknown, options: CallOptions): Promise<T> {
    const timeoutMs = checkTimeout('timeoutMs', options.timeoutMs ?? this.#timeoutMs);
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
    const what = `${method} ${path}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.#baseUrl}${path}`, {
        method,
        signal,
        ...(body === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      });
      text = await response.text();
    } catch (error) {
      if (options.signal?.aborted === true) throw options.signal.reason;
      if (timeout.aborted) {
        throw new RetryableError(
          `Payment gateway ${what} timed out after ${timeoutMs} ms; the outcome is unknown`,
          {
            cause: error,
            details: { reason: 'timeout', timeoutMs },
          },
        );
      }
      throw new RetryableError(`Payment gateway ${what} failed before answering; the outcome is unknown`, {
        cause: error,
        details: { reason: 'connection' },
      });
    }
    if (response.ok) return JSON.parse(text) as T;
    const message = `Payment gateway ${what} answered ${response.status}: ${describe(text)}`;
    const details = { status: response.status };
    if (response.status >= 500) {
      const retryAfterSeconds = Number(response.headers.get('retry-after'));
      throw new RetryableError(message, {
        details,
        ...(Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0
          ? { retryAfterMs: retryAfterSeconds * 1000 }
          : {}),
      });
    }
    if (response.status === 404) throw new NotFoundError(message, { details });
    if (response.status === 400) throw new ValidationError(message, { details });
    throw new TerminalError(message, { details });
  }
}

function describe(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // Not JSON: show the text itself.
  }
  return text.slice(0, 200);
}
