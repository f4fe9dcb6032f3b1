import type { Registry } from 'prom-client';
import type { GatewayReply, GatewayRequest } from '../http/index.ts';
import { HttpProblem } from '../http/index.ts';
import type { Runtime } from '../runtime/index.ts';
import { type Clock, systemClock, systemTimers, type TimerHandle, type Timers } from '../time.ts';

/** Live views open at once at most: each costs a connection and a share of every push. */
const maxClients = 32;

/** What every push carries: cumulative figures (the page turns them into rates) and lag. */
export interface ConsoleSnapshot {
  readonly atMs: number;
  readonly node: string;
  readonly running: boolean;
  readonly ownedPartitions: readonly number[] | null;
  /** Cluster shape: each work partition's owner and fencing epoch, cluster-wide; null embedded. */
  readonly partitions: ReadonlyArray<{
    partition: number;
    owner: string;
    epoch: number;
    claimedAt: number;
  }> | null;
  readonly sagas: { active: number; sleeping: number; queued: number };
  readonly commits: { transactions: number; units: number; failedUnits: number };
  readonly subscriptions: Readonly<Record<string, { handled: number; deadLettered: number }>>;
  readonly http: { requests: number; errors: number; latencySumSeconds: number; latencyCount: number };
  /** Per topic, per consumer group: records behind. */
  readonly lag: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly problems: ReadonlyArray<{ message: string; at: number }>;
}

/**
 * The console's Server-Sent Events: one snapshot computed per tick, however many pages watch,
 * written to each; the timer runs only while a page is open.
 */
export class ConsoleEvents {
  readonly #runtime: Runtime;
  readonly #registry: Registry;
  readonly #prefix: string;
  readonly #intervalMs: number;
  readonly #clients = new Set<GatewayReply['raw']>();
  readonly #clock: Clock;
  readonly #timers: Timers;
  #timer: TimerHandle | undefined;
  #ticking = false;

  constructor(
    runtime: Runtime,
    registry: Registry,
    options: { metricsPrefix: string; pushIntervalMs: number; clock?: Clock; timers?: Timers },
  ) {
    this.#runtime = runtime;
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#registry = registry;
    this.#prefix = options.metricsPrefix;
    this.#intervalMs = Math.min(5000, Math.max(100, options.pushIntervalMs));
  }

  serve(_request: GatewayRequest, reply: GatewayReply): void {
    if (this.#clients.size >= maxClients) {
      throw new HttpProblem({
        status: 503,
        title: 'Too many live console views',
        detail: `At most ${maxClients} console pages may watch one node at once; close one and reload.`,
      });
    }
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    this.#clients.add(raw);
    raw.on('close', () => {
      this.#clients.delete(raw);
      if (this.#clients.size === 0 && this.#timer !== undefined) {
        this.#timer.cancel();
        this.#timer = undefined;
      }
    });
    void this.#push([raw]);
    if (this.#timer === undefined) this.#tick();
  }

  /** Pushes every interval while a page watches (a chain of timeouts on the Timers port). */
  #tick(): void {
    this.#timer = this.#timers.setTimeout(() => {
      if (this.#clients.size === 0) {
        this.#timer = undefined;
        return;
      }
      void this.#push([...this.#clients]);
      this.#tick();
    }, this.#intervalMs);
  }

  async #push(targets: ReadonlyArray<GatewayReply['raw']>): Promise<void> {
    // A slow tick (a large log) skips the next instead of piling up.
    if (this.#ticking || targets.length === 0) return;
    this.#ticking = true;
    try {
      const frame = `event: snapshot\ndata: ${JSON.stringify(await this.snapshot())}\n\n`;
      for (const raw of targets) if (!raw.destroyed) raw.write(frame);
    } catch (error) {
      const frame = `event: problem\ndata: ${JSON.stringify({ message: String((error as Error).message).slice(0, 300) })}\n\n`;
      for (const raw of targets) if (!raw.destroyed) raw.write(frame);
    } finally {
      this.#ticking = false;
    }
  }

  async snapshot(): Promise<ConsoleSnapshot> {
    const runtime = this.#runtime;
    const stats = runtime.stats;
    const cluster = runtime.cluster;
    const lag: Record<string, Record<string, number>> = {};
    if (runtime.running) {
      for (const topic of await runtime.topics())
        if (Object.keys(topic.lag).length > 0) lag[topic.topic] = { ...topic.lag };
    }
    return {
      atMs: this.#clock.now(),
      node: cluster?.node ?? 'embedded',
      running: runtime.running,
      ownedPartitions: cluster === undefined ? null : [...cluster.owned()],
      partitions: cluster === undefined ? null : await cluster.claims(),
      sagas: { active: stats.activeSagas, sleeping: stats.sleepingSagas, queued: stats.queuedSagas },
      commits: {
        transactions: stats.commits.transactions,
        units: stats.commits.units,
        failedUnits: stats.commits.failedUnits,
      },
      subscriptions: stats.subscriptions,
      http: await this.#http(),
      lag,
      problems: runtime
        .problems()
        .slice(-5)
        .map((problem) => ({ message: problem.message, at: problem.at })),
    };
  }

  async #http(): Promise<ConsoleSnapshot['http']> {
    const requests =
      (await this.#registry.getSingleMetric(`${this.#prefix}http_requests_total`)?.get())?.values ?? [];
    const duration =
      (await this.#registry.getSingleMetric(`${this.#prefix}http_request_duration_seconds`)?.get())?.values ??
      [];
    let total = 0;
    let errors = 0;
    for (const { value, labels } of requests) {
      // The console's own calls are not the node's traffic.
      if (String(labels.route ?? '').startsWith('/console')) continue;
      total += value;
      if (Number(labels.status) >= 500) errors += value;
    }
    let latencySumSeconds = 0;
    let latencyCount = 0;
    for (const sample of duration as Array<{
      value: number;
      labels: Record<string, unknown>;
      metricName?: string;
    }>) {
      if (String(sample.labels.route ?? '').startsWith('/console')) continue;
      if (sample.metricName?.endsWith('_sum')) latencySumSeconds += sample.value;
      if (sample.metricName?.endsWith('_count')) latencyCount += sample.value;
    }
    return { requests: total, errors, latencySumSeconds, latencyCount };
  }
}
