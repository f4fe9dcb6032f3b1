import type {
  ClusterMetadata,
  ExtendedGroupProtocolSubscription,
  GroupPartitionsAssignments,
} from '@platformatic/kafka';

const keyOf = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/**
 * The group leader's assignment for the cooperative-sticky protocol, in place of the client's
 * own, which balances only from members above the ceiling quota: with 4 partitions owned 2 + 2,
 * a third member got nothing, ever. Here:
 * 1. every partition stays with its previous owner (the claimant of the highest generation that
 *    claims it; a partition two members claim in that generation has no trusted owner);
 * 2. partitions without an owner go to the least-loaded subscribed member (ties by member id);
 * 3. partitions move from the most to the least loaded member until sizes differ by at most one;
 * 4. a partition moving away from its previous owner is left out of this round: the owner is
 *    told to revoke it, rejoins at once, and the next round gives it to its new owner (Kafka's
 *    incremental cooperative rebalancing), so no partition is ever fetched by two members.
 */
export function cooperativeAssignor(
  _current: string,
  members: Map<string, ExtendedGroupProtocolSubscription>,
  topics: Set<string>,
  metadata: ClusterMetadata,
): GroupPartitionsAssignments[] {
  const ids = [...members.keys()].sort();
  const subscribed = (id: string, topic: string) => members.get(id)?.topics?.includes(topic) === true;
  const partitions = new Map<string, { topic: string; partition: number }>();
  for (const topic of [...topics].sort()) {
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    for (let partition = 0; partition < count; partition++)
      partitions.set(keyOf(topic, partition), { topic, partition });
  }
  const owners = previousOwners(members, partitions);
  const owned = new Map<string, Set<string>>(ids.map((id) => [id, new Set<string>()]));
  for (const [key, owner] of owners) owned.get(owner)?.add(key);
  const leastLoaded = (topic: string) =>
    ids.filter((id) => subscribed(id, topic)).sort((a, b) => owned.get(a)!.size - owned.get(b)!.size)[0];
  for (const [key, { topic }] of partitions) {
    if (owners.has(key)) continue;
    const id = leastLoaded(topic);
    if (id !== undefined) owned.get(id)!.add(key);
  }
  for (let moves = 0; moves < partitions.size * Math.max(1, ids.length); moves++) {
    const bySize = [...ids].sort((a, b) => owned.get(a)!.size - owned.get(b)!.size);
    const target = bySize[0];
    if (target === undefined) break;
    const donor = bySize
      .reverse()
      .find(
        (id) =>
          owned.get(id)!.size - owned.get(target)!.size > 1 &&
          [...owned.get(id)!].some((key) => subscribed(target, partitions.get(key)!.topic)),
      );
    if (donor === undefined) break;
    const key = [...owned.get(donor)!].reverse().find((k) => subscribed(target, partitions.get(k)!.topic))!;
    owned.get(donor)!.delete(key);
    owned.get(target)!.add(key);
  }
  return ids.map((id) => {
    const assignments = new Map<string, { topic: string; partitions: number[] }>();
    for (const key of [...owned.get(id)!].sort()) {
      const previous = owners.get(key);
      if (previous !== undefined && previous !== id) continue;
      const { topic, partition } = partitions.get(key)!;
      const entry = assignments.get(topic) ?? { topic, partitions: [] };
      entry.partitions.push(partition);
      assignments.set(topic, entry);
    }
    return { memberId: id, assignments };
  });
}

/**
 * Trusted previous owners. Each member reports what it owned and the generation it owned it in;
 * a partition's owner is its claimant from the highest generation that claims it (as Kafka's
 * CooperativeStickyAssignor does), so a member whose last rejoin left it a generation behind
 * still keeps what nobody newer claims. Two claimants in the same generation: no trusted owner.
 */
function previousOwners(
  members: Map<string, ExtendedGroupProtocolSubscription>,
  partitions: ReadonlyMap<string, unknown>,
): Map<string, string> {
  const claims = new Map<string, { generation: number; claimants: string[] }>();
  for (const [id, member] of members) {
    const generation = member.generationId ?? -1;
    for (const { topic, partitions: list } of member.ownedPartitions ?? []) {
      if (member.topics?.includes(topic) !== true) continue;
      for (const partition of list) {
        const key = keyOf(topic, partition);
        if (!partitions.has(key)) continue;
        const claim = claims.get(key);
        if (claim === undefined || generation > claim.generation)
          claims.set(key, { generation, claimants: [id] });
        else if (generation === claim.generation) claim.claimants.push(id);
      }
    }
  }
  const owners = new Map<string, string>();
  for (const [key, { claimants }] of claims) if (claimants.length === 1) owners.set(key, claimants[0]!);
  return owners;
}
