// The range assignor gives every partition of a subscribed topic exactly one owner, in Kafka's
// contiguous ranges, and only to members subscribed to that topic.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignRange } from './assignment.ts';

describe('assignRange', () => {
  it("splits partitions in contiguous ranges, the first members taking the remainder, as Kafka's RangeAssignor", () => {
    const result = assignRange(
      [
        { memberId: 2, topics: ['t'] },
        { memberId: 1, topics: ['t'] },
        { memberId: 3, topics: ['t'] },
      ],
      new Map([['t', 7]]),
    );
    expect(result.get(1)!.map((tp) => tp.partition)).toEqual([0, 1, 2]);
    expect(result.get(2)!.map((tp) => tp.partition)).toEqual([3, 4]);
    expect(result.get(3)!.map((tp) => tp.partition)).toEqual([5, 6]);
  });

  it('gives each partition exactly one subscribed owner for any membership', () => {
    fc.assert(
      fc.property(
        fc.array(fc.subarray(['a', 'b', 'c'], { minLength: 1 }), { minLength: 1, maxLength: 6 }),
        fc.record({ a: fc.nat(40), b: fc.nat(40), c: fc.nat(40) }),
        (subscriptions, counts) => {
          const members = subscriptions.map((topics, memberId) => ({ memberId, topics }));
          const result = assignRange(members, new Map(Object.entries(counts)));
          for (const topic of ['a', 'b', 'c'] as const) {
            const subscribed = members.filter((member) => member.topics.includes(topic));
            const owners = members.flatMap((member) =>
              result
                .get(member.memberId)!
                .filter((tp) => tp.topic === topic)
                .map((tp) => ({ member, partition: tp.partition })),
            );
            const expected = subscribed.length === 0 ? 0 : counts[topic];
            expect(owners.map((owner) => owner.partition).sort((x, y) => x - y)).toEqual(
              Array.from({ length: expected }, (_, i) => i),
            );
            for (const owner of owners) expect(owner.member.topics).toContain(topic);
          }
        },
      ),
    );
  });

  it('leaves members of unknown topics without partitions', () => {
    expect(assignRange([{ memberId: 1, topics: ['missing'] }], new Map()).get(1)).toEqual([]);
  });
});
