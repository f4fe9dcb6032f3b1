import { describe, expect, it } from 'vitest';
import { ConflictError, ValidationError } from '../errors.ts';
import { OwnedPartitions } from './consumer-partitions.ts';

describe('OwnedPartitions', () => {
  it('keeps the positions of kept partitions on a new assignment and drops revoked ones', () => {
    const owned = new OwnedPartitions('g', 'consumer 1');
    owned.assign([
      { topic: 't', partition: 0 },
      { topic: 't', partition: 1 },
    ]);
    owned.seek('t', 0, 5);
    owned.seek('t', 1, 7);
    owned.assign([
      { topic: 't', partition: 1 },
      { topic: 'u', partition: 0 },
    ]);
    expect(owned.assignment).toEqual([
      { topic: 't', partition: 1 },
      { topic: 'u', partition: 0 },
    ]);
    expect(Object.isFrozen(owned.assignment)).toBe(true);
    expect([...owned.positions]).toEqual([['t:1', 7]]);
    expect(owned.owns('t:0')).toBe(false);
    expect(owned.commitsFor(undefined)).toEqual([{ topic: 't', partition: 1, offset: 7 }]);
  });

  it('refuses to seek a partition it does not own, or to a bad offset', () => {
    const owned = new OwnedPartitions('g', 'consumer 3');
    expect(() => owned.seek('t', 0, 1)).toThrowError(
      new ValidationError(
        "Cannot seek topic 't' partition 0: consumer 3 of group 'g' does not own it (it owns no partitions)",
      ),
    );
    owned.assign([{ topic: 't', partition: 1 }]);
    expect(() => owned.seek('t', 0, 1)).toThrowError(/it owns t\/1\)$/);
    expect(() => owned.seek('t', 1, -1)).toThrowError(ValidationError);
    expect(owned.seek('t', 1, 4)).toBe('t:1');
  });

  it('fences commits of partitions a rebalance moved away with a ConflictError', () => {
    const owned = new OwnedPartitions('g', 'this consumer');
    owned.assign([{ topic: 't', partition: 0 }]);
    owned.assertOwns([{ topic: 't', partition: 0, offset: 3 }]);
    const commit = () => owned.assertOwns([{ topic: 't', partition: 2, offset: 3 }]);
    expect(commit).toThrowError(ConflictError);
    expect(commit).toThrowError(
      "Cannot commit topic 't' partition 2 for group 'g': this consumer no longer owns it (a rebalance moved it)",
    );
  });
});
