import type { Runtime } from '../../src/index.ts';
import type {
  IdempotencyClaim,
  IdempotencyReservation,
  IdempotencyReserveRequest,
  IdempotencyStore,
  StoredResponse,
} from '../../src/store/index.ts';

/**
 * Idempotency-Key records kept through the runtime's group commit: each reserve, complete and
 * release is a unit of the transaction the runtime commits anyway, instead of a write
 * transaction of its own. Profiling `POST /orders` showed the two standalone transactions per
 * request (reserve, then complete) waiting for the writer behind every group commit and paying
 * a commit each; as units they share one. The guarantees are the store's: a unit is isolated
 * (a failing one rolls back alone), and each call resolves only once its transaction committed,
 * so a reservation is durable before the handler runs and a stored response is durable before
 * it is sent.
 */
export class RuntimeIdempotencyStore implements IdempotencyStore {
  readonly #runtime: Runtime;

  constructor(runtime: Runtime) {
    this.#runtime = runtime;
  }

  reserve(request: IdempotencyReserveRequest): Promise<IdempotencyReservation> {
    return this.#runtime.transaction((tx) => tx.idempotency.reserve(request));
  }

  complete(claim: IdempotencyClaim, response: StoredResponse): Promise<void> {
    return this.#runtime.transaction((tx) => tx.idempotency.complete(claim, response));
  }

  release(claim: IdempotencyClaim): Promise<void> {
    return this.#runtime.transaction((tx) => tx.idempotency.release(claim));
  }

  expire(nowMs: number): Promise<number> {
    return this.#runtime.transaction((tx) => tx.idempotency.expire(nowMs));
  }
}
