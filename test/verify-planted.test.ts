// `meridian verify` catches bugs planted in Meridian's own core (src/planted-bugs.ts), not only in
// a test app: with MERIDIAN_PLANTED_BUG (and NODE_ENV=test, without which Meridian refuses it)
// each planted bug class is reported as a violation of the invariant it breaks, with a replay
// command that, run as printed, breaks it again; and the same seeds without the plant pass.
// - offsets-apart (the subscription runner commits its offsets in a later transaction than the
//   effects): found by simulation of the ledger, whose statement subscription then copies a
//   deposit twice after a restart;
// - applied-twice (the records behind a failed one handled before its retry): found by simulation
//   of the ledger, whose statement subscription then copies a deposit again at the rewind;
// - unfenced-write (the embedded owner fence skipped): found by simulation of the ledger, where a
//   crashed runtime's writes, no longer refused, copy deposits onto the statement beside the
//   runtime that took over;
// - journal-before-effect (a saga step's entry committed before its command): found by
//   simulation of the ledger, where a crash between the two leaves a transfer credited but
//   never withdrawn;
// - idempotency-released (a claim completes or releases a key whatever its token): found by
//   simulation of the ledger's HTTP face, where a deposit attempt that hung until its handler
//   gave up releases the key its client's retry holds, and a third attempt deposits again;
// - cache-stale-set (the in-process cache tier stores an older version over a newer one): found
//   by simulation of the ledger's HTTP face, whose write-through views land out of order and a
//   read then shows a balance from before a deposit already acknowledged;
// - idempotency-forgotten (a completed Idempotency-Key taken over as new): found by a short
//   real-process run of the ledger, whose duplicated deliveries then deposit twice; --shrink
//   cuts its fault schedule down to those duplicated deliveries alone.
import { describe, expect, it } from 'vitest';
import type { ShrunkRun, VerifyReport } from '../src/chaos/index.ts';
import { verify } from './verify/run.ts';

interface SimulationReport {
  readonly runs: number;
  readonly passed: boolean;
  readonly failure?: {
    seed: number;
    historyHash: string;
    violations: { invariant: string; message: string }[];
  };
  readonly shrunk?: {
    seed: number;
    historyHash: string;
    steps: unknown[];
    violations: { invariant: string }[];
  };
  readonly replay: string;
}

const ledger = 'test/verify/ledger.spec.ts';
/** The ledger's HTTP face (the gateway's Idempotency-Keys, a cache): simulation only. */
const ledgerHttp = 'test/verify/ledger-http.spec.ts';

/**
 * The printed replay of a simulated plant's failing seed names the plant and that seed, and run
 * as printed gives the same history; the same seeds, and 30 more, pass without the plant.
 */
async function expectReplayedAndHealthy(bug: string, report: SimulationReport, spec = ledger): Promise<void> {
  const failure = report.failure!;
  expect(report.replay).toBe(
    `NODE_ENV=test MERIDIAN_PLANTED_BUG=${bug} MERIDIAN_VERIFY_TEST_BUG='' meridian verify ${spec} --simulate --seed ${failure.seed} --seeds 1`,
  );
  const replayed = await verify<SimulationReport>(report.replay.replace(" MERIDIAN_VERIFY_TEST_BUG=''", ''));
  expect(replayed.code, replayed.stderr).toBe(1);
  expect(replayed.report.failure!.historyHash).toBe(failure.historyHash);
  const healthy = await verify<SimulationReport>(
    `meridian verify ${spec} --simulate --seed 1 --seeds ${report.runs + 30}`,
  );
  expect(healthy.code, JSON.stringify(healthy.report.failure)).toBe(0);
}

