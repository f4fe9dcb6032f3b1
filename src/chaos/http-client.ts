/**
 * What a spec's operations use to talk to the app over HTTP: one JSON request, and how its answer
 * becomes a completion. A 2xx the operation expects is `ok`; a 4xx says the app refused the
 * request before doing anything, and a refused connection that it never reached it (`fail`); anything else — a 5xx, a dropped connection, a
 * timeout — leaves the outcome unknown, so it throws and the history records it as indeterminate.
 */

import type { Completion } from './history.ts';
import type { AppHandle } from './spec.ts';

export interface JsonAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** The status `requestJson` reports when the connection was refused: the request never reached the app. */
export const connectionRefused = 0;

/** Answers bigger than this are cut (a report never needs more). */
const maxBodyChars = 64 * 1024;

export async function requestJson(
  app: AppHandle,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<JsonAnswer> {
  let response: Response;
  try {
    response = await fetch(`${app.url}${path}`, {
      method,
      headers: {
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...options.headers,
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (error) {
    // Refused: nothing listens (the app is down), so the request certainly did nothing.
    if ((error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') {
      return { status: connectionRefused, body: 'connection refused' };
    }
    throw error;
  }
  const text = (await response.text()).slice(0, maxBodyChars);
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: keep the text.
  }
  return { status: response.status, body };
}

/**
 * A completion from an answer: `ok` with `output(body)` for an expected status, `fail` for a
 * 4xx, and a thrown error (indeterminate) for anything else.
 */
export function completionOf(
  answer: JsonAnswer,
  expected: readonly number[],
  output: (body: unknown) => unknown,
): Completion {
  if (expected.includes(answer.status)) return { status: 'ok', output: output(answer.body) };
  if (answer.status === connectionRefused || (answer.status >= 400 && answer.status < 500)) {
    return { status: 'fail', error: `${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}` };
  }
  throw new Error(`answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)}`);
}
