/**
 * What a real-process run drives: the app as one process (here), or as the nodes of a cluster
 * (cluster-deployment.ts). The runner draws the schedule and drives the workload; a deployment
 * starts the processes, sends each operation somewhere, and applies the faults that hit
 * processes (kill, pause, broker loss).
 */

import type { Random } from '../time.ts';
import { AppProcess, type SmallFilesystem } from './app-process.ts';
import type { Fault } from './schedule.ts';
import type { AppHandle, VerifySpec } from './spec.ts';

/** Starts a killed process again; the runner's, which stops the run's clock meanwhile. */
export type Restart = (process: AppProcess, skewMs: number) => Promise<void>;

export interface Deployment {
  /** Where setup, collect and the dependency hook go: the app, or a cluster's first node. */
  readonly main: AppHandle;
  /** Where an operation goes: the app, or a node that serves now, drawn from `random`. */
  target(random: Random): AppHandle;
  start(): Promise<void>;
  /** Applies (or, with `heal`, ends) a kill, pause or broker fault; returns a note for the report. */
  apply(fault: Fault, heal: boolean, restart: Restart): Promise<string>;
  /** Starts what is still down and resumes what is still paused, at the end of the run. */
  heal(): Promise<void>;
  /** Drains every process (SIGTERM, then SIGKILL after a bound). */
  stop(): Promise<void>;
  /** SIGKILLs every process at once (the run was interrupted). */
  kill(): void;
  /** Removes what the run made outside its directory (a cluster's schema and topics). */
  cleanup(): Promise<void>;
}

/** The app as one process, on one data directory (on the small filesystem when given). */
export class SingleDeployment implements Deployment {
  readonly main: AppProcess;

  constructor(
    spec: VerifySpec<unknown>,
    dataDir: string,
    port: number,
    seed: number,
    filesystem?: SmallFilesystem,
  ) {
    this.main = new AppProcess(spec, spec.start({ dataDir, port, seed, node: 0 }), port, filesystem);
  }

  target(): AppHandle {
    return this.main;
  }

  start(): Promise<void> {
    return this.main.start();
  }

  async apply(fault: Fault, _heal: boolean, restart: Restart): Promise<string> {
    if (fault.kind !== 'kill') throw new Error(`a single process has no ${fault.kind} fault`);
    const before = this.main.pid;
    await this.main.kill();
    await restart(this.main, fault.skewMs);
    return `pid ${before} → ${this.main.pid}`;
  }

  async heal(): Promise<void> {
    if (!this.main.running) await this.main.start();
  }

  stop(): Promise<void> {
    return this.main.stop();
  }

  kill(): void {
    void this.main.kill();
  }

  async cleanup(): Promise<void> {}
}
