// The cooperative-sticky assignment decided by the group leader: partitions stay with their
// owners, a joining member gets a fair share only after the owners revoked what moves, and a
// member a generation behind keeps what no newer member claims.
import type { ClusterMetadata, ExtendedGroupProtocolSubscription } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { cooperativeAssignor } from './cooperative-assignor.ts';

const topic = 'work';
const metadata = { topics: new Map([[topic, { partitionsCount: 6 }]]) } as unknown as ClusterMetadata;

function member(owned: number[], generationId: number): ExtendedGroupProtocolSubscription {
  return {
    topics: [topic],
    ownedPartitions: owned.length === 0 ? [] : [{ topic, partitions: owned }],
    generationId,
  } as unknown as ExtendedGroupProtocolSubscription;
}

function assign(members: Record<string, ExtendedGroupProtocolSubscription>): Record<string, number[]> {
  const result = cooperativeAssignor('a', new Map(Object.entries(members)), new Set([topic]), metadata);
  return Object.fromEntries(
    result.map(({ memberId, assignments }) => [memberId, assignments.get(topic)?.partitions ?? []]),
  );
}

describe('cooperative-sticky assignor', () => {
  it('keeps every partition with its owner when a member dies', () => {
    expect(assign({ a: member([0, 1, 2], 5), c: member([3, 4], 5) })).toEqual({ a: [0, 1, 2], c: [3, 4, 5] });
  });

  it('keeps the claims of a member one generation behind when nobody newer claims them', () => {
    expect(assign({ a: member([0, 1, 2], 4), c: member([3, 4, 5], 5) })).toEqual({
      a: [0, 1, 2],
      c: [3, 4, 5],
    });
  });

  it('trusts the newer generation when two members claim the same partition', () => {
    // c keeps 2; then 4 against 2 is uneven, so 5 moves to a — held back this round while c revokes it.
    expect(assign({ a: member([0, 1, 2], 4), c: member([2, 3, 4, 5], 5) })).toEqual({
      a: [0, 1],
      c: [2, 3, 4],
    });
  });

  it('gives a joining member partitions only once their owners have revoked them', () => {
    const first = assign({ a: member([0, 1, 2], 5), c: member([3, 4, 5], 5), d: member([], -1) });
    expect(first.d).toEqual([]);
    expect([...first.a!, ...first.c!].length).toBe(4);
    const second = assign({ a: member(first.a!, 6), c: member(first.c!, 6), d: member([], 6) });
    expect(second.d!.length).toBe(2);
    expect([...second.a!, ...second.c!, ...second.d!].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
