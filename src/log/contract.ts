/**
 * The log's contract, written once and run against every backend (SQLite, Kafka), as Hono runs
 * one router suite against every router. A backend may skip a case only with a written reason.
 *
 * The cases hold for a backend with asynchronous visibility and slow group joins (Kafka): every
 * case uses its own topic and group names, and waits for records through consumer polls with
 * timeouts, never by sleeping. Backend internals (retention, compaction, durability) are tested
 * beside each backend, not here.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJson, jsonValue, utf8 } from './codec.ts';
import { partitionForKey } from './murmur2.ts';
import type {
  AssignmentChange,
  Consumer,
  ConsumerOptions,
  Log,
  LogRecord,
  ProducerRecord,
  TopicPartition,
} from './types.ts';

export interface LogContractOptions {
  /** Cases to skip, by name, each with the reason; an unknown name fails the suite. */
  skip?: Readonly<Record<string, string>>;
  /** Longest a case waits for appended records to reach a consumer. @default 10000 */
  visibilityTimeoutMs?: number;
}

interface CaseContext {
  log: Log;
  open: () => Promise<Log>;
  /** A topic name no other case (or earlier run against the same broker) uses. */
  topic(label: string): string;
  group(label: string): string;
  visibilityTimeoutMs: number;
}

type Case = (context: CaseContext) => Promise<void>;

const bytes = (...values: number[]) => new Uint8Array(values);

/** Polls until `count` records arrived, failing after `timeoutMs` without progress. */
async function pollCount(consumer: Consumer, count: number, timeoutMs: number): Promise<LogRecord[]> {
  const received: LogRecord[] = [];
  const pollTimeoutMs = Math.min(1000, timeoutMs);
  let idlePolls = 0;
  while (received.length < count && idlePolls * pollTimeoutMs < timeoutMs) {
    const records = await consumer.poll({ timeoutMs: pollTimeoutMs });
    idlePolls = records.length === 0 ? idlePolls + 1 : 0;
    received.push(...records);
  }
  expect(received.length, `records received within ${timeoutMs} ms`).toBe(count);
  return received;
}

/**
 * Polls until the consumers' assignments are disjoint, cover `partitions` partitions of `topic`
 * and give each consumer at least one (callers pass no more consumers than partitions). Polls
 * at least once: as in Kafka, a consumer fixes its starting positions (committed offset or
 * `autoOffsetReset`) in its first poll after an assignment.
 */
async function settle(consumers: readonly Consumer[], topic: string, partitions: number, timeoutMs: number) {
  const pollTimeoutMs = Math.min(200, timeoutMs);
  for (let waited = 0; ; waited += pollTimeoutMs) {
    const polled = await Promise.all(
      consumers.map((consumer) => consumer.poll({ timeoutMs: waited === 0 ? 0 : pollTimeoutMs })),
    );
    // Settling happens before any record is appended in these cases.
    expect(polled.flat()).toEqual([]);
    const owned = consumers.flatMap((consumer) =>
      consumer
        .assignment()
        .filter((tp) => tp.topic === topic)
        .map((tp) => tp.partition),
    );
    // Every member owns some partition too: in Kafka a member still waiting in JoinGroup owns
    // nothing while the others keep the previous generation's (complete, disjoint) assignment.
    const everyMemberOwns = consumers.every((consumer) =>
      consumer.assignment().some((tp) => tp.topic === topic),
    );
    if (owned.length === partitions && new Set(owned).size === partitions && everyMemberOwns) return;
    expect(waited, `group settled on ${partitions} partitions within ${timeoutMs} ms`).toBeLessThan(
      timeoutMs,
    );
  }
}

/** A consumer that records its onAssignment calls and checks each against assignment() as it arrives. */
function listenedConsumer(log: Log, options: ConsumerOptions) {
  const changes: AssignmentChange[] = [];
  const mismatches: string[] = [];
  let consumer: Consumer | undefined;
  consumer = log.consumer({
    ...options,
    onAssignment: (change) => {
      changes.push(change);
      const now = consumer?.assignment();
      if (now !== undefined && !sameSet(now, change.assignment)) {
        mismatches.push(`assignment() ${show(now)} != change.assignment ${show(change.assignment)}`);
      }
    },
  });
  return { consumer, changes, mismatches };
}

