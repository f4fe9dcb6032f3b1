import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: fine below 100 ms, where a healthy gateway answers. */
const LATENCY_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

/** What an Idempotency-Key lookup ended in, as counted by `http_idempotency_outcomes_total`. */
export type IdempotencyOutcome =
  | 'reserved'
  | 'replayed'
  | 'in_flight'
  | 'mismatch'
  | 'stored'
  | 'released'
  | 'lease_lost';

/**
 * The gateway's Prometheus metrics, in a registry of its own (not prom-client's global one) so
 * two gateways in one process, or in one test run, never share or clash over series. Apps add
 * their own metrics to `registry` and they appear at `/metrics` beside these.
 */
export class HttpMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<'method' | 'route' | 'status'>;
  readonly #duration: Histogram<'method' | 'route' | 'status'>;
  readonly #idempotency: Counter<'route' | 'outcome'>;

  constructor(options: { prefix: string; defaultMetrics: boolean }) {
    this.registry = new Registry();
    const prefix = options.prefix;
    this.#requests = new Counter({
      name: `${prefix}http_requests_total`,
      help: 'HTTP requests answered, by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.#duration = new Histogram({
      name: `${prefix}http_request_duration_seconds`,
      help: 'Time from receiving a request to finishing its response, by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status'],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers: [this.registry],
    });
    this.#idempotency = new Counter({
      name: `${prefix}http_idempotency_outcomes_total`,
      help: 'Idempotency-Key outcomes on idempotent routes: reserved, replayed, in_flight, mismatch, stored, released, lease_lost.',
      labelNames: ['route', 'outcome'],
      registers: [this.registry],
    });
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix });
  }

  /**
   * Records one answered request. `route` is the route's pattern (`/orders/:orderId`), never the
   * raw URL, so the number of series stays bounded whatever clients send.
   */
  observeRequest(method: string, route: string, status: number, durationMs: number): void {
    const labels = { method, route, status: String(status) };
    this.#requests.inc(labels);
    this.#duration.observe(labels, durationMs / 1000);
  }

  observeIdempotency(route: string, outcome: IdempotencyOutcome): void {
    this.#idempotency.inc({ route, outcome });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
