import { hash } from 'node:crypto';
import type { IdempotencyStore, Store } from '../store/types.ts';

/** The request header that carries the key (draft-ietf-httpapi-idempotency-key-header). */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
/** Set on a response that is a replay of the one stored for the key, not a fresh execution. */
export const IDEMPOTENT_REPLAYED_HEADER = 'idempotent-replayed';
/** Longest key accepted, in characters (without the quotes of the structured-field form). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** Visible ASCII except the double quote and the backslash: safe in logs, URLs and SQL text. */
const KEY_CHARACTERS = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

export type ParsedKey =
  | { readonly ok: true; readonly key: string }
  | { readonly ok: false; readonly reason: 'missing' | 'invalid'; readonly detail: string };

/**
 * Reads the Idempotency-Key header. The draft defines it as a Structured Field string
 * (`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`); many clients send the bare
 * token instead, so both are accepted and name the same key. A key is 1 to 255 characters of
 * visible ASCII other than `"` and `\`; anything else is refused rather than normalised, so two
 * different header values can never collide on one key.
 */
export function parseIdempotencyKey(header: string | string[] | undefined): ParsedKey {
  if (header === undefined) {
    return { ok: false, reason: 'missing', detail: `This route requires an 'Idempotency-Key' header.` };
  }
  if (Array.isArray(header)) {
    return { ok: false, reason: 'invalid', detail: `The 'Idempotency-Key' header must be sent once.` };
  }
  const trimmed = header.trim();
  const key =
    trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"') ? trimmed.slice(1, -1) : trimmed;
  if (key.length === 0) {
    return { ok: false, reason: 'missing', detail: `The 'Idempotency-Key' header is empty.` };
  }
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    return {
      ok: false,
      reason: 'invalid',
      detail: `'Idempotency-Key' must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters: current length is ${key.length}.`,
    };
  }
  if (!KEY_CHARACTERS.test(key)) {
    return {
      ok: false,
      reason: 'invalid',
      detail: `'Idempotency-Key' may contain only visible ASCII characters other than '"' and '\\'.`,
    };
  }
  return { ok: true, key };
}

/**
 * The request's fingerprint: SHA-256 over the method, the request target (path and query, as
 * sent) and the raw body bytes. Raw bytes, not a re-serialised parse: two bodies that parse
 * alike but differ in bytes are different requests, and no parser quirk (duplicate members,
 * number formatting, key order) can make two different requests look the same. The target is
 * included because the scope is the route pattern: the same key and body sent to
 * `/accounts/1/deposits` and `/accounts/2/deposits` are different requests.
 */
export function requestFingerprint(method: string, target: string, rawBody: Uint8Array | undefined): string {
  const head = `${method.toUpperCase()}\n${target}\n`;
  // One-shot: a Hash object holds native memory until a full collection (docs/deployment.md).
  return hash('sha256', rawBody === undefined ? head : Buffer.concat([Buffer.from(head), rawBody]), 'hex');
}

/**
 * Headers never stored with a response: they describe one connection or one transmission
 * (length, encoding, date), or must not be replayed to another caller (cookies).
 */
const UNSTORED_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'date',
  'set-cookie',
  'vary',
  IDEMPOTENT_REPLAYED_HEADER,
]);

/** The headers of a response worth replaying with it (content type, location, app headers). */
export function storableHeaders(headers: Record<string, unknown>): Record<string, string> {
  const stored: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (UNSTORED_HEADERS.has(lower) || value === undefined) continue;
    stored[lower] = Array.isArray(value) ? value.map(String).join(', ') : String(value);
  }
  return stored;
}

/** A reply payload as text, when it can be stored; undefined for streams. */
export function storableBody(payload: unknown): string | undefined {
  if (payload === null || payload === undefined) return '';
  if (typeof payload === 'string') return payload;
  if (payload instanceof Uint8Array) return Buffer.from(payload).toString('utf8');
  return undefined;
}

/**
 * Adapts a Store to the IdempotencyStore the gateway uses: each call runs in its own short
 * transaction, so a reservation is committed (and visible to every other node) before the
 * handler's work starts, and the stored response is committed before the reply is sent.
 */
export function idempotencyStoreOf(store: Store): IdempotencyStore {
  return {
    reserve: (request) => store.transaction((tx) => tx.idempotency.reserve(request)),
    complete: (claim, response) => store.transaction((tx) => tx.idempotency.complete(claim, response)),
    release: (claim) => store.transaction((tx) => tx.idempotency.release(claim)),
    expire: (nowMs) => store.transaction((tx) => tx.idempotency.expire(nowMs)),
  };
}
