// `meridian verify`'s arguments and spec loading: defaults, every option, and a clear error
// (exit 2) for bad values, a missing file, a module that is no spec, and a spec without a
// simulation asked to simulate.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defineVerifySpec } from '../chaos/index.ts';
import { ValidationError } from '../errors.ts';
import { parseDuration, parseVerifyOptions, run } from './verify.ts';

const directory = mkdtempSync(join(tmpdir(), 'meridian-verify-cli-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

async function runCollecting(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('meridian verify options', () => {
  it('reads the spec, seed, duration and flags, drawing a seed when none is given', () => {
    expect(parseVerifyOptions(['s.ts', '--seed', '7', '--duration', '20s', '--json'])).toEqual({
      specPath: 's.ts',
      seed: 7,
      durationMs: 20_000,
      json: true,
    });
    expect(parseVerifyOptions(['s.ts'], () => 0.5)).toMatchObject({
      seed: 2_147_483_648,
      durationMs: 20_000,
    });
    expect(parseVerifyOptions(['s.ts', '--simulate', '--seeds', '50'])).toMatchObject({ simulateSeeds: 50 });
    expect(parseVerifyOptions(['s.ts', '--simulate', '--threads', '3'])).toMatchObject({ threads: 3 });
    expect(parseVerifyOptions(['s.ts', '--simulate'])).toMatchObject({
      threads: Math.min(availableParallelism(), 64),
    });
    expect(parseVerifyOptions(['s.ts', '--seed', '1', '--faults', '2,0', '--shrink', '90s'])).toMatchObject({
      faults: [0, 2],
      shrinkMs: 90_000,
    });
    expect(parseVerifyOptions(['s.ts', '--seed', '1', '--faults', 'none'])).toMatchObject({ faults: [] });
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
  });

  it.each([
    [['s.ts', '--duration', '5'], "'--duration' must be a time between 1s and 1h"],
    [['s.ts', '--duration', '2h'], "'--duration' must be a time between 1s and 1h"],
    [['s.ts', '--seed=-1'], "'--seed' must be an integer in [0, 4294967295]: current value is '-1'"],
    [['s.ts', '--seeds', '5'], "'--seeds' goes with '--simulate'"],
    [['s.ts', '--threads', '2'], "'--threads' goes with '--simulate'"],
    [['s.ts', '--simulate', '--threads', '0'], "'--threads' must be an integer in [1, 64]"],
    [['s.ts', '--simulate', '--duration', '5s'], "'--simulate' runs seeds, not a duration"],
    [['s.ts', '--faults', '1,x'], "'--faults' must be 'none' or distinct fault indexes"],
    [['s.ts', '--faults', '1,1'], "'--faults' must be 'none' or distinct fault indexes"],
    [['s.ts', '--shrink', '5s'], "'--shrink' must be a time between 30s and 1h"],
    [['s.ts', '--simulate', '--shrink', '60s'], "'--simulate' runs seeds, not a duration"],
    [[], 'meridian verify needs a spec module'],
    [['a.ts', 'b.ts'], "'b.ts' is one too many"],
  ])('refuses %j', (argv, message) => {
    expect(() => parseVerifyOptions(argv)).toThrow(ValidationError);
    expect(() => parseVerifyOptions(argv)).toThrow(message);
  });

  it('exits 2 naming the file when the spec is missing, is no spec, or has no simulation', async () => {
    const missing = await runCollecting([join(directory, 'nope.ts')]);
    expect(missing).toMatchObject({ code: 2 });
    expect(missing.err).toContain('does not exist');

    const notSpec = join(directory, 'not-spec.ts');
    writeFileSync(notSpec, 'export const x = 1;\n');
    const wrong = await runCollecting([notSpec]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain(
      "must export a spec as its default export ('export default defineVerifySpec({...})'): it exports x",
    );

    const noSimulation = await runCollecting([notSpec, '--simulate']);
    expect(noSimulation.code).toBe(2);
    expect(noSimulation.err).toContain("has no simulation: '--simulate' needs 'export const simulation");
  });

  it('defineVerifySpec names the field that is wrong', () => {
    const valid = {
      name: 'shop',
      start: () => ({ command: 'node', args: [] }),
      ready: /listening on (\S+)/,
      workload: {
        workers: 2,
        next: () => ({ kind: 'read' }),
        invoke: async () => ({ status: 'ok' as const }),
      },
      collect: async () => ({}),
      invariants: {},
    };
    expect(defineVerifySpec(valid)).toBe(valid);
    expect(() => defineVerifySpec({ ...valid, name: 'Shop!' })).toThrow(
      "Verify spec 'Shop!': 'name' must be",
    );
    expect(() => defineVerifySpec({ ...valid, workload: { ...valid.workload, workers: 0 } })).toThrow(
      "'workload.workers' must be an integer in [1, 64]: current value is 0",
    );
    expect(() =>
      defineVerifySpec({ ...valid, invariants: { sagas: { list: () => [], terminalWithinMs: -1 } } }),
    ).toThrow("'invariants.sagas.terminalWithinMs' must be an integer in [0, 600000]: current value is -1");
  });
});