const show = (tps: readonly TopicPartition[]) => `[${tps.map((tp) => tp.partition).join(',')}]`;
const keys = (tps: readonly TopicPartition[]) => tps.map((tp) => `${tp.topic}/${tp.partition}`).sort();
const sameSet = (a: readonly TopicPartition[], b: readonly TopicPartition[]) =>
  keys(a).join() === keys(b).join();

/**
 * Replays the changes from an empty assignment: every revoked partition was owned, every
 * assigned one was not, and each change's `assignment` is the result. Returns the final set.
 */
function replay(changes: readonly AssignmentChange[]): string[] {
  const owned = new Set<string>();
  for (const [index, change] of changes.entries()) {
    for (const key of keys(change.revoked)) {
      expect(owned.has(key), `change ${index} revokes ${key}, which was owned`).toBe(true);
      owned.delete(key);
    }
    for (const key of keys(change.assigned)) {
      expect(owned.has(key), `change ${index} assigns ${key}, which was not owned`).toBe(false);
      owned.add(key);
    }
    expect(
      change.assigned.length + change.revoked.length,
      `change ${index} changes something`,
    ).toBeGreaterThan(0);
    expect([...owned].sort(), `change ${index}'s assignment is the replayed one`).toEqual(
      keys(change.assignment),
    );
  }
  return [...owned].sort();
}

/** Polls `consumer` until `done()` holds, failing after `timeoutMs`. */
async function pollUntil(consumer: Consumer, done: () => boolean, timeoutMs: number, what: string) {
  const pollTimeoutMs = Math.min(200, timeoutMs);
  for (let waited = 0; !done(); waited += pollTimeoutMs) {
    expect(waited, `${what} within ${timeoutMs} ms`).toBeLessThan(timeoutMs);
    await consumer.poll({ timeoutMs: pollTimeoutMs });
  }
}

