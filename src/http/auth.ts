/**
 * Who a request comes from, and what it may do. A gateway with `auth` authenticates every
 * application route's request before anything else runs (before rate limits, the body, the
 * Idempotency-Key): an API key (`X-API-Key: mk_<id>_<secret>`, kept as a SHA-256 hash) or a
 * signed bearer token (`Authorization: Bearer <JWT>`, verified with `jose`). The principal it
 * yields has a role (operator or customer) and scopes; each route says which it needs.
 */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { ValidationError } from '../errors.ts';
import { type Clock, systemClock } from '../time.ts';
import { HttpProblem } from './problem.ts';

/** An operator may call every route; a customer only routes whose scopes it holds, on its own data. */
export type Role = 'operator' | 'customer';

export interface Principal {
  /** The customer id of a customer, the operator's name for an operator. At most 128 characters. */
  readonly id: string;
  readonly role: Role;
  /** What the credential allows (`orders:write`, ...). An operator passes every scope check. */
  readonly scopes: ReadonlySet<string>;
  /** How the request authenticated; `auth-off` when the gateway runs without authentication. */
  readonly via: 'api-key' | 'jwt' | 'auth-off';
}

/**
 * Who may call a route: anyone (`public`: probes, the OpenAPI document), operators only
 * (`operator`: the default, so a route nobody thought about is closed), or any principal
 * holding every listed scope (`{ scopes }`); an operator always may.
 */
export type RouteAccess = 'public' | 'operator' | { readonly scopes: readonly string[] };

/** An API key as the gateway keeps it: its id and the SHA-256 of the whole key, never the key. */
export interface ApiKeyRecord {
  /** The key's id, the part after `mk_`: `[a-z0-9]{1,32}`. */
  readonly id: string;
  /** The principal's id (a customer id, an operator's name). */
  readonly subject: string;
  readonly role: Role;
  readonly scopes?: readonly string[];
  /** Hex SHA-256 of the full key (`mk_<id>_<secret>`), as `generateApiKey` gives it. */
  readonly sha256: string;
}

export interface JwtOptions {
  /**
   * The HMAC secret (HS256) tokens are signed with, at least 32 bytes. Required: a gateway that
   * accepts bearer tokens must know how to check them.
   */
  readonly secret: string | Uint8Array;
  /** The `iss` every token must carry, when set. */
  readonly issuer?: string;
  /** The `aud` every token must carry, when set. */
  readonly audience?: string;
  /** Clock skew tolerated on `exp` and `nbf` (seconds). Range [0, 300]. @default 30 */
  readonly clockToleranceSeconds?: number;
}

export interface AuthOptions {
  readonly apiKeys?: readonly ApiKeyRecord[];
  readonly jwt?: JwtOptions;
  /** Scopes a customer credential gets when it names none (a token without `scope`). @default [] */
  readonly defaultCustomerScopes?: readonly string[];
}

export const API_KEY_HEADER = 'x-api-key';
const API_KEY_PATTERN = /^mk_([a-z0-9]{1,32})_([A-Za-z0-9_-]{16,128})$/;
const MAX_BEARER_LENGTH = 4096;
const MAX_SUBJECT_LENGTH = 128;
const SUBJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@:-]*$/;
const SCOPE_PATTERN = /^[a-z][a-z0-9:._-]{0,63}$/;
const MAX_SCOPES = 32;
const JWT_ALGORITHM = 'HS256';
/** Verified tokens remembered (until they expire), so a client's next request skips the signature check. */
const MAX_VERIFIED_TOKENS = 10_000;
/** Longer tokens are verified every time: the cache's memory stays bounded (≤ ~10 MB). */
const MAX_CACHED_TOKEN_LENGTH = 1024;

/** The principal of every request on a gateway whose authentication is off (`auth: false`). */
export const AUTH_OFF_PRINCIPAL: Principal = Object.freeze({
  id: 'anonymous',
  role: 'operator',
  scopes: new Set<string>(),
  via: 'auth-off',
});

