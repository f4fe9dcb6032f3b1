import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { FastifyServerOptions } from 'fastify';
import { type Span, SpanKind, startSpan, withSpan } from '../telemetry/index.ts';

/** A request's server span, found again by the hooks that name it after its route. */
const requestSpans = new WeakMap<IncomingMessage, Span>();

/**
 * Fastify's server, made so that each request runs inside an OpenTelemetry server span (the
 * parent is the request's own `traceparent` header, when it has a valid one): everything the
 * route's handler does (an entity command, a saga start) is a child of it, and the records it
 * writes carry its trace. The span ends when the response does. With tracing off the span is
 * the API's no-op and this costs a WeakMap entry per request.
 *
 * Fastify applies its timeouts itself only to a server it makes; this one gets the same.
 */
export function tracedServerFactory(
  handler: (request: IncomingMessage, response: ServerResponse) => void,
  options: FastifyServerOptions,
): Server {
  const server = createServer((request, response) => {
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
    if (!span.isRecording()) return handler(request, response);
    requestSpans.set(request, span);
    response.once('close', () => {
      span.setAttribute('http.response.status_code', response.statusCode);
      if (response.statusCode >= 500) span.setStatus({ code: 2 });
      span.end();
    });
    withSpan(span, () => handler(request, response));
  });
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;
  if (options.requestTimeout !== undefined) server.requestTimeout = options.requestTimeout;
  if (options.connectionTimeout !== undefined) server.setTimeout(options.connectionTimeout);
  return server;
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