describe('verify catches bugs planted in core', () => {
  it('offsets-apart: simulation finds a record applied twice within 1,000 seeds, shrinks it, and the replay repeats it', async () => {
    const planted = await verify<SimulationReport>(
      'NODE_ENV=test MERIDIAN_PLANTED_BUG=offsets-apart meridian verify test/verify/ledger.spec.ts --simulate --seed 1 --seeds 1000',
    );
    expect(planted.code, planted.stderr).toBe(1);
    const failure = planted.report.failure!;
    expect(failure.violations.map((violation) => violation.invariant)).toContain('statement-matches-ledger');
    expect(failure.violations[0]!.message).toMatch(/is on its statement \d+ times but applied 1 times/);
    // The shrunk schedule still breaks it, and needs a restart (the window the bug opens).
    expect(planted.report.shrunk!.violations.map((violation) => violation.invariant)).toContain(
      'statement-matches-ledger',
    );
    expect(planted.report.shrunk!.steps).toContainEqual({ type: 'restart' });
    await expectReplayedAndHealthy('offsets-apart', planted.report);
  }, 200_000);

  // Each found within 1,000 seeds, named, replayed to the same history; the same seeds pass without it.
  it.each([
    {
      bug: 'applied-twice',
      spec: ledger,
      invariant: 'statement-matches-ledger',
      message: /is on its statement \d+ times but applied 1 times/,
    },
    {
      bug: 'unfenced-write',
      spec: ledger,
      invariant: 'statement-matches-ledger',
      message: /is on its statement \d+ times but applied 1 times/,
    },
    {
      bug: 'journal-before-effect',
      spec: ledger,
      invariant: 'transfer-all-or-nothing',
      message: /^transfer t\d+-\d+ was withdrawn 0 times and credited 1 times$/,
    },
    {
      bug: 'idempotency-released',
      spec: ledgerHttp,
      invariant: 'exactly-once',
      message: /^effect d\d+-\d+ exists [2-9] times/,
    },
    {
      bug: 'cache-stale-set',
      spec: ledgerHttp,
      invariant: 'linearizable',
      message: /^no order of the \d+ operations on key 'acc-\d' agrees with the model/,
    },
  ])(
    '$bug: simulation of $spec finds it within 1,000 seeds as $invariant, and the replay repeats it',
    async ({ bug, spec, invariant, message }) => {
      const planted = await verify<SimulationReport>(
        `NODE_ENV=test MERIDIAN_PLANTED_BUG=${bug} meridian verify ${spec} --simulate --seed 1 --seeds 1000`,
      );
      expect(planted.code, planted.stderr).toBe(1);
      const failure = planted.report.failure!;
      const named = failure.violations.filter((violation) => violation.invariant === invariant);
      expect(named.length, JSON.stringify(failure.violations)).toBeGreaterThan(0);
      expect(named[0]!.message).toMatch(message);
      expect(planted.report.shrunk!.violations.map((violation) => violation.invariant)).toContain(invariant);
      await expectReplayedAndHealthy(bug, planted.report, spec);
    },
    200_000,
  );

  it('idempotency-forgotten: a short real-process run finds deposits applied twice, shrinks its faults to the duplicated deliveries, and the shrunk replay finds them again', async () => {
    const command =
      'NODE_ENV=test MERIDIAN_PLANTED_BUG=idempotency-forgotten meridian verify test/verify/ledger.spec.ts --seed 5 --duration 3s';
    const planted = await verify<VerifyReport & { shrunk: ShrunkRun }>(`${command} --shrink 90s`);
    expect(planted.code, planted.stderr).toBe(1);
    const duplicated = planted.report.violations.filter(
      (violation) => violation.invariant === 'exactly-once',
    );
    expect(duplicated.length).toBeGreaterThan(0);
    const times = Number(duplicated[0]!.message.match(/^effect d\d+-\d+ exists (\d+) times/)![1]);
    expect(times).toBeGreaterThanOrEqual(2);
    // The operations involved: a deposit and its duplicated deliveries.
    // Acknowledged ('ok'); on a loaded machine one of them may have timed out at the client
    // ('info': its outcome unknown to it), which the check counts too (a run at load 10 saw [ok, info, ok]).
    const statuses = duplicated[0]!.details.map((operation) => operation.status);
    expect(statuses.length).toBeGreaterThanOrEqual(times);
    expect(statuses.every((status) => status === 'ok' || status === 'info')).toBe(true);
    expect(statuses).toContain('ok');
    expect(planted.report.replay).toBe(
      `${command.split(' meridian')[0]} MERIDIAN_VERIFY_TEST_BUG='' meridian verify test/verify/ledger.spec.ts --seed 5 --duration 3s`,
    );

    // Shrunk: the bug needs the duplicated deliveries, and nothing else of the schedule.
    const { shrunk } = planted.report;
    const kept = shrunk.report.faults.filter((fault) => fault.heal === undefined);
    expect(kept.map((fault) => fault.fault.kind)).toEqual(['duplicate']);
    expect(shrunk.faults).toHaveLength(1);
    expect(planted.report.faults.filter((fault) => fault.heal === undefined).length).toBeGreaterThan(1);
    expect(shrunk.report.replay).toMatch(/ --seed 5 --duration 3s --faults \d+$/);

    const replayed = await verify<VerifyReport>(
      shrunk.report.replay.replace(" MERIDIAN_VERIFY_TEST_BUG=''", ''),
    );
    expect(replayed.code, replayed.stderr).toBe(1);
    expect(replayed.report.violations.some((violation) => violation.invariant === 'exactly-once')).toBe(true);
    expect(replayed.report.faults.map((fault) => fault.description)).toEqual(
      shrunk.report.faults.map((fault) => fault.description),
    );

    const healthy = await verify<VerifyReport>(
      'meridian verify test/verify/ledger.spec.ts --seed 5 --duration 3s',
    );
    expect(healthy.code, JSON.stringify(healthy.report.violations)).toBe(0);
  }, 300_000);
});
