/**
 * The `kafka` backend of the log: the same contract as the SQLite log, on Apache Kafka through
 * @platformatic/kafka, which is loaded only when a KafkaLog is first used. See docs/kafka.md.
 */
export { createKafkaLog, KafkaLog } from './kafka-log.ts';
export { type KafkaLogOptions, parseBrokerList } from './options.ts';
