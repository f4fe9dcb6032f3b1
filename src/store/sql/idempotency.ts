import { ConflictError, ValidationError } from '../../errors.ts';
import { decideReservation, type FoundReservation, nextReservedAt, nextToken } from '../idempotency-rule.ts';
import {
  requireId,
  requireInteger,
  requireLimit,
  requireName,
  requireTimestamp,
  storeLimits,
  toHeadersText,
} from '../limits.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import type {
  IdempotencyClaim,
  IdempotencyReservation,
  IdempotencyReserveRequest,
  IdempotencyStore,
  StoredResponse,
} from '../types.ts';
import type { SqlSession } from './connection.ts';
import { sqlPerStore } from './dialect.ts';
import { packText, unpackText } from './packed-text.ts';
import { toBytes, toInteger, toOptionalInteger, toStringColumn } from './rows.ts';

interface KeyRow {
  fingerprint: unknown;
  status: unknown;
  lease_until: unknown;
  response_status: unknown;
  response_headers: unknown;
  response_body: unknown;
  response_packed: unknown;
  expires_at: unknown;
  token: unknown;
  reserved_at: unknown;
}

/**
 * How many times `reserve` goes round when the row it conflicted with is gone by the time it
 * reads it (released or expired in between). Each round is two statements; the third miss in a
 * row means heavy churn on one key, which the caller may retry.
 */
const reserveRounds = 3;

function requireResponse(response: StoredResponse): { status: number; headers: string; body: string } {
  if (typeof response !== 'object' || response === null) {
    throw new ValidationError(`'response' must be an object: current value is ${String(response)}`, {
      details: { field: 'response', rule: 'object' },
    });
  }
  const status = requireInteger('response.status', response.status, 100, 599);
  const headers = toHeadersText('response.headers', response.headers);
  if (typeof response.body !== 'string') {
    throw new ValidationError(`'response.body' must be a string: current value is ${typeof response.body}`, {
      details: { field: 'response.body', rule: 'string' },
    });
  }
  const bytes = Buffer.byteLength(response.body, 'utf8');
  if (bytes > storeLimits.maxResponseBodyBytes) {
    throw new ValidationError(
      `'response.body' must be at most ${storeLimits.maxResponseBodyBytes} bytes: current value has ${bytes}`,
      { details: { field: 'response.body', rule: 'maxResponseBodyBytes', bytes } },
    );
  }
  if (response.body.includes('\u0000')) {
    throw new ValidationError(`'response.body' must be free of NUL characters`, {
      details: { field: 'response.body', rule: 'noNul' },
    });
  }
  return { status, headers, body: response.body };
}

/** A completed key's stored response, from its text columns or its packed one (migration 10). */
function storedResponse(scope: string, key: string, row: KeyRow): StoredResponse {
  const packed = toBytes(row.response_packed, 'response_packed');
  let headers: string;
  let body: string;
  if (packed === null) {
    headers = toStringColumn(row.response_headers, 'response_headers');
    body = toStringColumn(row.response_body, 'response_body');
  } else {
    const text = unpackText(packed, '', '', `the response of idempotency key '${key}' in scope '${scope}'`);
    const separator = text.indexOf('\u0000');
    if (separator === -1) {
      throw new SchemaMismatchError(
        `The packed response of idempotency key '${key}' in scope '${scope}' has no separator between its headers and body; it was written by another version of Meridian or damaged`,
        { details: { scope, key } },
      );
    }
    headers = text.slice(0, separator);
    body = text.slice(separator + 1);
  }
  return {
    status: toInteger(row.response_status, 'response_status'),
    headers: JSON.parse(headers) as Record<string, string>,
    body,
  };
}

const hexDigest = /^[0-9a-f]{64}$/;

/**
 * A fingerprint as the column holds it: a SHA-256 hex digest (the gateway's) as '~' and its 32
 * bytes in 43 base64url characters, 20 fewer; any other as given, with a leading '~' doubled,
 * so that the two forms never meet.
 */
function storedFingerprint(fingerprint: string): string {
  if (hexDigest.test(fingerprint)) return `~${Buffer.from(fingerprint, 'hex').toString('base64url')}`;
  return fingerprint.startsWith('~') ? `~${fingerprint}` : fingerprint;
}

