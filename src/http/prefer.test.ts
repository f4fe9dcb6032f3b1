import { describe, expect, it } from 'vitest';
import { preferredWaitSeconds } from './prefer.ts';

describe('preferredWaitSeconds (RFC 7240 Prefer: wait)', () => {
  it('reads wait among other preferences, case-insensitively, quoted or not', () => {
    expect(preferredWaitSeconds('wait=5', 60)).toBe(5);
    expect(preferredWaitSeconds('respond-async, WAIT=10', 60)).toBe(10);
    expect(preferredWaitSeconds('return=minimal; foo="bar", wait="7"', 60)).toBe(7);
    expect(preferredWaitSeconds(['handling=lenient', 'wait=3'], 60)).toBe(3);
  });

  it('caps the wait, and takes the first of several', () => {
    expect(preferredWaitSeconds('wait=3600', 30)).toBe(30);
    expect(preferredWaitSeconds('wait=2, wait=9', 30)).toBe(2);
    expect(preferredWaitSeconds('wait=0', 30)).toBe(0);
  });

  it('ignores a missing or malformed wait', () => {
    expect(preferredWaitSeconds(undefined, 30)).toBeUndefined();
    expect(preferredWaitSeconds('respond-async', 30)).toBeUndefined();
    expect(preferredWaitSeconds('wait', 30)).toBeUndefined();
    expect(preferredWaitSeconds('wait=-1', 30)).toBeUndefined();
    expect(preferredWaitSeconds('wait=1.5', 30)).toBeUndefined();
    expect(preferredWaitSeconds('wait=soon', 30)).toBeUndefined();
    expect(preferredWaitSeconds('wait=99999999999', 30)).toBeUndefined();
  });
});
