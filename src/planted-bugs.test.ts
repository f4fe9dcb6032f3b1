// The switch of the planted bugs is safe: unset or empty plants nothing; a known bug is planted
// only with NODE_ENV=test; set anywhere else, or to an unknown name, it is refused with a message
// naming the variable, instead of being ignored.
import { describe, expect, it } from 'vitest';
import { ValidationError } from './errors.ts';
import { readPlantedBug } from './planted-bugs.ts';

describe('readPlantedBug', () => {
  it('plants nothing when the variable is unset or empty', () => {
    expect(readPlantedBug({ NODE_ENV: 'test' })).toBeUndefined();
    expect(readPlantedBug({ MERIDIAN_PLANTED_BUG: '', NODE_ENV: 'production' })).toBeUndefined();
  });

  it('plants a known bug under NODE_ENV=test only', () => {
    expect(readPlantedBug({ MERIDIAN_PLANTED_BUG: 'offsets-apart', NODE_ENV: 'test' })).toBe('offsets-apart');
    for (const NODE_ENV of ['production', 'development', undefined]) {
      expect(() => readPlantedBug({ MERIDIAN_PLANTED_BUG: 'offsets-apart', NODE_ENV })).toThrow(
        /MERIDIAN_PLANTED_BUG=offsets-apart .* honoured only with NODE_ENV=test/,
      );
    }
  });

  it('refuses an unknown bug, naming the ones there are', () => {
    expect(() => readPlantedBug({ MERIDIAN_PLANTED_BUG: 'nope', NODE_ENV: 'test' })).toThrow(ValidationError);
    expect(() => readPlantedBug({ MERIDIAN_PLANTED_BUG: 'nope', NODE_ENV: 'test' })).toThrow(
      /must be one of offsets-apart, idempotency-forgotten, idempotency-released, applied-twice, journal-before-effect, unfenced-write, cache-stale-set: current value is 'nope'/,
    );
  });
});