export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/** A new API key and the record a gateway keeps of it (`apiKeys`): hand the key out once, store the record. */
export function generateApiKey(options: { subject: string; role: Role; scopes?: readonly string[] }): {
  key: string;
  record: ApiKeyRecord;
} {
  checkSubject(options.subject);
  const id = randomBytes(6).toString('hex');
  const key = `mk_${id}_${randomBytes(24).toString('base64url')}`;
  const record: ApiKeyRecord = {
    id,
    subject: options.subject,
    role: options.role,
    ...(options.scopes === undefined ? {} : { scopes: [...options.scopes] }),
    sha256: sha256Hex(key),
  };
  return { key, record };
}

/** Signs a bearer token (HS256) for a principal: for development and tests, or an issuer of your own. */
export async function issueToken(options: {
  secret: string | Uint8Array;
  subject: string;
  role: Role;
  scopes?: readonly string[];
  /** Lifetime (seconds). Range [1, 31536000]. @default 86400 */
  expiresInSeconds?: number;
  issuer?: string;
  audience?: string;
  /** @default systemClock */
  clock?: Clock;
}): Promise<string> {
  checkSubject(options.subject);
  const lifetime = options.expiresInSeconds ?? 86_400;
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 31_536_000) {
    throw new ValidationError(
      `'expiresInSeconds' must be an integer in [1, 31536000]: current value is ${String(lifetime)}`,
    );
  }
  const nowSeconds = Math.floor((options.clock ?? systemClock).now() / 1000);
  let token = new SignJWT({
    role: options.role,
    ...(options.scopes === undefined ? {} : { scope: options.scopes.join(' ') }),
  })
    .setProtectedHeader({ alg: JWT_ALGORITHM, typ: 'JWT' })
    .setSubject(options.subject)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + lifetime);
  if (options.issuer !== undefined) token = token.setIssuer(options.issuer);
  if (options.audience !== undefined) token = token.setAudience(options.audience);
  return token.sign(secretBytes(options.secret));
}

function secretBytes(secret: string | Uint8Array): Uint8Array {
  const bytes = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  if (!(bytes instanceof Uint8Array) || bytes.length < 32) {
    throw new ValidationError(
      `'jwt.secret' must be at least 32 bytes (an HS256 key): current length is ${bytes?.length ?? 0}`,
    );
  }
  return bytes;
}

function checkSubject(subject: unknown): asserts subject is string {
  if (typeof subject !== 'string' || subject.length > MAX_SUBJECT_LENGTH || !SUBJECT_PATTERN.test(subject)) {
    throw new ValidationError(
      `A principal's subject must match ${SUBJECT_PATTERN} and be at most ${MAX_SUBJECT_LENGTH} characters: current value is '${String(subject).slice(0, 64)}'`,
    );
  }
}

function checkRole(role: unknown, where: string): Role {
  if (role === 'operator' || role === 'customer') return role;
  throw new ValidationError(
    `${where}: 'role' must be 'operator' or 'customer': current value is '${String(role)}'`,
  );
}

/** Checks a route's `access` when the route is registered. */
export function checkAccess(name: string, access: RouteAccess | undefined): RouteAccess {
  if (access === undefined) return 'operator';
  if (access === 'public' || access === 'operator') return access;
  const scopes = (access as { scopes?: unknown }).scopes;
  if (
    !Array.isArray(scopes) ||
    scopes.length === 0 ||
    !scopes.every((scope) => typeof scope === 'string' && SCOPE_PATTERN.test(scope))
  ) {
    throw new ValidationError(
      `'access' of ${name} must be 'public', 'operator' or { scopes: [...] } with scopes matching ${SCOPE_PATTERN}`,
    );
  }
  return { scopes: [...scopes] };
}

export interface Credentials {
  readonly authorization: string | string[] | undefined;
  readonly apiKey: string | string[] | undefined;
}

/** Checks credentials against API keys and bearer tokens; one per gateway. */
export class Authenticator {
  readonly #keys = new Map<string, ApiKeyRecord>();
  readonly #jwtSecret: Uint8Array | undefined;
  readonly #jwt: JwtOptions | undefined;
  readonly #defaultCustomerScopes: readonly string[];
  readonly #clockToleranceSeconds: number;
  readonly #clock: Clock;
  /** Token → its principal and expiry (ms), least recently used first. */
  readonly #verified = new Map<string, { principal: Principal; expiresAtMs: number }>();