const cases: Record<string, Case> = {
  'creates, describes, lists and deletes topics': async ({ log, topic }) => {
    const name = topic('lifecycle');
    await log.createTopic(name, { partitions: 3, retentionMs: 3_600_000 });
    expect(await log.describeTopic(name)).toEqual({
      name,
      partitions: 3,
      retentionMs: 3_600_000,
      retentionBytes: null,
      cleanupPolicy: 'delete',
    });
    expect(await log.listTopics()).toContain(name);
    await log.deleteTopic(name);
    expect(await log.listTopics()).not.toContain(name);
    await expect(log.describeTopic(name)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(log.deleteTopic(name)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  },

  'createTopic is idempotent for the same config and AlreadyExists for another': async ({ log, topic }) => {
    const name = topic('idempotent');
    await log.createTopic(name, { partitions: 2, cleanupPolicy: 'compact', retentionMs: null });
    await log.createTopic(name, { partitions: 2, cleanupPolicy: 'compact', retentionMs: null });
    expect(await log.describeTopic(name)).toMatchObject({
      partitions: 2,
      cleanupPolicy: 'compact',
      retentionMs: null,
    });
    await expect(log.createTopic(name, { partitions: 4 })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
  },

  'rejects invalid topic names and configs with ValidationError': async ({ log, topic }) => {
    for (const bad of ['', 'has space', 'slash/y', 'x'.repeat(250), '..']) {
      await expect(log.createTopic(bad, { partitions: 1 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      await expect(log.append(bad, [])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    for (const partitions of [0, -1, 1.5, 1025]) {
      await expect(log.createTopic(topic('bad-config'), { partitions })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
    }
    await expect(
      log.createTopic(topic('bad-retention'), { partitions: 1, retentionMs: -5 }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  },

  'unknown topics and partitions are NotFoundError': async ({ log, topic, group }) => {
    const missing = topic('missing');
    await expect(log.append(missing, [{ value: bytes(1) }])).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(log.read(missing, 0, 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(log.offsets(missing, 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(log.offsetForTimestamp(missing, 0, 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(
      log.commitOffsets(group('g'), [{ topic: missing, partition: 0, offset: 0 }]),
    ).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    const name = topic('two-partitions');
    await log.createTopic(name, { partitions: 2 });
    await expect(log.read(name, 2, 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(log.offsets(name, 7)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(log.append(name, [{ value: bytes(1), partition: 2 }])).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(log.read(name, -1, 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  },

  'places keyed records on partitionForKey(key), as Kafka does': async ({ log, topic }) => {
    const name = topic('placement');
    await log.createTopic(name, { partitions: 7 });
    const keys = Array.from({ length: 40 }, (_, i) => `customer-${i}`);
    const results = await log.append(
      name,
      keys.map((key, i) => ({ key: i % 2 === 0 ? key : utf8(key), value: utf8(key) })),
    );
    results.forEach((result, i) => {
      expect(result.partition).toBe(partitionForKey(utf8(keys[i]!), 7));
    });
    // The same key always lands on the same partition.
    const again = await log.append(name, [{ key: keys[3]!, value: null }]);
    expect(again[0]!.partition).toBe(results[3]!.partition);
  },

  'assigns dense offsets from 0 and returns one result per record in input order': async ({ log, topic }) => {
    const name = topic('dense');
    await log.createTopic(name, { partitions: 3 });
    const input: ProducerRecord[] = Array.from({ length: 30 }, (_, i) => ({
      partition: (i * 7) % 3,
      value: utf8(`v${i}`),
    }));
    const first = await log.append(name, input.slice(0, 12));
    const second = await log.append(name, input.slice(12));
    const results = [...first, ...second];
    expect(results).toHaveLength(30);
    const next = [0, 0, 0];
    results.forEach((result, i) => {
      expect(result.topic).toBe(name);
      expect(result.partition).toBe(input[i]!.partition);
      expect(result.offset).toBe(next[result.partition]);
      next[result.partition]!++;
    });
    for (let partition = 0; partition < 3; partition++) {
      expect(await log.offsets(name, partition)).toEqual({ start: 0, end: next[partition] });
      const records = await log.read(name, partition, 0);
      expect(records.map((record) => record.offset)).toEqual(records.map((_, i) => i));
    }
    expect(await log.append(name, [])).toEqual([]);
  },

  'round-trips keys, bytes and JSON values, headers, timestamps, tombstones and empty values': async ({
    log,
    topic,
  }) => {
    const name = topic('round-trip');
    await log.createTopic(name, { partitions: 1 });
    const binary = bytes(0, 255, 1, 254, 0);
    const results = await log.append(name, [
      {
        key: 'k1',
        value: binary,
        headers: { traceparent: '00-abc-def-01', 'x-empty': '' },
        timestamp: 1_700_000_000_123,
      },
      { key: binary, value: jsonValue({ order: 42, items: ['a', 'b'], note: 'ünïcödé ✓' }) },
      { key: 'k1', value: null },
      { value: new Uint8Array(0) },
    ]);
    expect(results[0]!.timestamp).toBe(1_700_000_000_123);
    expect(Number.isSafeInteger(results[1]!.timestamp)).toBe(true);
    const records = await log.read(name, 0, 0);
    expect(records).toHaveLength(4);
    const [first, second, tombstone, empty] = records as [LogRecord, LogRecord, LogRecord, LogRecord];
    expect(first).toMatchObject({ topic: name, partition: 0, offset: 0, timestamp: 1_700_000_000_123 });
    expect(first.key).toEqual(utf8('k1'));
    expect(first.value).toEqual(binary);
    expect(first.headers).toEqual({ traceparent: '00-abc-def-01', 'x-empty': '' });
    expect(second.key).toEqual(binary);
    expect(decodeJson(second)).toEqual({ order: 42, items: ['a', 'b'], note: 'ünïcödé ✓' });
    expect(second.headers).toEqual({});
    expect(second.timestamp).toBe(results[1]!.timestamp);
    expect(tombstone.value).toBeNull();
    expect(empty.key).toBeNull();
    expect(empty.value).toEqual(new Uint8Array(0));
  },

  'rejects bad records with ValidationError and appends nothing from that call': async ({ log, topic }) => {
    const name = topic('bad-records');
    await log.createTopic(name, { partitions: 1 });
    const bad: unknown[] = [
      { value: 'a string' },
      { value: bytes(1), headers: { n: 1 } },
      { value: bytes(1), timestamp: -1 },
      { value: bytes(1), partition: -1 },
    ];
    for (const record of bad) {
      await expect(log.append(name, [{ value: bytes(0) }, record as ProducerRecord])).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
    }
    expect(await log.offsets(name, 0)).toEqual({ start: 0, end: 0 });
  },

  'rejects a record over the size limit with RecordTooLargeError': async ({ log, topic }) => {
    const name = topic('too-large');
    await log.createTopic(name, { partitions: 1 });
    const huge = new Uint8Array(2 * 1024 * 1024);
    await expect(log.append(name, [{ value: bytes(1) }, { value: huge }])).rejects.toMatchObject({
      code: 'RECORD_TOO_LARGE',
    });
    expect(await log.offsets(name, 0)).toEqual({ start: 0, end: 0 });
  },

  'reads from an offset within maxRecords and maxBytes': async ({ log, topic }) => {
    const name = topic('read');
    await log.createTopic(name, { partitions: 1 });
    await log.append(
      name,
      Array.from({ length: 20 }, (_, i) => ({ value: new Uint8Array(100).fill(i) })),
    );
    const middle = await log.read(name, 0, 5, { maxRecords: 4 });
    expect(middle.map((record) => record.offset)).toEqual([5, 6, 7, 8]);
    expect(middle[0]!.value![0]).toBe(5);
    const rest = await log.read(name, 0, 15);
    expect(rest.map((record) => record.offset)).toEqual([15, 16, 17, 18, 19]);
    const limited = await log.read(name, 0, 0, { maxBytes: 250 });
    expect(limited.length).toBeGreaterThanOrEqual(1);
    expect(limited.length).toBeLessThanOrEqual(3);
    // At least one record even when it alone exceeds maxBytes.
    expect(await log.read(name, 0, 0, { maxBytes: 1 })).toHaveLength(1);
  },

  'a read at the end is empty, past the end OffsetOutOfRange, negative ValidationError': async ({
    log,
    topic,
  }) => {
    const name = topic('range');
    await log.createTopic(name, { partitions: 1 });
    await log.append(name, [{ value: bytes(1) }, { value: bytes(2) }]);
    expect(await log.read(name, 0, 2)).toEqual([]);
    await expect(log.read(name, 0, 3)).rejects.toMatchObject({ code: 'OFFSET_OUT_OF_RANGE' });
    await expect(log.read(name, 0, -1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(log.read(name, 0, 0, { maxRecords: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  },

  'offsetForTimestamp finds the first offset at or after a time, or the end': async ({ log, topic }) => {
    const name = topic('by-time');
    // Unbounded retention: these 1970 timestamps breach any time limit, and Kafka's retention
    // check (every few minutes) would delete them mid-test under the default of 7 days.
    await log.createTopic(name, { partitions: 1, retentionMs: null });
    await log.append(name, [
      { value: bytes(0), timestamp: 1000 },
      { value: bytes(1), timestamp: 2000 },
    ]);
    await log.append(name, [{ value: bytes(2), timestamp: 3000 }]);
    expect(await log.offsetForTimestamp(name, 0, 0)).toBe(0);
    expect(await log.offsetForTimestamp(name, 0, 1000)).toBe(0);
    expect(await log.offsetForTimestamp(name, 0, 1500)).toBe(1);
    expect(await log.offsetForTimestamp(name, 0, 3000)).toBe(2);
    expect(await log.offsetForTimestamp(name, 0, 3001)).toBe(3);
    const fromTime = await log.read(name, 0, await log.offsetForTimestamp(name, 0, 1500));
    expect(fromTime.map((record) => record.timestamp)).toEqual([2000, 3000]);
  },

  'offsets() reports start and end of each partition': async ({ log, topic }) => {
    const name = topic('offsets');
    await log.createTopic(name, { partitions: 2 });
    expect(await log.offsets(name, 0)).toEqual({ start: 0, end: 0 });
    await log.append(name, [
      { value: bytes(1), partition: 1 },
      { value: bytes(2), partition: 1 },
    ]);
    expect(await log.offsets(name, 0)).toEqual({ start: 0, end: 0 });
    expect(await log.offsets(name, 1)).toEqual({ start: 0, end: 2 });
  },

  'a group resumes from its committed offset after its consumer closes': async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('resume');
    const groupName = group('resume');
    await log.createTopic(name, { partitions: 1 });
    await log.append(
      name,
      Array.from({ length: 10 }, (_, i) => ({ value: utf8(`r${i}`) })),
    );
    const first = log.consumer({ group: groupName, topics: [name] });
    const received = await pollCount(first, 10, visibilityTimeoutMs);
    await first.commit(received.slice(0, 4));
    await first.close();
    expect(await log.committedOffsets(groupName, name)).toEqual(new Map([[0, 4]]));
    const second = log.consumer({ group: groupName, topics: [name] });
    const resumed = await pollCount(second, 6, visibilityTimeoutMs);
    expect(resumed.map((record) => record.offset)).toEqual([4, 5, 6, 7, 8, 9]);
    await second.commit();
    expect(await log.committedOffsets(groupName, name)).toEqual(new Map([[0, 10]]));
    await second.close();
  },

  'group members hear every assignment change; a closing member revokes all, the other gets it': async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('assignment-events');
    const groupName = group('assignment-events');
    await log.createTopic(name, { partitions: 4 });
    const a = listenedConsumer(log, { group: groupName, topics: [name] });
    const b = listenedConsumer(log, { group: groupName, topics: [name] });
    await settle([a.consumer, b.consumer], name, 4, visibilityTimeoutMs);
    const ownedByA = keys(a.consumer.assignment());
    const ownedByB = keys(b.consumer.assignment());
    expect(ownedByA.filter((key) => ownedByB.includes(key))).toEqual([]);
    expect([...ownedByA, ...ownedByB].sort()).toEqual(
      keys([0, 1, 2, 3].map((partition) => ({ topic: name, partition }))),
    );
    expect(replay(a.changes)).toEqual(ownedByA);
    expect(replay(b.changes)).toEqual(ownedByB);

    const bChangesBefore = b.changes.length;
    await a.consumer.close();
    const last = a.changes.at(-1);
    expect(last?.assignment).toEqual([]);
    expect(keys(last?.revoked ?? [])).toEqual(ownedByA);
    expect(replay(a.changes)).toEqual([]);
    await pollUntil(
      b.consumer,
      () => b.consumer.assignment().length === 4,
      visibilityTimeoutMs,
      'the survivor owns all 4 partitions',
    );
    const gained = b.changes.slice(bChangesBefore).flatMap((change) => keys(change.assigned));
    for (const key of ownedByA) expect(gained, `the survivor was told it got ${key}`).toContain(key);
    expect(replay(b.changes)).toEqual(keys(b.consumer.assignment()));
    expect([...a.mismatches, ...b.mismatches]).toEqual([]);
    await b.consumer.close();
    expect(replay(b.changes)).toEqual([]);
  },

  'an onAssignment listener that throws fails one poll and the consumer goes on': async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('assignment-throws');
    await log.createTopic(name, { partitions: 1 });
    await log.append(name, [{ value: bytes(7) }]);
    let calls = 0;
    const consumer = log.consumer({
      group: group('assignment-throws'),
      topics: [name],
      onAssignment: () => {
        calls++;
        throw new Error('listener bug');
      },
    });
    let failure: unknown;
    const records: LogRecord[] = [];
    for (let waited = 0; failure === undefined || records.length === 0; waited += 200) {
      expect(waited, `a failed poll and then the record within ${visibilityTimeoutMs} ms`).toBeLessThan(
        visibilityTimeoutMs * 2,
      );
      try {
        records.push(...(await consumer.poll({ timeoutMs: 200 })));
      } catch (error) {
        expect(failure, 'the listener error is thrown once').toBeUndefined();
        failure = error;
      }
    }
    expect(failure).toMatchObject({ code: 'ASSIGNMENT_LISTENER_FAILED', cause: { message: 'listener bug' } });
    expect(calls).toBe(1);
    expect(records.map((record) => [...(record.value ?? [])])).toEqual([[7]]);
    await consumer.close();
    expect(calls).toBe(2);
    await expect(consumer.poll({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'CLOSED' });
  },

  'committedOffsets of an unknown group is NotFoundError': async ({ log, topic, group }) => {
    const name = topic('unknown-group');
    await log.createTopic(name, { partitions: 1 });
    await expect(log.committedOffsets(group('never-used'), name)).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  },

  'commitOffsets stores offsets and rejects negative and future ones': async ({ log, topic, group }) => {
    const name = topic('commits');
    const groupName = group('commits');
    await log.createTopic(name, { partitions: 2 });
    await log.append(name, [
      { value: bytes(1), partition: 0 },
      { value: bytes(2), partition: 0 },
    ]);
    await log.commitOffsets(groupName, [
      { topic: name, partition: 0, offset: 2 },
      { topic: name, partition: 1, offset: 0 },
    ]);
    expect(await log.committedOffsets(groupName, name)).toEqual(
      new Map([
        [0, 2],
        [1, 0],
      ]),
    );
    await expect(
      log.commitOffsets(groupName, [{ topic: name, partition: 0, offset: -1 }]),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(
      log.commitOffsets(groupName, [{ topic: name, partition: 0, offset: 3 }]),
    ).rejects.toMatchObject({
      code: 'OFFSET_OUT_OF_RANGE',
    });
    await expect(log.commitOffsets('', [])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  },

  'two consumers of one group split the partitions and each record reaches its owner once': async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('split');
    const groupName = group('split');
    await log.createTopic(name, { partitions: 4 });
    const a = log.consumer({ group: groupName, topics: [name] });
    const b = log.consumer({ group: groupName, topics: [name] });
    await settle([a, b], name, 4, visibilityTimeoutMs);
    expect(a.assignment().length).toBeGreaterThan(0);
    expect(b.assignment().length).toBeGreaterThan(0);
    await log.append(
      name,
      Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: utf8(`v${i}`) })),
    );
    const byConsumer = new Map<Consumer, LogRecord[]>([
      [a, []],
      [b, []],
    ]);
    for (let idle = 0; idle * 200 < visibilityTimeoutMs; ) {
      const [fromA, fromB] = await Promise.all([a.poll({ timeoutMs: 200 }), b.poll({ timeoutMs: 200 })]);
      byConsumer.get(a)!.push(...fromA);
      byConsumer.get(b)!.push(...fromB);
      if (byConsumer.get(a)!.length + byConsumer.get(b)!.length >= 40) break;
      idle = fromA.length + fromB.length === 0 ? idle + 1 : 0;
    }
    const all = [...byConsumer.get(a)!, ...byConsumer.get(b)!];
    expect(all).toHaveLength(40);
    expect(new Set(all.map((record) => `${record.partition}:${record.offset}`)).size).toBe(40);
    for (const [consumer, records] of byConsumer) {
      const owned = new Set(consumer.assignment().map((tp) => tp.partition));
      for (const record of records) expect(owned.has(record.partition)).toBe(true);
    }
    await a.close();
    await b.close();
  },

  'the remaining member takes over the partitions of a member that closed': async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('takeover');
    const groupName = group('takeover');
    await log.createTopic(name, { partitions: 2 });
    const a = log.consumer({ group: groupName, topics: [name] });
    const b = log.consumer({ group: groupName, topics: [name] });
    await settle([a, b], name, 2, visibilityTimeoutMs);
    await b.close();
    await settle([a], name, 2, visibilityTimeoutMs);
    await log.append(name, [
      { value: bytes(0), partition: 0 },
      { value: bytes(1), partition: 1 },
    ]);
    const records = await pollCount(a, 2, visibilityTimeoutMs);
    expect(records.map((record) => record.partition).sort()).toEqual([0, 1]);
    await a.close();
  },

  'seek replays a partition from an earlier offset': async ({ log, topic, group, visibilityTimeoutMs }) => {
    const name = topic('seek');
    await log.createTopic(name, { partitions: 1 });
    await log.append(
      name,
      Array.from({ length: 5 }, (_, i) => ({ value: bytes(i) })),
    );
    const consumer = log.consumer({ group: group('seek'), topics: [name] });
    await pollCount(consumer, 5, visibilityTimeoutMs);
    consumer.seek(name, 0, 2);
    const replayed = await pollCount(consumer, 3, visibilityTimeoutMs);
    expect(replayed.map((record) => record.offset)).toEqual([2, 3, 4]);
    expect(() => consumer.seek(name, 0, -1)).toThrowError(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    await consumer.close();
  },

  "autoOffsetReset 'latest' starts at the end; 'earliest' at the start": async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('reset');
    await log.createTopic(name, { partitions: 1 });
    await log.append(name, [{ value: bytes(0) }, { value: bytes(1) }]);
    const latest = log.consumer({ group: group('latest'), topics: [name], autoOffsetReset: 'latest' });
    await settle([latest], name, 1, visibilityTimeoutMs);
    await log.append(name, [{ value: bytes(2) }]);
    const fromLatest = await pollCount(latest, 1, visibilityTimeoutMs);
    expect(fromLatest[0]!.offset).toBe(2);
    const earliest = log.consumer({ group: group('earliest'), topics: [name] });
    const fromEarliest = await pollCount(earliest, 3, visibilityTimeoutMs);
    expect(fromEarliest.map((record) => record.offset)).toEqual([0, 1, 2]);
    await latest.close();
    await earliest.close();
  },

  'a waiting poll returns the record appended while it waits': async ({
    log,
    topic,
    group,
    visibilityTimeoutMs,
  }) => {
    const name = topic('wake');
    await log.createTopic(name, { partitions: 1 });
    const consumer = log.consumer({ group: group('wake'), topics: [name] });
    await settle([consumer], name, 1, visibilityTimeoutMs);
    const waiting = consumer.poll({ timeoutMs: visibilityTimeoutMs });
    await log.append(name, [{ value: utf8('wake up') }]);
    const records = await waiting;
    expect(records).toHaveLength(1);
    expect(records[0]!.value).toEqual(utf8('wake up'));
    await consumer.close();
  },

  'poll with timeoutMs 0 or an aborted signal returns at once': async ({ log, topic, group }) => {
    const name = topic('no-wait');
    await log.createTopic(name, { partitions: 1 });
    const consumer = log.consumer({ group: group('no-wait'), topics: [name] });
    expect(await consumer.poll({ timeoutMs: 0 })).toEqual([]);
    const controller = new AbortController();
    const waiting = consumer.poll({ timeoutMs: 60_000, signal: controller.signal });
    controller.abort();
    expect(await waiting).toEqual([]);
    await expect(consumer.poll({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await consumer.close();
  },

  'closed consumers and closed logs reject further calls with ClosedError': async ({
    open,
    topic,
    group,
  }) => {
    const log = await open();
    const name = topic('closing');
    await log.createTopic(name, { partitions: 1 });
    const consumer = log.consumer({ group: group('closing'), topics: [name] });
    await consumer.close();
    await expect(consumer.poll({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'CLOSED' });
    const open2 = log.consumer({ group: group('closing-2'), topics: [name] });
    await log.close();
    await expect(open2.poll({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(log.append(name, [{ value: bytes(1) }])).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(log.listTopics()).rejects.toMatchObject({ code: 'CLOSED' });
    await log.close();
  },
};

/** The names of the contract's cases, for `skip`. */
export const logContractCases: readonly string[] = Object.keys(cases);

/**
 * Declares the contract suite for one backend. `open` returns a ready log; the suite opens one
 * for all cases (closing it at the end) and more for the cases that close theirs.
 */
export function describeLogContract(
  backendName: string,
  open: () => Promise<Log>,
  options: LogContractOptions = {},
): void {
  const skip = options.skip ?? {};
  const unknown = Object.keys(skip).filter((name) => !(name in cases));
  if (unknown.length > 0) throw new Error(`Unknown log contract cases to skip: ${unknown.join(', ')}`);
  const visibilityTimeoutMs = options.visibilityTimeoutMs ?? 10_000;
  // Unique per run, so cases against a long-lived broker never meet an earlier run's topics.
  const runId = randomUUID().slice(0, 8);
  let sequence = 0;
  const unique = (kind: string) => (label: string) => `${kind}-${label}-${runId}-${++sequence}`;

  describe(`log contract: ${backendName}`, () => {
    let log: Log;
    beforeAll(async () => {
      log = await open();
    });
    afterAll(async () => {
      await log?.close();
    });
    for (const [name, run] of Object.entries(cases)) {
      const reason = skip[name];
      if (reason !== undefined) {
        it.skip(`${name} (skipped: ${reason})`, () => undefined);
        continue;
      }
      it(name, () => run({ log, open, topic: unique('t'), group: unique('g'), visibilityTimeoutMs }));
    }
  });
}
