// `meridian verify`'s arguments and spec loading: defaults, every option, and a clear error
// (exit 2) for bad values, a missing file, a module that is no spec, and a spec without a
// simulation asked to simulate.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defineVerifySpec } from '../chaos/index.ts';
import { ValidationError } from '../errors.ts';
import {
  clusterServicesOf,
  parseDuration,
  parseVerifyOptions,
  run,
  type VerifyCommandOptions,
} from './verify.ts';

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
    [
      ['s.ts', '--simulate', '--pg', 'postgres://x'],
      "'--pg', '--kafka' and '--broker-control' go with a real-process",
    ],
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
    expect(() => defineVerifySpec({ ...valid, cluster: { nodes: 1, sessionTimeoutMs: 6000 } })).toThrow(
      "'cluster.nodes' must be an integer in [2, 5]: current value is 1",
    );
    expect(() => defineVerifySpec({ ...valid, cluster: { nodes: 3, sessionTimeoutMs: 500 } })).toThrow(
      "'cluster.sessionTimeoutMs' must be an integer in [6000, 60000]: current value is 500",
    );
  });

  it("finds a cluster spec's PostgreSQL and Kafka in its flags, else the environment, and needs both", () => {
    const single = { cluster: undefined } as unknown as Parameters<typeof clusterServicesOf>[0];
    const cluster = { cluster: { nodes: 3, sessionTimeoutMs: 6000 } } as unknown as typeof single;
    const env = { MERIDIAN_PG_URL: 'postgres://env/db', MERIDIAN_KAFKA_BROKERS: '127.0.0.1:9092' };
    const options = parseVerifyOptions(['s.ts', '--seed', '1']) as VerifyCommandOptions;
    expect(clusterServicesOf(cluster, options, env)).toEqual({
      pgUrl: 'postgres://env/db',
      kafkaBrokers: '127.0.0.1:9092',
    });
    // A shell exporting them for its nodes does not make a single-process run a cluster run.
    expect(clusterServicesOf(single, options, env)).toBeUndefined();
    const flagged = parseVerifyOptions([
      ...['s.ts', '--pg', 'postgres://flag/db', '--kafka', 'k1:1,k2:2', '--broker-control', 'ctl'],
    ]) as VerifyCommandOptions;
    expect(clusterServicesOf(cluster, flagged, env)).toEqual({
      pgUrl: 'postgres://flag/db',
      kafkaBrokers: 'k1:1,k2:2',
      brokerControl: 'ctl',
    });
    expect(() => clusterServicesOf(cluster, { ...options, pg: 'postgres://x' }, {})).toThrow(
      "a cluster run needs both PostgreSQL and Kafka: give '--pg <url>' and '--kafka <host:port,...>'",
    );
  });

  it('refuses a cluster spec without PostgreSQL and Kafka, and a single-process spec given them (exit 2)', async () => {
    const base = `import { defineVerifySpec } from ${JSON.stringify(join(import.meta.dirname, '../chaos/index.ts'))};
const spec = { name: 'shop', start: () => ({ command: 'node', args: [] }), ready: /listening on (\\S+)/,
  workload: { workers: 1, next: () => ({ kind: 'read' }), invoke: async () => ({ status: 'ok' }) },
  collect: async () => ({}), invariants: {} };`;
    const clusterSpec = join(directory, 'cluster.spec.ts');
    writeFileSync(
      clusterSpec,
      `${base}\nexport default defineVerifySpec({ ...spec, cluster: { nodes: 2, sessionTimeoutMs: 6000 } });\n`,
    );
    const singleSpec = join(directory, 'single.spec.ts');
    writeFileSync(singleSpec, `${base}\nexport default defineVerifySpec(spec);\n`);
    const saved = { pg: process.env.MERIDIAN_PG_URL, kafka: process.env.MERIDIAN_KAFKA_BROKERS };
    delete process.env.MERIDIAN_PG_URL;
    delete process.env.MERIDIAN_KAFKA_BROKERS;
    try {
      const missing = await runCollecting([clusterSpec, '--seed', '1']);
      expect(missing.code).toBe(2);
      expect(missing.err).toContain(
        'runs as a cluster of 2 nodes: give it PostgreSQL and Kafka (--pg <url> --kafka',
      );
      const extra = await runCollecting([
        singleSpec,
        '--seed',
        '1',
        '--pg',
        'postgres://x/db',
        '--kafka',
        'k:1',
      ]);
      expect(extra.code).toBe(2);
      expect(extra.err).toContain(
        "runs as one process: '--pg', '--kafka' and '--broker-control' go with a spec that has 'cluster'",
      );
    } finally {
      if (saved.pg !== undefined) process.env.MERIDIAN_PG_URL = saved.pg;
      if (saved.kafka !== undefined) process.env.MERIDIAN_KAFKA_BROKERS = saved.kafka;
    }
  });
});