  constructor(options: AuthOptions, clock: Clock = systemClock) {
    this.#clock = clock;
    for (const record of options.apiKeys ?? []) {
      checkSubject(record.subject);
      checkRole(record.role, `API key '${record.id}'`);
      if (!/^[a-z0-9]{1,32}$/.test(record.id) || !/^[0-9a-f]{64}$/.test(record.sha256)) {
        throw new ValidationError(
          `API key '${String(record.id)}' needs an id matching [a-z0-9]{1,32} and a hex SHA-256 of 64 characters`,
        );
      }
      if (this.#keys.has(record.id)) throw new ValidationError(`API key '${record.id}' is listed twice`);
      this.#keys.set(record.id, record);
    }
    this.#jwt = options.jwt;
    this.#jwtSecret = options.jwt === undefined ? undefined : secretBytes(options.jwt.secret);
    const tolerance = options.jwt?.clockToleranceSeconds ?? 30;
    if (!Number.isInteger(tolerance) || tolerance < 0 || tolerance > 300) {
      throw new ValidationError(
        `'jwt.clockToleranceSeconds' must be an integer in [0, 300]: current value is ${String(tolerance)}`,
      );
    }
    this.#clockToleranceSeconds = tolerance;
    this.#defaultCustomerScopes = [...(options.defaultCustomerScopes ?? [])];
    if (this.#keys.size === 0 && this.#jwtSecret === undefined) {
      throw new ValidationError(
        "'auth' needs 'apiKeys' or 'jwt' (or pass auth: false to turn authentication off, for local experiments only)",
      );
    }
  }

  /** The principal the credentials prove, or the 401 problem that says what is wrong. */
  async authenticate(credentials: Credentials, typeBase: string): Promise<Principal> {
    const apiKey = single(credentials.apiKey);
    if (apiKey !== undefined) return this.#byApiKey(apiKey, typeBase);
    const authorization = single(credentials.authorization);
    if (authorization === undefined) {
      throw unauthenticated(
        typeBase,
        'No credentials: send Authorization: Bearer <token> or X-API-Key: <key>.',
      );
    }
    const match = /^Bearer +([^ ]+)$/i.exec(authorization.slice(0, MAX_BEARER_LENGTH + 8));
    if (match === null || authorization.length > MAX_BEARER_LENGTH + 8) {
      throw unauthenticated(
        typeBase,
        'The Authorization header must be "Bearer <token>".',
        'invalid_request',
      );
    }
    const token = match[1]!;
    if (API_KEY_PATTERN.test(token)) return this.#byApiKey(token, typeBase);
    return this.#byToken(token, typeBase);
  }

  #byApiKey(key: string, typeBase: string): Principal {
    const match = API_KEY_PATTERN.exec(key);
    const record = match === null ? undefined : this.#keys.get(match[1]!);
    // The hashes are compared in constant time, and an unknown id costs the same hash.
    const given = Buffer.from(sha256Hex(key), 'hex');
    const expected = Buffer.from(record?.sha256 ?? '0'.repeat(64), 'hex');
    if (record === undefined || !timingSafeEqual(given, expected)) {
      throw unauthenticated(typeBase, 'The API key is not valid.', 'invalid_token');
    }
    return {
      id: record.subject,
      role: record.role,
      scopes: new Set(record.scopes ?? (record.role === 'customer' ? this.#defaultCustomerScopes : [])),
      via: 'api-key',
    };
  }

  async #byToken(token: string, typeBase: string): Promise<Principal> {
    if (this.#jwtSecret === undefined) {
      throw unauthenticated(
        typeBase,
        'Bearer tokens are not accepted here; use an API key.',
        'invalid_token',
      );
    }
    // A signature check costs ~36 µs of CPU; a token seen before and not yet expired is as
    // valid as it was (a JWT cannot change), so its principal is remembered until `exp`.
    const remembered = this.#verified.get(token);
    if (remembered !== undefined) {
      this.#verified.delete(token);
      if (remembered.expiresAtMs > this.#clock.now()) {
        this.#verified.set(token, remembered);
        return remembered.principal;
      }
    }
    return this.#verify(token, typeBase);
  }

  async #verify(token: string, typeBase: string): Promise<Principal> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#jwtSecret!, {
        algorithms: [JWT_ALGORITHM],
        currentDate: new Date(this.#clock.now()),
        clockTolerance: this.#clockToleranceSeconds,
        requiredClaims: ['sub', 'exp'],
        ...(this.#jwt?.issuer === undefined ? {} : { issuer: this.#jwt.issuer }),
        ...(this.#jwt?.audience === undefined ? {} : { audience: this.#jwt.audience }),
      }));
    } catch (error) {
      const why =
        error instanceof joseErrors.JWTExpired
          ? 'The token has expired.'
          : error instanceof joseErrors.JWTClaimValidationFailed
            ? `The token's '${error.claim}' claim is not valid.`
            : 'The token is not valid (malformed, or its signature does not verify).';
      throw unauthenticated(typeBase, why, 'invalid_token');
    }
    const role = payload.role === 'operator' ? 'operator' : 'customer';
    const subject = payload.sub;
    if (
      typeof subject !== 'string' ||
      subject.length > MAX_SUBJECT_LENGTH ||
      !SUBJECT_PATTERN.test(subject)
    ) {
      throw unauthenticated(typeBase, "The token's 'sub' is not a valid principal id.", 'invalid_token');
    }
    const scopeClaim = payload.scope;
    const scopes =
      typeof scopeClaim === 'string'
        ? scopeClaim
            .split(' ')
            .filter((scope) => scope !== '')
            .slice(0, MAX_SCOPES)
        : role === 'customer'
          ? this.#defaultCustomerScopes
          : [];
    const principal: Principal = { id: subject, role, scopes: new Set(scopes), via: 'jwt' };
    if (token.length <= MAX_CACHED_TOKEN_LENGTH) {
      this.#verified.set(token, { principal, expiresAtMs: (payload.exp as number) * 1000 });
      if (this.#verified.size > MAX_VERIFIED_TOKENS)
        this.#verified.delete(this.#verified.keys().next().value!);
    }
    return principal;
  }
}

