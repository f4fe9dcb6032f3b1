// The stream job on the cluster shape: input from a Kafka topic, state, offsets and outputs in
// one PostgreSQL transaction, published records as outbox rows (the cluster's relay sends them to
// Kafka, as it does the runtime's). A reopened job resumes from the committed offsets and adds
// no output twice. Needs MERIDIAN_TEST_PG_URL and MERIDIAN_TEST_KAFKA_BROKERS.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { NotOwnedError, Ownership } from '../cluster/ownership.ts';
import { ValidationError } from '../errors.ts';
import { jsonValue } from '../log/index.ts';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import { parseBrokerList } from '../log/kafka/options.ts';
import { openPostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import { systemClock } from '../time.ts';
import { sum } from './aggregators.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
import { startPartitionedStreamJob } from './partitioned-job.ts';
import { callbackSink, readModelSink, topicSink } from './sinks.ts';
import { tumbling } from './windows.ts';

const pgUrl = process.env.MERIDIAN_TEST_PG_URL;
const brokersText = process.env.MERIDIAN_TEST_KAFKA_BROKERS;

describe.skipIf(!pgUrl || !brokersText)('stream job on PostgreSQL + Kafka', () => {
  const schemas = testSchemas(pgUrl ?? '', 'stream');
  const schema = schemas.next();
  const topic = `meridian-stream-${process.pid}-${randomBytes(3).toString('hex')}`;
  const log = new KafkaLog({ brokers: parseBrokerList(brokersText ?? ''), clientId: 'meridian-stream-test' });
  afterAll(async () => {
    await log.deleteTopic(topic).catch(() => undefined);
    await log.close();
    await schemas.drop(schema);
    await schemas.end();
  });

  const dataflow = () => {
    const source = fromTopic<{ key: string; n: number }>({
      topic,
      decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as { key: string; n: number },
      outOfOrdernessMs: 0,
      idleTimeoutMs: null,
    });
    const sums = source
      .keyBy((e) => e.key)
      .window(tumbling({ sizeMs: 1000 }), { late: callbackSink('late', () => undefined) })
      .aggregate(sum((e: { n: number }) => e.n));
    sums.to(
      readModelSink({
        type: 'stream-sums',
        id: (r) => `${r.key}/${r.window.startMs}`,
        state: (r) => r.value,
      }),
    );
    sums.to(
      topicSink('stream-sums', (r) => ({
        key: r.key,
        value: jsonValue(r.value),
        timestamp: r.window.endMs - 1,
      })),
    );
    return source;
  };

  it('commits window state, Kafka offsets and outbox rows together, and resumes without repeating', {
    timeout: 120_000,
  }, async () => {
    // Kept forever: with the broker's default 7-day retention, records stamped in 1970 could be
    // deleted by a retention check between the append and the read (it failed in CI that way).
    await log.createTopic(topic, { partitions: 2, retentionMs: null });
    await log.append(topic, [
      { key: 'a', value: jsonValue({ key: 'a', n: 1 }), timestamp: 100, partition: 0 },
      { key: 'b', value: jsonValue({ key: 'b', n: 2 }), timestamp: 200, partition: 1 },
      { key: 'a', value: jsonValue({ key: 'a', n: 3 }), timestamp: 1500, partition: 0 },
      { key: 'b', value: jsonValue({ key: 'b', n: 4 }), timestamp: 1600, partition: 1 },
    ]);
    const store = await openPostgresStore({ connectionString: pgUrl!, schema });
    try {
      const first = await openStreamJob({ name: 'sums', source: dataflow(), store, log });
      await first.runToEnd();
      const second = await openStreamJob({ name: 'sums', source: dataflow(), store, log });
      await second.runToEnd();
      expect(second.metrics.recordsIn).toBe(4);
      const rows = await store.read((tx) => tx.entities.list('stream-sums'));
      expect(rows.map((row) => [row.id, row.state])).toEqual([
        ['a/0', 1],
        ['b/0', 2],
      ]);
      const outbox = await store.read((tx) => tx.outbox.pending(100));
      expect(outbox.map((m) => [m.topic, new TextDecoder().decode(m.key!), m.timestamp])).toEqual([
        ['stream-sums', 'a', 999],
        ['stream-sums', 'b', 999],
      ]);
      expect(await second.lag()).toEqual([0, 0]);
    } finally {
      await store.close();
    }
  });

  it('a partitioned job refuses a commit once another node claimed its partition, then resumes exactly once', {
    timeout: 120_000,
  }, async () => {
    const fencedTopic = `${topic}-fenced`;
    await log.createTopic(fencedTopic, { partitions: 1, retentionMs: null });
    const fencedSchema = schemas.next();
    const store = await openPostgresStore({ connectionString: pgUrl!, schema: fencedSchema });
    const source = fromTopic<{ key: string; n: number }>({
      topic: fencedTopic,
      decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as { key: string; n: number },
      outOfOrdernessMs: 0,
      idleTimeoutMs: null,
    });
    source.to(topicSink('stream-fenced-out', (e) => ({ key: e.key, value: jsonValue(e.n), timestamp: 0 })));
    const append = (from: number, to: number) =>
      log.append(
        fencedTopic,
        Array.from({ length: to - from }, (_, i) => ({
          key: 'a',
          value: jsonValue({ key: 'a', n: from + i }),
          timestamp: 1,
        })),
      );
    let position = 0;
    let waiter: { at: number; resolve: () => void } | undefined;
    const reached = (at: number) =>
      new Promise<void>((resolve) => {
        if (position >= at) resolve();
        else waiter = { at, resolve };
      });
    const errors: unknown[] = [];
    const options = {
      name: 'fenced',
      node: 'a',
      firstFencingPartition: 3000,
      source,
      store,
      log,
      relay: false,
      group: `${fencedTopic}-group`,
      onPartitionCommit: (_partition: number, _event: unknown, metrics: { positions: readonly number[] }) => {
        position = metrics.positions[0]!;
        if (waiter !== undefined && position >= waiter.at) waiter.resolve();
      },
      onError: ({ error }: { error: unknown }) => void errors.push(error),
    };
    await expect(
      startPartitionedStreamJob({ ...options, firstFencingPartition: undefined as never }),
    ).rejects.toThrow(ValidationError);
    // Written before the node joins the group, so the topic's leader and metadata are settled
    // when the group assigns it (a member that joins before may see no partition until its next
    // metadata refresh).
    await append(0, 10);
    const job = await startPartitionedStreamJob(options);
    try {
      await reached(10);
      // Another node claims the partition's epoch (as after a rebalance this node missed).
      await new Ownership({ store, node: 'b', partitions: 1, clock: systemClock }).claim([3000]);
      await append(10, 20);
      // This node's next commit is refused; the group still assigns the partition here, so it
      // claims it again (a new epoch), reloads the committed state and goes on.
      await reached(20);
      expect(errors.some((error) => error instanceof NotOwnedError)).toBe(true);
      const rows = await store.read((tx) => tx.outbox.pending(1000, { partitions: [3000] }));
      expect(rows.map((row) => JSON.parse(new TextDecoder().decode(row.value!)))).toEqual(
        Array.from({ length: 20 }, (_, i) => i),
      );
    } finally {
      await job.stop();
      await store.close();
      await log.deleteTopic(fencedTopic).catch(() => undefined);
      await schemas.drop(fencedSchema);
    }
  });
});
