/** What `meridian verify --simulate` prints: seeds run, and the first failure with its shrunk schedule. */

import type { SeedsResult, SimulationResult, SimulationSpec, SimulationStep } from './simulation.ts';

/** Whether a module's `simulation` export looks like a simulation spec. */
export function isSimulationSpec(value: unknown): value is SimulationSpec<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as SimulationSpec).definitions) &&
    typeof (value as SimulationSpec).collect === 'function' &&
    typeof (value as SimulationSpec).workload?.invoke === 'function'
  );
}

function describeStep(step: SimulationStep): string {
  if (step.type === 'advance') return `advance the clock ${step.ms} ms`;
  if (step.type === 'restart') return 'stop the runtime and start it again on the same database';
  if (step.type === 'crash')
    return `crash after ${step.afterMs} ms: a new runtime takes the database over (fencing the old one), then the old one stops`;
  return `worker ${step.worker}: ${step.request.kind}${step.request.key === undefined ? '' : ` ${step.request.key}`} ${JSON.stringify(step.request.input ?? null)} delivered after ${step.delayMs} ms${step.duplicateAfterMs === undefined ? '' : `, again after ${step.duplicateAfterMs} ms`}${step.loseAnswer ? ', answer lost' : ''}`;
}

function summary(result: SimulationResult) {
  return {
    seed: result.seed,
    historyHash: result.hash,
    steps: result.steps,
    violations: result.checked.violations,
    history: result.history.events,
  };
}

export function formatSimulation(
  spec: SimulationSpec<unknown>,
  result: SeedsResult & { firstSeed: number; elapsedMs: number; replay: string },
  json: boolean,
): string {
  const failure = result.failure;
  if (json) {
    return JSON.stringify(
      {
        spec: spec.name,
        firstSeed: result.firstSeed,
        runs: result.runs,
        elapsedMs: result.elapsedMs,
        passed: failure === undefined,
        ...(failure === undefined
          ? {}
          : { failure: summary(failure.result), shrunk: summary(failure.shrunk) }),
        replay: result.replay,
      },
      null,
      2,
    );
  }
  const lines = [
    `meridian verify --simulate: ${spec.name}, seeds ${result.firstSeed}..${result.firstSeed + result.runs - 1} (${result.runs} runs in ${(result.elapsedMs / 1000).toFixed(1)} s)`,
  ];
  if (failure === undefined) {
    lines.push('Result: every invariant holds on every seed');
  } else {
    lines.push(
      `Seed ${failure.result.seed} VIOLATED (history ${failure.result.hash.slice(0, 16)}…, ${failure.result.steps.length} steps):`,
    );
    for (const violation of failure.result.checked.violations)
      lines.push(`  [${violation.invariant}] ${violation.message}`);
    lines.push(`Shrunk to ${failure.shrunk.steps.length} steps that still break it:`);
    for (const step of failure.shrunk.steps) lines.push(`  ${describeStep(step)}`);
    for (const violation of failure.shrunk.checked.violations) {
      lines.push(`  [${violation.invariant}] ${violation.message}`);
      for (const id of violation.operations.slice(0, 6)) {
        const operation = failure.shrunk.history.operations[id];
        if (operation !== undefined)
          lines.push(
            `      op ${id}${operation.duplicateOf === undefined ? '' : ` (duplicate of op ${operation.duplicateOf})`} ${operation.kind} ${operation.key ?? ''} → ${operation.status}`,
          );
      }
    }
  }
  lines.push(`Replay: ${result.replay}`);
  return lines.join('\n');
}
