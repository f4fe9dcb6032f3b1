/**
 * The app's HTTP face in simulation, as the simulation sees it: a spec's `http` makes one per
 * run, the run tells it each runtime it starts (`serve`: a process has one gateway), and the
 * workload's clients send it requests. Meridian's gateway is one (`simulatedGateway`, in
 * src/app/simulated-gateway.ts: this layer sits below the HTTP one).
 *
 * Nothing behind it may read real time: handlers and clients wait with `sleep` (virtual time)
 * and draw latencies and failures from `random` (the run's seeded source), so a run stays a pure
 * function of its seed.
 */

import type { Runtime } from '../runtime/runtime.ts';
import type { Clock, Random, Timers } from '../time.ts';

/** What a simulated app's routes and its workload's clients are given besides requests. */
export interface SimulatedServices {
  /** The runtime serving now (the routes get the one their gateway was made for). */
  readonly runtime: Runtime;
  /** The run's virtual clock and its timers (a cache's, a policy's, a gateway's). */
  readonly clock: Clock & Timers;
  /** Resolves after `ms` of virtual time: a dependency's latency, a client's timeout. */
  sleep(ms: number): Promise<void>;
  /** The run's seeded random source: a dependency's latency or failures. */
  readonly random: Random;
}

export interface SimulatedRequest {
  /** 'GET', 'POST', … */
  readonly method: string;
  /** The request target: path and query. */
  readonly url: string;
  /** Sent as JSON. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface SimulatedResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | number | undefined>>;
  /** The body parsed as JSON, or its text when it is not JSON. */
  readonly body: unknown;
}

/** One run's HTTP face: served by each runtime the run starts, in turn. */
export interface SimulatedHttp {
  /** A runtime started: requests go to it from now on. */
  serve(services: SimulatedServices): Promise<void>;
  request(request: SimulatedRequest): Promise<SimulatedResponse>;
}
