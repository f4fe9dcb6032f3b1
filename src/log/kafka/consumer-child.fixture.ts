/**
 * A consuming process for faults.test.ts, which kills it with SIGKILL mid-run. It consumes a
 * topic as a member of a group and reports on stdout, one line each:
 *   `polled <partition> <offset>` for every record it received, before committing them;
 *   `committed <partition> <offset>` after a commit of that next offset was acknowledged.
 * It commits after every poll and runs until killed or until `idleLimit` empty polls in a row.
 *
 *   node src/log/kafka/consumer-child.fixture.ts <brokers> <topic> <group> <sessionTimeoutMs>
 */
import { KafkaLog } from './kafka-log.ts';
import { parseBrokerList } from './options.ts';

const [brokers = '', topic = '', group = '', sessionTimeoutText = '6000'] = process.argv.slice(2);
const idleLimit = 100;
const log = new KafkaLog({
  brokers: parseBrokerList(brokers),
  clientId: 'meridian-fault-child',
  sessionTimeoutMs: Number(sessionTimeoutText),
});
const consumer = log.consumer({ group, topics: [topic], maxPollRecords: 50 });
const write = (line: string) => process.stdout.write(`${line}\n`);
write('started');
for (let idle = 0; idle < idleLimit; ) {
  const records = await consumer.poll({ timeoutMs: 200 });
  idle = records.length === 0 ? idle + 1 : 0;
  if (records.length === 0) continue;
  for (const record of records) write(`polled ${record.partition} ${record.offset}`);
  await consumer.commit(records);
  const next = new Map<number, number>();
  for (const record of records) next.set(record.partition, record.offset + 1);
  for (const [partition, offset] of next) write(`committed ${partition} ${offset}`);
}
await consumer.close();
await log.close();
