import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommerceServer, type CommerceServerOptions, startCommerceServer } from './server.ts';

/** A commerce server on a fresh temporary directory, tuned for tests: fast retries, short timeouts. */
export interface TestCommerce {
  readonly server: CommerceServer;
  readonly url: string;
  readonly directory: string;
  /** An operator's credential as request headers (for the audit helpers of invariants.ts). */
  readonly operatorHeaders: Record<string, string>;
  /** A bearer token for a principal, signed with the server's development secret. */
  token(subject: string, role: 'operator' | 'customer'): Promise<string>;
  /**
   * Sends a request as an operator, unless `headers` carry their own `authorization` or
   * `x-api-key` (an empty `authorization` sends none: an anonymous request).
   */
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<TestResponse>;
  /** Waits until every given order has ended (on the sagas' own promises; bounded). */
  settle(orderIds: Iterable<string>, timeoutMs?: number): Promise<void>;
  /** Closes the server and deletes the directory. */
  close(): Promise<void>;
}

export interface TestResponse {
  readonly status: number;
  readonly headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: test responses are inspected field by field
  readonly body: any;
}

export async function openTestCommerce(
  options: Omit<CommerceServerOptions, 'dataDir'> = {},
): Promise<TestCommerce> {
  const directory = mkdtempSync(join(tmpdir(), 'meridian-commerce-'));
  const server = await startCommerceServer({
    paymentRetryAfterSeconds: 0,
    ...options,
    dataDir: directory,
    app: {
      orders: {
        chargeRetry: { maxAttempts: 4, initialDelayMs: 1, maxDelayMs: 10 },
        paymentCallTimeoutMs: 250,
      },
      ...options.app,
      runtime: { compensationRetry: { initialDelayMs: 1, maxDelayMs: 20 }, ...options.app?.runtime },
    },
  });
  const token = (subject: string, role: 'operator' | 'customer') => server.devAuth!.issue(subject, role);
  const operator =
    server.devAuth === undefined ? undefined : `Bearer ${await token('test-operator', 'operator')}`;
  return {
    server,
    url: server.url,
    directory,
    token,
    operatorHeaders: operator === undefined ? {} : { authorization: operator },
    async request(method, path, body, given = {}) {
      const headers = { ...given };
      if (headers.authorization === '') delete headers.authorization;
      else if (
        headers.authorization === undefined &&
        headers['x-api-key'] === undefined &&
        operator !== undefined
      ) {
        headers.authorization = operator;
      }
      const response = await fetch(`${server.url}${path}`, {
        method,
        signal: AbortSignal.timeout(20_000),
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text.length === 0 ? null : JSON.parse(text);
      } catch {
        // Not JSON (metrics): keep the text.
      }
      return { status: response.status, headers: response.headers, body: parsed };
    },
    async settle(orderIds, timeoutMs = 20_000) {
      const runtime = server.app.runtime;
      const ended = Promise.all(
        [...orderIds].map((id) =>
          runtime
            .handle(id)
            .result()
            .catch(() => undefined),
        ),
      );
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`orders did not end within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([ended, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
