/**
 * A group member in its own process for group-failover.test.ts, which kills it with SIGKILL. It
 * joins a group with the KafkaLog's default timeouts and reports on stdout, one line per change
 * of its assignment: `assignment <p1,p2,…>` (empty after the comma-free word when it owns none).
 * It polls until killed, or for about 120 s at most.
 *
 *   node src/log/kafka/group-member-child.fixture.ts <brokers> <topic> <group>
 */
import { KafkaLog } from './kafka-log.ts';
import { parseBrokerList } from './options.ts';

const [brokers = '', topic = '', group = ''] = process.argv.slice(2);
const log = new KafkaLog({ brokers: parseBrokerList(brokers), clientId: 'meridian-member-child' });
const consumer = log.consumer({
  group,
  topics: [topic],
  onAssignment: ({ assignment }) => {
    process.stdout.write(`assignment ${assignment.map((tp) => tp.partition).join(',')}\n`);
  },
});
// 240 polls of up to 500 ms: at most about 120 s.
for (let round = 0; round < 240; round++) await consumer.poll({ timeoutMs: 500 });
await consumer.close();
await log.close();
