// A bounded short soak of the commerce system (bench/soak.ts): a minute at a modest rate with a
// 5-second retention, long enough for retention to reach its steady state and for the database
// to stop growing. Real time and real processes, so it runs only when MERIDIAN_TEST_SOAK is set
// (CI sets it); `npm run bench:soak` is the long form.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const enabled = Boolean(process.env.MERIDIAN_TEST_SOAK);

describe.skipIf(!enabled)('soak (set MERIDIAN_TEST_SOAK=1 to run it: a minute of real load)', () => {
  it('keeps the database flat once retention reaches its steady state, and finishes every order', () => {
    const run = spawnSync(
      process.execPath,
      [
        resolve(import.meta.dirname, '../bench/soak.ts'),
        ...['--rate', '100', '--duration', '60', '--warmup', '5', '--retention-s', '5', '--sample-s', '2'],
      ],
      { encoding: 'utf8', timeout: 150_000 },
    );
    expect(run.status, run.stderr.slice(-2000)).toBe(0);
    const line = run.stdout.trim().split('\n').pop()!;
    expect(line).toContain('DB flat met');
    expect(line).toMatch(/orders accepted 6000, confirmed 6000, cancelled 0, unfinished 0/);
    const removed = /retention removed (\d+) sagas, (\d+) entities, (\d+) keys/.exec(line);
    expect(removed).not.toBeNull();
    expect(
      removed!
        .slice(1)
        .map(Number)
        .every((count) => count > 0),
    ).toBe(true);
  }, 180_000);
});
