import { Agent, request as httpRequest } from 'node:http';
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
  /** Keep-alive connections to the gateway at most; more calls wait for one. Range [1, 1024]. @default 64 */
  maxConnections?: number;
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
  readonly #agent: Agent;

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
    const maxConnections = options.maxConnections ?? 64;
    if (!Number.isInteger(maxConnections) || maxConnections < 1 || maxConnections > 1024) {
      throw new ValidationError(
        `'maxConnections' must be an integer in [1, 1024]: current value is ${maxConnections}`,
      );
    }
    if (url.protocol !== 'http:') {
      throw new ValidationError(`'baseUrl' must be an http URL: current value is '${options.baseUrl}'`);
    }
    this.#agent = new Agent({ keepAlive: true, maxSockets: maxConnections, maxFreeSockets: maxConnections });
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

  /** Closes the kept-alive connections. Calls made afterwards open new ones. */
  close(): void {
    this.#agent.destroy();
  }

  async #call<T>(method: string, path: string, body: unknown, options: CallOptions): Promise<T> {
    const timeoutMs = checkTimeout('timeoutMs', options.timeoutMs ?? this.#timeoutMs);
    const what = `${method} ${path}`;
    const outcome = await this.#send(method, path, body, timeoutMs, options.signal);
    if (outcome.kind === 'aborted') throw options.signal?.reason;
    if (outcome.kind === 'timeout') {
      throw new RetryableError(
        `Payment gateway ${what} timed out after ${timeoutMs} ms; the outcome is unknown`,
        {
          details: { reason: 'timeout', timeoutMs },
        },
      );
    }
    if (outcome.kind === 'connection') {
      throw new RetryableError(`Payment gateway ${what} failed before answering; the outcome is unknown`, {
        cause: outcome.error,
        details: { reason: 'connection' },
      });
    }
    const { status, text, retryAfter } = outcome;
    if (status >= 200 && status < 300) return JSON.parse(text) as T;
    const message = `Payment gateway ${what} answered ${status}: ${describe(text)}`;
    const details = { status };
    if (status >= 500) {
      const retryAfterSeconds = Number(retryAfter);
      throw new RetryableError(message, {
        details,
        ...(Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0
          ? { retryAfterMs: retryAfterSeconds * 1000 }
          : {}),
      });
    }
    if (status === 404) throw new NotFoundError(message, { details });
    if (status === 400) throw new ValidationError(message, { details });
    throw new TerminalError(message, { details });
  }

  /**
   * One request over the kept-alive connections. node:http rather than fetch: fetch costs about
   * three times the CPU per call and opened a connection per concurrent call, which made the
   * payment call the commerce app's bottleneck.
   */
  #send(
    method: string,
    path: string,
    body: unknown,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      if (signal?.aborted === true) return resolve({ kind: 'aborted' });
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      let settled = false;
      const finish = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const request = httpRequest(
        `${this.#baseUrl}${path}`,
        {
          method,
          agent: this.#agent,
          headers:
            payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': String(payload.length) },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', (error) => finish({ kind: 'connection', error }));
          response.on('end', () => {
            const retryAfter = response.headers['retry-after'];
            finish({
              kind: 'answered',
              status: response.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
              retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
            });
          });
        },
      );
      const onAbort = () => {
        finish({ kind: 'aborted' });
        request.destroy();
      };
      // A bound on the whole call, not on socket inactivity: a gateway trickling bytes still times out.
      const timer = setTimeout(() => {
        finish({ kind: 'timeout' });
        request.destroy();
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      request.on('error', (error) => finish({ kind: 'connection', error }));
      request.end(payload);
    });
  }
}

type Outcome =
  | {
      readonly kind: 'answered';
      readonly status: number;
      readonly text: string;
      readonly retryAfter: string | undefined;
    }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'connection'; readonly error: Error };

function describe(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // Not JSON: show the text itself.
  }
  return text.slice(0, 200);
}
