/**
 * What a run prints: its operations, the faults injected, each invariant's outcome, the
 * violations with the operations involved, and the command that replays the run. The same
 * report is `--json`.
 */

import { relative } from 'node:path';
import type { ClusterServices } from './cluster-deployment.ts';
import { countOperations, type History, type Operation, type OperationCounts } from './history.ts';
import type { CheckOutcome, InvariantResult, Violation } from './invariants.ts';
import type { Fault } from './schedule.ts';
import type { VerifySpec } from './spec.ts';

export interface FaultRecord {
  readonly fault: Fault;
  readonly description: string;
  /** When it was applied, milliseconds into the run; -1 when the run ended before it. */
  readonly appliedAtMs: number;
  /** What happened: the pids of a restart, the bytes that filled the disk, or why it failed. */
  readonly note: string;
  /** Set on a line about healing the fault (a failed heal, a restart after it), not injecting it. */
  readonly heal?: true;
}

export interface ReportedViolation extends Violation {
  /** The operations involved, as the history has them (at most 10). */
  readonly details: readonly Operation[];
}

export interface VerifyReport {
  readonly spec: string;
  readonly seed: number;
  readonly durationMs: number;
  readonly passed: boolean;
  readonly operations: OperationCounts;
  readonly faults: readonly FaultRecord[];
  readonly invariants: readonly InvariantResult[];
  readonly violations: readonly ReportedViolation[];
  /** The command that runs the same spec, seed and duration again. */
  readonly replay: string;
  /** Where history.jsonl and report.json are. */
  readonly runDirectory: string;
  /** Why a fault kind was left out, when one was (disk faults need a mount). */
  readonly notes: readonly string[];
}

/** Formats a duration the way `--duration` reads it. */
export function formatDuration(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** Quotes a shell word when it needs it. */
function shellWord(word: string): string {
  return /^[\w./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `NAME=value` for each of `names` set in this process's environment, shell-quoted. */
export function replayEnvironment(names: readonly string[] = []): string[] {
  return names
    .filter((name) => process.env[name] !== undefined)
    .map((name) => `${name}=${shellWord(process.env[name]!)}`);
}

/**
 * The replay command: the spec's replay variables as set now, the program, the spec, seed and
 * duration, and `--faults` when the run kept only some faults of its seed's schedule.
 */
export function replayCommand(
  spec: VerifySpec<unknown>,
  options: {
    program?: string;
    specPath: string;
    seed: number;
    durationMs: number;
    faults?: readonly number[] | undefined;
    cluster?: ClusterServices | undefined;
  },
): string {
  const cluster = options.cluster;
  const env = replayEnvironment(spec.replayEnv);
  const path = relative(process.cwd(), options.specPath) || options.specPath;
  return [
    ...env,
    options.program ?? 'meridian',
    'verify',
    shellWord(path.startsWith('..') ? options.specPath : path),
    '--seed',
    String(options.seed),
    '--duration',
    formatDuration(options.durationMs),
    ...(options.faults === undefined ? [] : ['--faults', formatFaultSelection(options.faults)]),
    ...(cluster === undefined
      ? []
      : ['--pg', shellWord(cluster.pgUrl), '--kafka', shellWord(cluster.kafkaBrokers)]),
    ...(cluster?.brokerControl === undefined ? [] : ['--broker-control', shellWord(cluster.brokerControl)]),
  ].join(' ');
}

/** `--faults` as it is written: the kept indexes of the seed's schedule, or `none`. */
export function formatFaultSelection(faults: readonly number[]): string {
  return faults.length === 0 ? 'none' : faults.join(',');
}

export function buildReport(input: {
  options: {
    spec: VerifySpec<unknown>;
    specPath: string;
    seed: number;
    durationMs: number;
    program?: string;
    faults?: readonly number[] | undefined;
  };
  schedule: readonly FaultRecord[];
  history: History;
  checked: CheckOutcome;
  runDirectory: string;
  /** Why some fault kinds were left out (no mounts, no namespaces). */
  notes: readonly string[];
}): VerifyReport {
  const { options, history, checked } = input;
  const operations = history.operations;
  return {
    spec: options.spec.name,
    seed: options.seed,
    durationMs: options.durationMs,
    passed: checked.violations.length === 0,
    operations: countOperations(operations),
    faults: input.schedule,
    invariants: checked.results,
    violations: checked.violations.map((violation) => ({
      ...violation,
      details: violation.operations
        .slice(0, 10)
        .map((id) => operations[id]!)
        .filter(Boolean),
    })),
    replay: replayCommand(options.spec, options),
    runDirectory: input.runDirectory,
    notes: [...input.notes],
  };
}

function describeOperation(operation: Operation): string {
  const time = (ms: number | undefined) => (ms === undefined ? '?' : `+${(ms / 1000).toFixed(3)} s`);
  const value = operation.status === 'ok' ? JSON.stringify(operation.output) : (operation.error ?? '');
  return `op ${operation.id} (worker ${operation.worker}${operation.duplicateOf === undefined ? '' : `, duplicate of op ${operation.duplicateOf}`}) ${operation.kind}${operation.key === undefined ? '' : ` ${operation.key}`} ${JSON.stringify(operation.input ?? null).slice(0, 120)} invoked ${time(operation.invokedAtMs)} → ${operation.status ?? 'open'} ${time(operation.completedAtMs)} ${(value ?? '').slice(0, 160)}`;
}

/** The report as text, for a terminal. */
export function formatReport(report: VerifyReport): string {
  const counts = report.operations;
  const kinds = Object.entries(counts.byKind)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
  const lines = [
    `meridian verify: ${report.spec}, seed ${report.seed}, ${formatDuration(report.durationMs)}`,
    `Operations: ${counts.total} (ok ${counts.ok}, failed ${counts.fail}, indeterminate ${counts.info}; ${counts.duplicates} duplicated deliveries) — ${kinds}`,
    `Faults injected: ${report.faults.filter((fault) => fault.heal === undefined && fault.appliedAtMs >= 0).length} of ${report.faults.filter((fault) => fault.heal === undefined).length} scheduled`,
    ...report.faults.map((fault) => `  ${fault.description}${fault.note === '' ? '' : ` (${fault.note})`}`),
    ...report.notes.map((note) => `  ${note}`),
    'Invariants:',
    ...report.invariants.map(
      (result) =>
        `  ${result.outcome === 'holds' ? 'ok  ' : result.outcome === 'unknown' ? '??  ' : 'FAIL'} ${result.invariant} (${result.checked})`,
    ),
  ];
  if (report.violations.length > 0) {
    lines.push(`Violations: ${report.violations.length}`);
    for (const violation of report.violations) {
      lines.push(`  [${violation.invariant}] ${violation.message}`);
      for (const operation of violation.details) lines.push(`      ${describeOperation(operation)}`);
    }
  }
  lines.push(report.passed ? 'Result: every invariant holds' : 'Result: VIOLATED');
  lines.push(`History: ${report.runDirectory}/history.jsonl`);
  lines.push(`Replay: ${report.replay}`);
  return lines.join('\n');
}
