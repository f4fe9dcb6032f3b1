import type { TopicPartition } from '../types.ts';

export interface GroupMember {
  /** Join order within the log: lower ids come first, as Kafka orders member ids. */
  readonly memberId: number;
  readonly topics: readonly string[];
}

/**
 * Kafka's RangeAssignor: for each topic, the members subscribed to it (in member order) get
 * contiguous ranges of its partitions; the first `partitions % members` get one more. Every
 * partition of a subscribed topic has exactly one owner; unknown topics (count 0) have none.
 */
export function assignRange(
  members: readonly GroupMember[],
  partitionCounts: ReadonlyMap<string, number>,
): Map<number, TopicPartition[]> {
  const ordered = [...members].sort((a, b) => a.memberId - b.memberId);
  const result = new Map<number, TopicPartition[]>(ordered.map((member) => [member.memberId, []]));
  const topics = [...new Set(ordered.flatMap((member) => member.topics))].sort();
  for (const topic of topics) {
    const count = partitionCounts.get(topic) ?? 0;
    const subscribers = ordered.filter((member) => member.topics.includes(topic));
    const share = Math.floor(count / subscribers.length);
    const extra = count % subscribers.length;
    let next = 0;
    subscribers.forEach((member, index) => {
      const take = share + (index < extra ? 1 : 0);
      const owned = result.get(member.memberId)!;
      for (let partition = next; partition < next + take; partition++) owned.push({ topic, partition });
      next += take;
    });
  }
  return result;
}
