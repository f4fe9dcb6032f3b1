import {
  bindEntityChanges,
  type Cache,
  createCache,
  type InvalidationBus,
  type RedisTier,
} from '../../src/cache/index.ts';
import { type Gateway, HttpProblem, type Principal, principalOf, Type } from '../../src/http/index.ts';
import { type Clock, entity, NotFoundError, type Runtime } from '../../src/index.ts';
import type { Subscription } from '../../src/resilience/index.ts';

/** What a customer keeps about itself: the name and the address orders are confirmed to. */
export interface ProfileState {
  readonly name: string;
  readonly email: string;
}

/** One customer's profile, keyed by the customer id (the principal's id). */
export const CustomerProfile = entity('CustomerProfile', {
  initial: (): ProfileState => ({ name: '', email: '' }),
  commands: {
    /** Sets the name and email (both, every time: a PUT). */
    update(_state, input: { name: string; email: string }) {
      const next: ProfileState = { name: input.name, email: input.email };
      return { state: next, reply: next };
    },
  },
});

/** The profile as the API answers it; `version` is the entity's (it grows with every update). */
export interface ProfileView {
  readonly customerId: string;
  readonly name: string;
  readonly email: string;
  readonly version: number;
}

export interface ProfileOptions {
  /** How long a profile is served from the cache (ms); changes invalidate it at once. @default 60000 */
  ttlMs?: number;
  /** Profiles kept in memory. @default 10000 */
  maxEntries?: number;
  /** The shared Redis tier (cluster shape). @default in process only */
  l2?: RedisTier;
  /** Carries invalidations to the other nodes. @default none: one node */
  invalidation?: InvalidationBus;
  /** @default systemClock */
  clock?: Clock;
}

/**
 * Customer profiles read through Meridian's cache. The cache is bound to the runtime's committed
 * entity changes: an update invalidates the profile's cached copies on every node before its
 * `PUT` answers, and the cached value carries the entity's version, so a read that loaded the
 * old profile and finishes after the update can store nothing (docs/cache.md).
 */
export class Profiles {
  readonly cache: Cache<ProfileView | null>;
  readonly #binding: Subscription;

  constructor(runtime: Runtime, options: ProfileOptions = {}) {
    this.cache = createCache<ProfileView | null>({
      name: 'customer-profiles',
      ttlMs: options.ttlMs ?? 60_000,
      l1: { maxEntries: options.maxEntries ?? 10_000 },
      versionOf: (profile) => profile?.version ?? 0,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.l2 === undefined ? {} : { l2: options.l2 }),
      ...(options.invalidation === undefined ? {} : { invalidation: options.invalidation }),
      loader: async (customerId) => {
        const found = await runtime.state(CustomerProfile, customerId);
        return found === null ? null : { customerId, ...found.state, version: found.version };
      },
    });
    this.#binding = bindEntityChanges(runtime, this.cache, { entity: CustomerProfile });
  }

  /** A customer's profile (null when it has none), through the cache. */
  get(customerId: string): Promise<ProfileView | null> {
    return this.cache.get(customerId);
  }

  close(): void {
    this.#binding.dispose();
    this.cache.close();
  }
}

const customerParams = Type.Object(
  // A principal's id, as the gateway accepts it (API key subjects, token subjects).
  { customerId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._@:-]*$' }) },
  { additionalProperties: false },
);

const profileBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    email: Type.String({ minLength: 3, maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$' }),
  },
  { additionalProperties: false },
);

const profileSchema = {
  type: 'object',
  required: ['customerId', 'name', 'email', 'version'],
  properties: {
    customerId: { type: 'string' },
    name: { type: 'string' },
    email: { type: 'string' },
    version: { type: 'integer' },
  },
} as const;

/** A customer reads and writes only its own profile; an operator any. */
function mayUseProfileOf(principal: Principal, customerId: string): boolean {
  return principal.role === 'operator' || principal.id === customerId;
}

/** `GET` and `PUT /customers/{customerId}/profile`. */
export function registerProfileRoutes(gateway: Gateway, runtime: Runtime, profiles: Profiles): void {
  gateway.route({
    method: 'GET',
    url: '/customers/:customerId/profile',
    access: { scopes: ['profile:read'] },
    schema: {
      summary: "A customer's profile, served from the cache (a customer reads its own)",
      tags: ['customers'],
      params: customerParams,
      response: { 200: profileSchema },
    },
    handler: async (request) => {
      const { customerId } = request.params;
      // Another customer's profile answers as one that does not exist: ids leak nothing.
      const profile = mayUseProfileOf(principalOf(request)!, customerId)
        ? await profiles.get(customerId)
        : null;
      if (profile === null) throw new NotFoundError(`Customer '${customerId}' has no profile`);
      return profile;
    },
  });

  gateway.route({
    method: 'PUT',
    url: '/customers/:customerId/profile',
    access: { scopes: ['profile:write'] },
    bodyLimitBytes: 1024,
    schema: {
      summary: "Sets a customer's name and email (a customer sets its own)",
      tags: ['customers'],
      params: customerParams,
      body: profileBody,
      response: { 200: profileSchema },
    },
    handler: async (request) => {
      const { customerId } = request.params;
      const principal = principalOf(request)!;
      if (!mayUseProfileOf(principal, customerId)) {
        throw new HttpProblem({
          status: 403,
          title: 'A customer writes only its own profile',
          type: 'urn:meridian:problem:forbidden',
          detail: `The credential is customer '${principal.id}', and the path names customer '${customerId}'.`,
        });
      }
      await runtime.send(CustomerProfile, customerId, 'update', request.body);
      // The commit invalidated every cached copy: this read loads what was just written.
      return (await profiles.get(customerId))!;
    },
  });
}
