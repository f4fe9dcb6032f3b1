/**
 * An app's routes on Meridian's gateway inside `meridian verify --simulate` (a simulation spec's
 * `http: simulatedGateway(routes)`): reached through Fastify's inject (no socket), on the run's
 * virtual clock and timers. Idempotency-Keys live in one MemoryIdempotencyStore for the whole run,
 * so they outlive a restart or a crash as a shared store's would. Each runtime the run starts gets
 * a gateway of its own: a request goes to the gateway of the moment, while the requests the old
 * one is serving finish against the old runtime (refused once it crashed).
 */

import type {
  SimulatedHttp,
  SimulatedRequest,
  SimulatedResponse,
  SimulatedServices,
} from '../chaos/simulation-http.ts';
import { ValidationError } from '../errors.ts';
import { createGateway, type Gateway } from '../http/gateway.ts';
import { MemoryIdempotencyStore } from '../http/memory-idempotency-store.ts';

/** How a spec declares its routes: on the gateway, as an app's `routes` does. */
export type SimulatedRoutes = (gateway: Gateway, services: SimulatedServices) => void;

/** A simulation spec's `http`: a gateway serving `routes`, made anew for each run. */
export function simulatedGateway(routes: SimulatedRoutes): () => SimulatedHttp {
  return () => new GatewayPerRuntime(routes);
}

class GatewayPerRuntime implements SimulatedHttp {
  readonly #routes: SimulatedRoutes;
  readonly #keys = new MemoryIdempotencyStore();
  #gateway: Gateway | undefined;

  constructor(routes: SimulatedRoutes) {
    this.#routes = routes;
  }

  async serve(services: SimulatedServices): Promise<void> {
    const gateway = await createGateway({
      auth: false,
      allowedHosts: 'any',
      idempotencyStore: this.#keys,
      clock: services.clock,
      timers: services.clock,
      rateLimit: false,
      // Process metrics sample on real timers: not part of a pure run.
      defaultMetrics: false,
    });
    this.#routes(gateway, services);
    await gateway.ready();
    this.#gateway = gateway;
  }

  async request(request: SimulatedRequest): Promise<SimulatedResponse> {
    const gateway = this.#gateway;
    if (gateway === undefined) {
      throw new ValidationError(
        `A simulated request (${request.method} ${request.url}) came before any runtime started: call serve first`,
      );
    }
    const answer = await gateway.server.inject({
      method: request.method as 'GET',
      url: request.url,
      headers: {
        ...(request.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...request.headers,
      },
      ...(request.body === undefined ? {} : { payload: JSON.stringify(request.body) }),
    });
    let body: unknown = answer.body;
    if (String(answer.headers['content-type'] ?? '').includes('json')) body = JSON.parse(answer.body);
    return { status: answer.statusCode, headers: answer.headers, body };
  }
}
