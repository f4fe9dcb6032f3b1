import { NotFoundError, ValidationError } from '../errors.ts';
import type { Log, ProducerRecord } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';
import type { SubscriptionDefinition } from './definitions.ts';

import { deadLetterHeaders } from './subscription-runner.ts';

/** One partition of a topic: where it starts and ends, and how far each consumer group is behind. */
export interface PartitionView {
  readonly partition: number;
  readonly start: number;
  readonly end: number;
  /** Per consumer group of this runtime's subscriptions: its committed offset and its lag (end − committed). */
  readonly groups: ReadonlyArray<{
    readonly group: string;
    readonly committed: number;
    readonly lag: number;
  }>;
}

export interface TopicView {
  readonly topic: string;
  readonly partitions: readonly PartitionView[];
  /** The sum of the partitions' lag, per group. */
  readonly lag: Readonly<Record<string, number>>;
}

/** Topics the console and `meridian inspect` show at most (the log's own topics first, by name). */
const maxTopics = 200;

/**
 * The log's topics with their partitions' offsets and the lag of the consumer groups this
 * runtime's subscriptions consume them with: what an operator asks "is anything falling behind?".
 */
export async function describeTopics(
  log: Log,
  subscriptions: readonly SubscriptionDefinition[],
): Promise<TopicView[]> {
  const names = (await log.listTopics()).sort().slice(0, maxTopics);
  const views: TopicView[] = [];
  for (const topic of names) {
    let partitions: number;
    try {
      partitions = (await log.describeTopic(topic)).partitions;
    } catch (error) {
      // Deleted between the list and now.
      if (error instanceof NotFoundError) continue;
      throw error;
    }
    const groups = [...new Set(subscriptions.filter((s) => s.topic === topic).map((s) => s.group))];
    const committed = new Map<string, Map<number, number>>();
    for (const group of groups) committed.set(group, await log.committedOffsets(group, topic));
    const lag: Record<string, number> = Object.fromEntries(groups.map((group) => [group, 0]));
    const views_: PartitionView[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      const { start, end } = await log.offsets(topic, partition);
      const perGroup = groups.map((group) => {
        const at = committed.get(group)?.get(partition) ?? start;
        const behind = Math.max(0, end - Math.max(at, start));
        lag[group] = (lag[group] ?? 0) + behind;
        return { group, committed: at, lag: behind };
      });
      views_.push({ partition, start, end, groups: perGroup });
    }
    views.push({ topic, partitions: views_, lag });
  }
  return views;
}

/**
 * Puts a dead letter's record back on the topic it came from (its key, value and own headers,
 * the dead-letter headers taken off), so its subscription handles it again. A retry appends a
 * new record: retrying the same dead letter twice delivers it twice.
 */
export async function retryDeadLetter(
  log: Log,
  deadLetterTopic: string,
  where: { partition: number; offset: number },
): Promise<{ topic: string; partition: number; offset: number }> {
  const partition = integerOption('partition', where.partition, 0, 0, 100_000);
  const offset = integerOption('offset', where.offset, 0, 0, Number.MAX_SAFE_INTEGER);
  const [record] = await log.read(deadLetterTopic, partition, offset, { maxRecords: 1 });
  if (record === undefined || record.offset !== offset) {
    throw new NotFoundError(
      `No dead letter at partition ${partition}, offset ${offset} of '${deadLetterTopic}': list them with deadLetters()`,
    );
  }
  const topic = record.headers[deadLetterHeaders.topic];
  if (topic === undefined || topic === '') {
    throw new ValidationError(
      `The record at partition ${partition}, offset ${offset} of '${deadLetterTopic}' is not a dead letter (no '${deadLetterHeaders.topic}' header)`,
    );
  }
  const headers: Record<string, string> = {};
  const own = new Set<string>(Object.values(deadLetterHeaders));
  for (const [name, value] of Object.entries(record.headers)) if (!own.has(name)) headers[name] = value;
  headers['meridian-retried-from'] = `${deadLetterTopic}/${partition}/${offset}`;
  const produced: ProducerRecord = { key: record.key, value: record.value, headers };
  const [appended] = await log.append(topic, [produced]);
  return { topic, partition: appended!.partition, offset: appended!.offset };
}
