// The stream job on the cluster shape: input from a Kafka topic, state, offsets and outputs in
// one PostgreSQL transaction, published records as outbox rows (the cluster's relay sends them to
// Kafka, as it does the runtime's). A reopened job resumes from the committed offsets and adds
// no output twice. Needs MERIDIAN_TEST_PG_URL and MERIDIAN_TEST_KAFKA_BROKERS.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonValue } from '../log/index.ts';
import { KafkaLog } from '../log/kafka/kafka-log.ts';
import { parseBrokerList } from '../log/kafka/options.ts';
import { openPostgresStore } from '../store/postgres/store.ts';
import { testSchemas } from '../store/postgres/test-schema.ts';
import { sum } from './aggregators.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
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
    await log.createTopic(topic, { partitions: 2 });
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
});
