/**
 * What an app's route sees: Meridian's own request and reply types, not Fastify's (which stays
 * inside the gateway), and a route schema declared once. Schemas written with TypeBox
 * (`Type.Object(...)`) are JSON Schema: the same object validates the request, documents it in
 * `/openapi.json`, and types the handler's `request.params`, `query`, `body` and `headers`
 * (`Static<typeof schema>`), so the three cannot drift apart.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Static, TSchema } from '@sinclair/typebox';

/** A JSON schema written by hand (no static type: its part of the request is `unknown`). */
export type JsonSchema = Readonly<Record<string, unknown>>;

/** A route's schemas by request part, its responses by status, and its OpenAPI fields. */
export interface RouteSchema {
  params?: TSchema | JsonSchema;
  querystring?: TSchema | JsonSchema;
  body?: TSchema | JsonSchema;
  headers?: TSchema | JsonSchema;
  /** By status (`200`, `'4xx'`): shapes the answer (fields not listed are not sent) and documents it. */
  response?: Record<string | number, TSchema | JsonSchema>;
  summary?: string;
  description?: string;
  tags?: string[];
  operationId?: string;
  deprecated?: boolean;
  /** Left out of `/openapi.json`. */
  hide?: boolean;
  /** Set by the gateway for protected routes (the security schemes of `/openapi.json`). */
  security?: ReadonlyArray<Record<string, string[]>>;
}

/** The static type of one part of a request: its TypeBox schema's, else `unknown`. */
export type RequestPartOf<
  S extends RouteSchema,
  K extends 'params' | 'querystring' | 'body' | 'headers',
> = S[K] extends TSchema ? Static<S[K]> : unknown;

/** A request as a route's handler sees it, typed by the route's schema. */
export interface GatewayRequest<S extends RouteSchema = RouteSchema> {
  /** Path parameters, validated (`/orders/:orderId` → `{ orderId }`). */
  readonly params: RequestPartOf<S, 'params'>;
  /** The query string, validated (numbers coerced: a query string is text). */
  readonly query: RequestPartOf<S, 'querystring'>;
  /** The body, validated strictly (unknown fields refused, no coercion). */
  readonly body: RequestPartOf<S, 'body'>;
  readonly headers: IncomingHttpHeaders & RequestPartOf<S, 'headers'>;
  readonly method: string;
  /** The request target as sent (path and query). */
  readonly url: string;
  /** The gateway's id of this request. */
  readonly id: string;
  /** The client's address. */
  readonly ip: string;
}

/** How a handler answers when returning a value (a 200 JSON answer) is not enough. */
export interface GatewayReply {
  /** The status code so far (200 unless set). */
  readonly statusCode: number;
  /** Sets the status. */
  code(status: number): GatewayReply;
  header(name: string, value: string | number): GatewayReply;
  /** Sends the answer (serialised by the route's response schema for its status). */
  send(body?: unknown): GatewayReply;
  /**
   * Takes the connection over for a long-lived answer (a stream of Server-Sent Events): the
   * gateway then sends nothing, and the handler writes `raw` itself.
   */
  hijack(): GatewayReply;
  /** Node's response, for a hijacked answer (and to learn that the client hung up: its 'close'). */
  readonly raw: ServerResponse;
}

/** A route's handler: returns the answer's body (200), or answers through `reply`. */
export type GatewayHandler<S extends RouteSchema = RouteSchema> = (
  request: GatewayRequest<S>,
  reply: GatewayReply,
) => unknown;