/** The fingerprint `storedFingerprint` was given; rows from before migration 10 hold it as given. */
function readFingerprint(stored: string): string {
  if (stored.startsWith('~~')) return stored.slice(1);
  if (stored.startsWith('~')) return Buffer.from(stored.slice(1), 'base64url').toString('hex');
  return stored;
}

/**
 * How a row reserved before migration 10 holds this fingerprint (a hex digest as hex): a request
 * holding such a key across the upgrade still completes or releases it.
 */
function legacyFingerprint(fingerprint: string): string {
  return hexDigest.test(fingerprint) ? fingerprint : storedFingerprint(fingerprint);
}

function requireClaim(claim: IdempotencyClaim): IdempotencyClaim {
  if (typeof claim !== 'object' || claim === null) {
    throw new ValidationError(`'claim' must be an object: current value is ${String(claim)}`, {
      details: { field: 'claim', rule: 'object' },
    });
  }
  return {
    scope: requireName('scope', claim.scope),
    key: requireId('key', claim.key),
    fingerprint: requireId('fingerprint', claim.fingerprint),
    token: requireInteger('token', claim.token, 1, Number.MAX_SAFE_INTEGER),
  };
}

const statements = sqlPerStore(({ idempotencyKeys: table }, dialect) => ({
  insert: `INSERT INTO ${table} (scope, key, fingerprint, status, lease_until, expires_at, token, reserved_at)
         VALUES ($1, $2, $3, 'in_flight', $4, $5, $6, $7) ON CONFLICT (scope, key) DO NOTHING`,
  lock: `SELECT fingerprint, status, lease_until, response_status, response_headers, response_body, response_packed,
           expires_at, token, reserved_at
         FROM ${table} WHERE scope = $1 AND key = $2${dialect.forUpdate}`,
  takeOver: `UPDATE ${table} SET fingerprint = $3, status = 'in_flight', lease_until = $4, expires_at = $5,
             token = $6, reserved_at = $7, response_status = NULL, response_headers = NULL, response_body = NULL,
             response_packed = NULL
           WHERE scope = $1 AND key = $2`,
  // Both match the reservation by its token: a stale attempt's token was replaced by its takeover.
  // `lease_until IS NOT NULL` leaves released keys alone.
  complete: `UPDATE ${table} SET status = 'completed', lease_until = NULL,
         response_status = $5, response_headers = $6, response_body = $7, response_packed = $8
       WHERE scope = $1 AND key = $2 AND fingerprint IN ($3, $9) AND token = $4
         AND status = 'in_flight' AND lease_until IS NOT NULL`,
  release: `UPDATE ${table} SET lease_until = NULL
       WHERE scope = $1 AND key = $2 AND fingerprint IN ($3, $5) AND token = $4
         AND status = 'in_flight' AND lease_until IS NOT NULL`,
  // A bounded batch, earliest first, through the expiry index.
  expire: `DELETE FROM ${table} WHERE (scope, key) IN
       (SELECT scope, key FROM ${table} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`,
}));

/**
 * Idempotency-Key records. A key moves: (absent) → in_flight (leased to one attempt) →
 * completed (response stored) → (absent again after `expiresAt`). A lease that runs out
 * without completion lets the next attempt with the same fingerprint take the key over; a
 * release lets any. Each reservation raises the row's `token` (see `nextToken`), and `complete`
 * and `release` match it, so an attempt whose key was taken over can change nothing. A released
 * key is an 'in_flight' row with a NULL `lease_until`: kept, not deleted, so that its token
 * count goes on (a stale attempt's token must never come back).
 */
