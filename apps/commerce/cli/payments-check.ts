// What `commerce node` checks beyond a cluster node's PostgreSQL and Kafka: the payment gateway
// every node charges through answers, and is a Meridian payment gateway.
import { DependencyError } from '../../../src/cli/index.ts';

/** The payment gateway answers GET /settings as the simulated gateway does. */
export async function checkPayments(url: string, timeoutMs: number, apiKey?: string): Promise<void> {
  const start = `start one with 'commerce payments --port 7090' and pass its URL with --payments (MERIDIAN_PAYMENTS_URL)`;
  let response: Response;
  try {
    response = await fetch(new URL('settings', url.endsWith('/') ? url : `${url}/`), {
      signal: AbortSignal.timeout(timeoutMs),
      ...(apiKey === undefined ? {} : { headers: { authorization: `Bearer ${apiKey}` } }),
    });
  } catch (error) {
    const reason =
      (error as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : ((error as { cause?: Error }).cause?.message ?? (error as Error).message);
    throw new DependencyError(
      'payments',
      `The payment gateway at ${url} is unreachable (${reason}): ${start}`,
      {
        cause: error,
      },
    );
  }
  if (response.status === 401) {
    throw new DependencyError(
      'payments',
      `The payment gateway at ${url} refused this node's credential: set MERIDIAN_PAYMENTS_API_KEY to the key 'commerce payments' printed`,
      { misconfigured: true },
    );
  }
  const body = (await response.json().catch(() => undefined)) as { failureRate?: unknown } | undefined;
  if (!response.ok || typeof body?.failureRate !== 'number') {
    throw new DependencyError(
      'payments',
      `${url} answered GET /settings with ${response.status} and is not a Meridian payment gateway: ${start}`,
      { misconfigured: true },
    );
  }
}
