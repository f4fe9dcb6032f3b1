/**
 * Policy states on the gateway's operations surface: `GET /policies` lists each exposed policy's
 * snapshot (a breaker's state and rates, a bulkhead's occupancy, a shedder's limit), and
 * `/metrics` carries the same as gauges, read at scrape time so nothing is kept in sync.
 */
import { Gauge, type Registry } from 'prom-client';
import { ValidationError } from '../errors.ts';

/** Anything with a snapshot: CircuitBreakerPolicy, BulkheadPolicy, LoadShedderPolicy, ... */
export interface ExposablePolicy {
  snapshot(): object;
}

const POLICY_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/i;
const CIRCUIT_STATES = ['closed', 'open', 'half-open', 'isolated'] as const;

export class PolicyExposure {
  readonly #policies = new Map<string, ExposablePolicy>();

  constructor(registry: Registry, prefix: string) {
    const policies = this.#policies;
    new Gauge({
      name: `${prefix}policy_circuit_state`,
      help: 'Circuit breaker state: 1 for the current state of each exposed breaker, 0 for the others.',
      labelNames: ['policy', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [name, policy] of policies) {
          const state = (policy.snapshot() as { state?: unknown }).state;
          if (typeof state !== 'string') continue;
          for (const candidate of CIRCUIT_STATES)
            this.set({ policy: name, state: candidate }, candidate === state ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: `${prefix}policy_snapshot_value`,
      help: "Numeric fields of each exposed policy's snapshot (failureRate, inFlight, limit, active, ...).",
      labelNames: ['policy', 'field'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [name, policy] of policies) {
          for (const [field, value] of Object.entries(policy.snapshot())) {
            if (typeof value === 'number' && Number.isFinite(value)) this.set({ policy: name, field }, value);
          }
        }
      },
    });
  }

  add(policies: Record<string, ExposablePolicy>): void {
    for (const [name, policy] of Object.entries(policies)) {
      if (!POLICY_NAME.test(name)) {
        throw new ValidationError(`A policy's name must match ${POLICY_NAME}: current value is '${name}'`);
      }
      if (typeof policy?.snapshot !== 'function') {
        throw new ValidationError(`Policy '${name}' has no snapshot() to expose`);
      }
      if (this.#policies.has(name)) throw new ValidationError(`A policy named '${name}' is already exposed`);
      this.#policies.set(name, policy);
    }
  }

  snapshots(): Record<string, object> {
    const result: Record<string, object> = {};
    for (const [name, policy] of this.#policies) result[name] = policy.snapshot();
    return result;
  }
}
