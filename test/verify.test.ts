// `meridian verify` catches a real bug: the test-only ledger app (test/verify/ledger-app.ts) with
// its planted bug (MERIDIAN_VERIFY_TEST_BUG=double-apply: each deposit applied twice) run as real
// processes under the seed's faults is reported as violating exactly-once, naming the deposit
// and the operation that placed it; the replay command the report prints, run as printed,
// finds the same violation; and the same seed without the bug passes.
import { describe, expect, it } from 'vitest';
import { verify } from './verify/run.ts';

describe('meridian verify on a planted bug', () => {
  it('reports the double-applied deposits, and the printed replay command reproduces the violation', async () => {
    const planted = await verify(
      'MERIDIAN_VERIFY_TEST_BUG=double-apply meridian verify test/verify/ledger.spec.ts --seed 5 --duration 4s',
    );
    expect(planted.code, planted.stderr).toBe(1);
    expect(planted.report.passed).toBe(false);
    expect(planted.report.faults.some((fault) => fault.fault.kind === 'kill' && fault.appliedAtMs >= 0)).toBe(
      true,
    );
    const duplicated = planted.report.violations.filter(
      (violation) => violation.invariant === 'exactly-once',
    );
    expect(duplicated.length).toBeGreaterThan(0);
    expect(duplicated[0]!.message).toMatch(/^effect d\d+-\d+ exists 2 times/);
    expect(duplicated[0]!.details[0]!.kind).toBe('deposit');
    expect(planted.report.replay).toBe(
      'MERIDIAN_VERIFY_TEST_BUG=double-apply meridian verify test/verify/ledger.spec.ts --seed 5 --duration 4s',
    );

    const replayed = await verify(planted.report.replay);
    expect(replayed.code, replayed.stderr).toBe(1);
    expect(replayed.report.seed).toBe(5);
    expect(replayed.report.faults.map((fault) => fault.description)).toEqual(
      planted.report.faults.map((fault) => fault.description),
    );
    expect(replayed.report.violations.some((violation) => violation.invariant === 'exactly-once')).toBe(true);

    const healthy = await verify('meridian verify test/verify/ledger.spec.ts --seed 5 --duration 4s');
    expect(healthy.code, JSON.stringify(healthy.report.violations)).toBe(0);
    expect(healthy.report.operations.ok).toBeGreaterThan(0);
  }, 300_000);
});
