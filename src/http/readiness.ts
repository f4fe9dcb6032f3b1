import { ensureError, ValidationError } from '../errors.ts';
import type { Clock, Timers } from '../time.ts';

/** What a readiness check found. `detail` says why in words (shown in `/readyz`). */
export interface CheckResult {
  ok: boolean;
  detail?: string;
}

/**
 * A readiness check: the store is open, the processors run, a dependency answers. It may
 * return a boolean or a CheckResult; a throw or a timeout counts as a failure.
 */
export type ReadinessCheck = () => boolean | CheckResult | Promise<boolean | CheckResult>;

export interface CheckReport {
  status: 'pass' | 'fail';
  detail?: string;
  durationMs: number;
}

export interface ReadinessReport {
  status: 'ready' | 'not_ready';
  checks: Record<string, CheckReport>;
}

const CHECK_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * The checks an app registers, run together (in parallel, each bounded by `checkTimeoutMs`)
 * whenever `/readyz` is asked. The gateway adds its own `draining` check, so a closing node
 * stops receiving traffic from a load balancer before its listener goes away.
 */
export class ReadinessChecks {
  readonly #checks = new Map<string, ReadinessCheck>();
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #checkTimeoutMs: number;

  constructor(options: { clock: Clock; timers: Timers; checkTimeoutMs: number }) {
    this.#clock = options.clock;
    this.#timers = options.timers;
    this.#checkTimeoutMs = options.checkTimeoutMs;
  }

  add(name: string, check: ReadinessCheck): void {
    if (!CHECK_NAME.test(name)) {
      throw new ValidationError(
        `A readiness check's name must match ${CHECK_NAME}: current value is '${String(name)}'`,
      );
    }
    if (this.#checks.has(name)) throw new ValidationError(`A readiness check named '${name}' already exists`);
    this.#checks.set(name, check);
  }

  async run(): Promise<ReadinessReport> {
    const entries = [...this.#checks.entries()];
    const reports = await Promise.all(entries.map(([, check]) => this.#runOne(check)));
    const checks: Record<string, CheckReport> = {};
    entries.forEach(([name], index) => {
      checks[name] = reports[index]!;
    });
    const ready = reports.every((report) => report.status === 'pass');
    return { status: ready ? 'ready' : 'not_ready', checks };
  }

  async #runOne(check: ReadinessCheck): Promise<CheckReport> {
    const startedMs = this.#clock.monotonicNow();
    const elapsed = () => Math.round((this.#clock.monotonicNow() - startedMs) * 1000) / 1000;
    let timer: { cancel(): void } | undefined;
    const timeout = new Promise<CheckResult>((resolve) => {
      timer = this.#timers.setTimeout(
        () => resolve({ ok: false, detail: `timed out after ${this.#checkTimeoutMs} ms` }),
        this.#checkTimeoutMs,
      );
    });
    try {
      const outcome = await Promise.race([Promise.resolve().then(check), timeout]);
      const result: CheckResult = typeof outcome === 'boolean' ? { ok: outcome } : outcome;
      const report: CheckReport = { status: result.ok ? 'pass' : 'fail', durationMs: elapsed() };
      if (result.detail !== undefined) report.detail = result.detail;
      return report;
    } catch (thrown) {
      return { status: 'fail', detail: ensureError(thrown).message, durationMs: elapsed() };
    } finally {
      timer?.cancel();
    }
  }
}
