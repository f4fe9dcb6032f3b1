import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Span, SpanKind, startSpan, withSpan } from '../telemetry/index.ts';

/** A request's server span, found again by the hooks that name it after its route. */
const requestSpans = new WeakMap<IncomingMessage, Span>();

/**
 * Starts a request's OpenTelemetry server span (the parent is the request's own `traceparent`
 * header, when it has a valid one) and runs `next` with it active, so that everything the route's
 * handler does (an entity command, a saga start) is a child of it and the records it writes carry
 * its trace. Called from the gateway's first onRequest hook with Fastify's `done`: the rest of the
 * request's hooks and its handler run inside that call. The span ends when the response does.
 * With tracing off the span is the API's no-op and `next` runs at once.
 */
export function traceRequest(request: IncomingMessage, response: ServerResponse, next: () => void): void {
  const header = request.headers.traceparent;
  const span = startSpan(`${request.method ?? 'GET'}`, {
    parent: typeof header === 'string' ? header : null,
    root: true,
    kind: SpanKind.SERVER,
    attributes: {
      'http.request.method': request.method ?? 'GET',
      'url.path': (request.url ?? '/').split('?')[0]?.slice(0, 256) ?? '/',
      'url.scheme': 'http',
    },
  });
  if (!span.isRecording()) {
    next();
    return;
  }
  requestSpans.set(request, span);
  response.once('close', () => {
    span.setAttribute('http.response.status_code', response.statusCode);
    if (response.statusCode >= 500) span.setStatus({ code: 2 });
    span.end();
  });
  withSpan(span, next);
}

/** Names a request's span after the route that answered it (`POST /orders`), as the conventions ask. */
export function nameRequestSpan(request: IncomingMessage, method: string, route: string | undefined): void {
  const span = requestSpans.get(request);
  if (span === undefined) return;
  if (route !== undefined) {
    span.setAttribute('http.route', route);
    span.updateName(`${method} ${route}`);
  }
}
