// How a stream job's commit publishes the records its sinks produced, inside its transaction.
import type { Log, ProducerRecord } from '../log/types.ts';
import type { Store } from '../store/types.ts';
import type { SinkScope } from './sinks.ts';

/** Records one append call takes at most. */
const maxRecordsPerAppend = 5000;
const keyEncoder = new TextEncoder();

/**
 * Publishes a commit's records: on SQLite an append that joins the open transaction (the log
 * shares the store's database); on PostgreSQL outbox rows in it, which the cluster's relay
 * publishes to Kafka (idempotent producer), as the runtime's own outputs are.
 */
export async function publishAll(
  log: Log,
  store: Store,
  tx: SinkScope['tx'],
  outgoing: Map<string, ProducerRecord[]>,
  partition: number,
): Promise<void> {
  for (const [topic, records] of outgoing) {
    if (store.dialect === 'sqlite') {
      for (let from = 0; from < records.length; from += maxRecordsPerAppend) {
        await log.append(topic, records.slice(from, from + maxRecordsPerAppend));
      }
      continue;
    }
    for (let from = 0; from < records.length; from += 1000) {
      await tx.outbox.add(
        records.slice(from, from + 1000).map((record) => ({
          topic,
          key: typeof record.key === 'string' ? keyEncoder.encode(record.key) : (record.key ?? null),
          value: record.value,
          headers: record.headers ?? {},
          timestamp: record.timestamp ?? 0,
          partition,
        })),
      );
    }
  }
}
