// The HTTP gateway's public surface.
export { type Static, type TSchema, Type } from '@sinclair/typebox';
export type { RouteBacklog, RouteRateLimit } from './admission.ts';
export type { ApiKeyRecord, AuthOptions, JwtOptions, Principal, Role, RouteAccess } from './auth.ts';
export { API_KEY_HEADER, generateApiKey, issueToken } from './auth.ts';
export type { DevelopmentAuth } from './dev-auth.ts';
export { AUTH_SECRET_FILE, developmentAuth } from './dev-auth.ts';
export type {
  Gateway,
  GatewayOptions,
  GatewayRoute,
  RequestIdempotency,
  RouteMethod,
} from './gateway.ts';
export { createGateway, idempotencyOf, principalOf } from './gateway.ts';
export {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENT_REPLAYED_HEADER,
  idempotencyStoreOf,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseIdempotencyKey,
  requestFingerprint,
} from './idempotency.ts';
export { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
export type { IdempotencyOutcome } from './metrics.ts';
export type { ExposablePolicy } from './policy-exposure.ts';
export { PREFER_HEADER, PREFERENCE_APPLIED_HEADER, preferredWaitSeconds } from './prefer.ts';
export type { HttpProblemInit, InvalidField, ProblemDetails, RequestPart } from './problem.ts';
export {
  HttpProblem,
  isHttpProblem,
  PROBLEM_CONTENT_TYPE,
  problemFromError,
  statusProblem,
} from './problem.ts';
export type { CheckReport, CheckResult, ReadinessCheck, ReadinessReport } from './readiness.ts';
export type {
  GatewayHandler,
  GatewayReply,
  GatewayRequest,
  JsonSchema,
  RequestPartOf,
  RouteSchema,
} from './route-types.ts';
export type { ExposableRuntime } from './runtime-metrics.ts';
