// The log contract, unchanged, against a real Apache Kafka broker: what passes here behaves as the
// SQLite log does. Start one with `npm run kafka:start` (scripts/kafka/kafka.sh).
import { describe } from 'vitest';
import { describeLogContract } from '../contract.ts';
import { KafkaLog } from './kafka-log.ts';
import { parseBrokerList } from './options.ts';

const brokers = process.env.MERIDIAN_TEST_KAFKA_BROKERS;

// Skipped without a broker, so `npm test` passes on a fresh machine; CI starts one and sets
// MERIDIAN_TEST_KAFKA_BROKERS so these cases really run.
describe.skipIf(!brokers)('kafka log', () => {
  describeLogContract('kafka', async () => {
    const log = new KafkaLog({ brokers: parseBrokerList(brokers ?? ''), clientId: 'meridian-contract' });
    await log.connect();
    return log;
  });
});