export class SqlIdempotencyStore implements IdempotencyStore {
  readonly #session: SqlSession;
  readonly #sql: ReturnType<typeof statements>;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#sql = statements(session);
  }

  async reserve(request: IdempotencyReserveRequest): Promise<IdempotencyReservation> {
    const scope = requireName('scope', request.scope);
    const key = requireId('key', request.key);
    const fingerprint = requireId('fingerprint', request.fingerprint);
    const nowMs = requireTimestamp('nowMs', request.nowMs);
    const leaseMs = requireInteger('leaseMs', request.leaseMs, 1, storeLimits.maxLeaseMs);
    const leaseUntil = nowMs + leaseMs;
    const expiresAt = requireInteger('expiresAt', request.expiresAt, leaseUntil, Number.MAX_SAFE_INTEGER);
    const firstToken = nextToken(undefined, nowMs);
    const firstReservedAt = nextReservedAt(undefined, fingerprint, nowMs);
    for (let round = 0; round < reserveRounds; round++) {
      // The common case, a new key, is one statement. Concurrent inserts of one key wait for
      // each other on the primary key: exactly one inserts, the others see its row.
      const inserted = await this.#session.execute(this.#sql.insert, [
        scope,
        key,
        storedFingerprint(fingerprint),
        leaseUntil,
        expiresAt,
        firstToken,
        firstReservedAt,
      ]);
      if (inserted === 1) return { outcome: 'reserved', token: firstToken, reservedAt: firstReservedAt };
      // The row exists: lock it (PostgreSQL; SQLite's single writer already excludes everyone)
      // so that deciding on it and taking it over is atomic against other attempts.
      const rows = await this.#session.query<KeyRow>(this.#sql.lock, [scope, key]);
      const row = rows[0];
      if (row === undefined) continue;
      const heldUntil = toOptionalInteger(row.lease_until, 'lease_until');
      const found: FoundReservation = {
        fingerprint: readFingerprint(toStringColumn(row.fingerprint, 'fingerprint')),
        expiresAt: toInteger(row.expires_at, 'expires_at'),
        status: row.status === 'completed' ? 'completed' : heldUntil === null ? 'released' : 'in_flight',
        leaseUntil: heldUntil,
        token: toInteger(row.token, 'token'),
        reservedAt: toOptionalInteger(row.reserved_at, 'reserved_at'),
      };
      const decision = decideReservation(found, fingerprint, nowMs);
      if (decision === 'take') {
        const token = nextToken(found, nowMs);
        const reservedAt = nextReservedAt(found, fingerprint, nowMs);
        await this.#session.execute(this.#sql.takeOver, [
          scope,
          key,
          storedFingerprint(fingerprint),
          leaseUntil,
          expiresAt,
          token,
          reservedAt,
        ]);
        return { outcome: 'reserved', token, reservedAt };
      }
      if (decision === 'mismatch') return { outcome: 'mismatch' };
      if (decision === 'in_flight') return { outcome: 'in_flight', leaseUntil: heldUntil ?? 0 };
      return { outcome: 'completed', response: storedResponse(scope, key, row) };
    }
    throw new ConflictError(
      `Could not reserve idempotency key '${key}' in scope '${scope}': it was released or expired ${reserveRounds} times while reserving`,
      { details: { scope, key } },
    );
  }

  async complete(claim: IdempotencyClaim, response: StoredResponse): Promise<void> {
    const { scope, key, fingerprint, token } = requireClaim(claim);
    const stored = requireResponse(response);
    // Headers and body packed together (a body holds no NUL, JSON text none either): a body often
    // repeats what a header says (an order's id in its body and its Location).
    const packed = packText(`${stored.headers}\u0000${stored.body}`, '', '');
    const changed = await this.#session.execute(this.#sql.complete, [
      scope,
      key,
      storedFingerprint(fingerprint),
      token,
      stored.status,
      packed === null ? stored.headers : null,
      packed === null ? stored.body : null,
      packed,
      legacyFingerprint(fingerprint),
    ]);
    if (changed !== 1) {
      throw new ConflictError(
        `Cannot complete idempotency key '${key}' in scope '${scope}': reservation ${token} no longer holds it (released, expired, completed, or taken over by a later reservation)`,
        { details: { scope, key, token } },
      );
    }
  }

  async release(claim: IdempotencyClaim): Promise<void> {
    const { scope, key, fingerprint, token } = requireClaim(claim);
    // Only this in-flight reservation: a completed response stays replayable and a later
    // reservation (another token) is not ours to drop.
    await this.#session.execute(this.#sql.release, [
      scope,
      key,
      storedFingerprint(fingerprint),
      token,
      legacyFingerprint(fingerprint),
    ]);
  }

  async expire(nowMs: number, limit?: number): Promise<number> {
    requireTimestamp('nowMs', nowMs);
    return this.#session.execute(this.#sql.expire, [
      nowMs,
      requireLimit('limit', limit, storeLimits.maxPageSize),
    ]);
  }
}
