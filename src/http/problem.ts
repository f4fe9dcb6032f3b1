import { isMeridianError, MeridianError, RetryableError } from '../errors.ts';
import { isStorageFault } from '../store/write-health.ts';

/** RFC 9457's media type for problem details. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * An RFC 9457 problem details object. `type` identifies the kind of problem (a URI reference;
 * `about:blank` when the status code says it all), `title` is the same for every occurrence of
 * that type, `detail` explains this occurrence. Extension members carry machine-readable facts.
 */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

/** Where in the request an invalid value was found. */
export type RequestPart = 'body' | 'query' | 'path' | 'header';

/** One invalid field of a request, listed in a validation problem's `errors` member. */
export interface InvalidField {
  in: RequestPart;
  /** JSON pointer to the field inside its part (`/items/0/qty`; a header's name for headers). */
  pointer: string;
  /** The JSON-schema keyword that failed (`required`, `minimum`, `type`, `pattern`, ...). */
  rule: string;
  /** What the rule demands, in words. */
  message: string;
  /** The rule's parameters (the limit, the expected type, the missing property...). */
  params?: Record<string, unknown>;
  /** The offending value, when there is one and it is small enough to echo. */
  value?: unknown;
}

/** The problem types Meridian's gateway itself produces, by slug (appended to the type base). */
export type GatewayProblemType =
  | 'validation-failed'
  | 'malformed-body'
  | 'idempotency-key-missing'
  | 'idempotency-key-invalid'
  | 'idempotency-key-reused'
  | 'idempotency-request-in-flight'
  | 'unprocessable'
  | 'conflict'
  | 'rate-limited'
  | 'load-shed';

export interface HttpProblemInit {
  status: number;
  title: string;
  /** A full URI reference, or omitted for `about:blank` (the status code says it all). */
  type?: string;
  detail?: string;
  /** Extension members copied into the problem object. */
  extensions?: Record<string, unknown>;
  /** Response headers to send with it (`Retry-After`, `Allow`...). */
  headers?: Record<string, string>;
  cause?: unknown;
}

/**
 * Thrown by a route handler to answer with a specific problem. Anything else a handler throws
 * is mapped by `problemFromError`: Meridian's typed errors to their natural status, unknown
 * errors to a 500 that hides the internals.
 */
export class HttpProblem extends MeridianError {
  readonly status: number;
  readonly title: string;
  readonly type: string;
  readonly extensions: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(init: HttpProblemInit) {
    super('HTTP_PROBLEM', init.detail ?? init.title, init.cause === undefined ? {} : { cause: init.cause });
    if (!Number.isInteger(init.status) || init.status < 400 || init.status > 599) {
      throw new RangeError(`'status' must be an integer in [400, 599]: current value is ${init.status}`);
    }
    this.status = init.status;
    this.title = init.title;
    this.type = init.type ?? 'about:blank';
    this.extensions = init.extensions ?? {};
    this.headers = init.headers ?? {};
  }
}

export function isHttpProblem(value: unknown): value is HttpProblem {
  return isMeridianError(value) && value.code === 'HTTP_PROBLEM';
}

const statusTitles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  421: 'Misdirected Request',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** The standard reason phrase for a status, for `about:blank` problems whose title must be it. */
export function statusTitle(status: number): string {
  return statusTitles[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}

/** A plain problem whose type is `about:blank`: its title is the status's reason phrase. */
export function statusProblem(
  status: number,
  detail?: string,
  extras: { headers?: Record<string, string>; extensions?: Record<string, unknown> } = {},
): HttpProblem {
  return new HttpProblem({
    status,
    title: statusTitle(status),
    ...(detail === undefined ? {} : { detail }),
    ...extras,
  });
}

export interface ProblemResponse {
  problem: ProblemDetails;
  headers: Record<string, string>;
}

/** The longest `detail` a problem carries on the wire. */
export const MAX_DETAIL_CHARS = 2048;

/** Turns an HttpProblem into the JSON object sent on the wire. */
export function renderProblem(problem: HttpProblem, instance: string | undefined): ProblemResponse {
  const body: ProblemDetails = {
    ...problem.extensions,
    type: problem.type,
    title: problem.title,
    status: problem.status,
  };
  if (problem.message !== problem.title) {
    // Details may quote the request (a key, a name): bounded, so no answer grows with it.
    body.detail =
      problem.message.length <= MAX_DETAIL_CHARS
        ? problem.message
        : `${problem.message.slice(0, MAX_DETAIL_CHARS)}…`;
  }
  if (instance !== undefined) body.instance = instance;
  return { problem: body, headers: problem.headers };
}

/**
 * Maps anything a handler threw to a problem. Meridian's errors keep their meaning (not found →
 * 404, conflict → 409, bad input → 400, unavailable → 503 with Retry-After); an unknown error
 * becomes a 500 whose detail does not leak internals (the error is logged instead).
 */
export function problemFromError(error: unknown, typeBase: string): HttpProblem {
  if (isHttpProblem(error)) return error;
  if (isStorageFault(error)) {
    // Not the request's fault and not a bug: the disk is full, read-only or failing. Nothing was
    // written; the same request succeeds once the store takes writes again.
    return new HttpProblem({
      status: 503,
      title: 'The store cannot take writes now',
      type: `${typeBase}store-unavailable`,
      detail:
        'The server cannot write to its store (disk full, read-only or I/O error); nothing was changed. Retry later.',
      headers: { 'retry-after': '5' },
    });
  }
  if (!isMeridianError(error)) return statusProblem(500, 'The server failed to handle the request.');
  const details = Object.keys(error.details).length === 0 ? {} : { extensions: { details: error.details } };
  switch (error.code) {
    case 'INVALID_ARGUMENT':
      return new HttpProblem({
        status: 400,
        title: 'The request is invalid',
        type: `${typeBase}validation-failed`,
        detail: error.message,
        ...details,
      });
    case 'NOT_FOUND':
      return statusProblem(404, error.message, details);
    case 'ALREADY_EXISTS':
    case 'CONFLICT':
    case 'SAGA_ENDED':
      return new HttpProblem({
        status: 409,
        title: 'The request conflicts with the current state',
        type: `${typeBase}conflict`,
        detail: error.message,
        ...details,
      });
    case 'TERMINAL':
      return new HttpProblem({
        status: 422,
        title: 'The request cannot be processed',
        type: `${typeBase}unprocessable`,
        detail: error.message,
        ...details,
      });
    case 'CLOSED':
    case 'UNAVAILABLE':
    case 'RETRYABLE': {
      const retryAfterMs = error instanceof RetryableError ? error.retryAfterMs : undefined;
      const headers: Record<string, string> = {};
      if (retryAfterMs !== undefined)
        headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
      return statusProblem(503, error.message, { headers, ...details });
    }
    case 'TIMEOUT':
      return statusProblem(504, error.message, details);
    default:
      return statusProblem(500, 'The server failed to handle the request.');
  }
}
