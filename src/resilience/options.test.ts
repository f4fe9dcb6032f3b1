import { describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { durationOption, integerOption, oneOfOption, ratioOption, requiredOption } from './options.ts';

describe('option validation', () => {
  it('names the option, the rule and the value in a ValidationError', () => {
    expect(() => integerOption('maxAttempts', 1000, 3, 1, 100)).toThrow(
      "'maxAttempts' must be <= 100: current value is 1000",
    );
    expect(() => integerOption('maxAttempts', 1.5, 3, 1, 100)).toThrow(
      "'maxAttempts' must be an integer: current value is 1.5",
    );
    expect(() => durationOption('timeoutMs', -1, 0)).toThrow("'timeoutMs' must be >= 0: current value is -1");
    expect(() => ratioOption('failureRateThreshold', 0, 0.5)).toThrow("'failureRateThreshold' must be > 0");
    expect(() =>
      oneOfOption('strategy', 'eager' as 'cooperative', 'cooperative', ['cooperative', 'aggressive']),
    ).toThrow("'strategy' must be one of 'cooperative', 'aggressive': current value is eager");
    try {
      requiredOption('onRedisError', undefined);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).details).toMatchObject({ option: 'onRedisError' });
    }
  });

  it('applies the documented default when the option is absent, and rejects non-finite numbers', () => {
    expect(integerOption('maxAttempts', undefined, 3, 1, 100)).toBe(3);
    expect(() => durationOption('delayMs', Number.POSITIVE_INFINITY, 0)).toThrow('must be an integer');
    expect(() => ratioOption('rate', Number.NaN, 0.5)).toThrow('must be a finite number');
  });
});
