// Simulation mode (src/chaos/simulation.ts) on the ledger: a run is a pure function of its seed
// (two runs of a seed give the same history, byte for byte), the correct ledger keeps every
// invariant over many seeds, and the planted bug — a delivered command applied twice — is found
// within 1,000 seeds, named, and shrunk to a schedule that still breaks it when replayed.
import { describe, expect, it } from 'vitest';
import { runSchedule, simulate, simulateSeeds } from '../src/chaos/index.ts';
import { ledgerSimulation } from './verify/ledger-simulation.ts';

describe('verify --simulate', () => {
  it('gives the same history for the same seed, and another for another seed', async () => {
    const spec = ledgerSimulation({ operations: 20 });
    const first = await simulate(spec, 7);
    const again = await simulate(spec, 7);
    expect(again.history.toJsonLines()).toBe(first.history.toJsonLines());
    expect(again.hash).toBe(first.hash);
    expect(first.history.operations.length).toBeGreaterThanOrEqual(20);
    expect((await simulate(spec, 8)).hash).not.toBe(first.hash);
  });

  it('finds no violation in the correct ledger over 100 seeds', async () => {
    const result = await simulateSeeds(ledgerSimulation(), 1000, 100);
    expect(result.failure?.result.checked.violations).toBeUndefined();
    expect(result.runs).toBe(100);
  }, 120_000);

  it('catches the planted double apply within 1,000 seeds, names it, and shrinks it to a schedule that replays', async () => {
    const spec = ledgerSimulation({ planted: 'no-dedupe' });
    const result = await simulateSeeds(spec, 1, 1000);
    expect(result.failure).toBeDefined();
    const { result: failed, shrunk } = result.failure!;
    expect(failed.checked.violations.map((violation) => violation.invariant)).toContain('exactly-once');
    expect(shrunk.steps.length).toBeLessThanOrEqual(failed.steps.length);
    expect(shrunk.steps.some((step) => step.type === 'invoke' && step.duplicateAfterMs !== undefined)).toBe(
      true,
    );
    const replayed = await runSchedule(spec, shrunk.seed, shrunk.steps);
    expect(replayed.hash).toBe(shrunk.hash);
    expect(replayed.passed).toBe(false);
  }, 120_000);
});
