/**
 * Loads the Kafka client (@platformatic/kafka) on first use. The embedded shape never touches
 * Kafka, so importing Meridian must not load (or require installing) the client: only a KafkaLog
 * that is actually used calls this.
 */
export type KafkaClientModule = typeof import('@platformatic/kafka');

let loading: Promise<KafkaClientModule> | undefined;

export function loadKafkaClient(): Promise<KafkaClientModule> {
  loading ??= import('@platformatic/kafka');
  return loading;
}