function single(value: string | string[] | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first === '' ? undefined : first;
}

function unauthenticated(
  typeBase: string,
  detail: string,
  error?: 'invalid_request' | 'invalid_token',
): HttpProblem {
  return new HttpProblem({
    status: 401,
    title: 'Authentication is required',
    type: `${typeBase}unauthenticated`,
    detail,
    headers: {
      'www-authenticate': `Bearer realm="meridian"${error === undefined ? '' : `, error="${error}"`}`,
    },
  });
}

/** Throws the 403 problem when the principal may not call a route with this access. */
export function authorize(principal: Principal, access: RouteAccess, route: string, typeBase: string): void {
  if (access === 'public' || principal.role === 'operator') return;
  if (access === 'operator') {
    throw new HttpProblem({
      status: 403,
      title: 'The operator role is required',
      type: `${typeBase}forbidden`,
      detail: `${route} changes settings or inventory and is open to operators only.`,
    });
  }
  const missing = access.scopes.filter((scope) => !principal.scopes.has(scope));
  if (missing.length === 0) return;
  throw new HttpProblem({
    status: 403,
    title: 'The credential lacks a required scope',
    type: `${typeBase}forbidden`,
    detail: `${route} needs the scope(s) ${missing.map((scope) => `'${scope}'`).join(', ')}.`,
    extensions: { requiredScopes: [...access.scopes] },
    headers: {
      'www-authenticate': `Bearer realm="meridian", error="insufficient_scope", scope="${access.scopes.join(' ')}"`,
    },
  });
}

/** The hostnames a loopback listener answers to: a DNS-rebinding page arrives with its own name. */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]', '::1'];

/** The host name of a Host header, without the port; lower case. */
export function hostnameOf(host: string | undefined): string | undefined {
  if (host === undefined || host.length > 255) return undefined;
  const lower = host.toLowerCase();
  if (lower.startsWith('[')) {
    const end = lower.indexOf(']');
    return end === -1 ? undefined : lower.slice(0, end + 1);
  }
  const colon = lower.indexOf(':');
  return colon === -1 ? lower : lower.slice(0, colon);
}
