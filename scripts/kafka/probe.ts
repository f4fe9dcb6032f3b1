// Readiness probe for scripts/kafka/kafka.sh: an open port only says the JVM listens; a metadata
// request listing every expected broker says the cluster can serve clients. Exits 0 when it does
// within the time limit, 1 otherwise.
//
//   node scripts/kafka/probe.ts <brokers: host:port,...> <expected broker count> <timeout ms>

import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '@platformatic/kafka';

const [brokers = '', expectedText = '1', timeoutText = '30000'] = process.argv.slice(2);
const expected = Number(expectedText);
const deadline = Date.now() + Number(timeoutText);
let lastProblem = 'no answer yet';

while (Date.now() < deadline) {
  const admin = new Admin({
    clientId: 'meridian-kafka-probe',
    bootstrapBrokers: brokers.split(','),
    timeout: 5000,
    retries: 0,
  });
  try {
    const metadata = await admin.metadata({ topics: [], forceUpdate: true });
    if (metadata.brokers.size >= expected) {
      await admin.close();
      process.exit(0);
    }
    lastProblem = `${metadata.brokers.size} of ${expected} brokers registered`;
  } catch (error) {
    lastProblem = error instanceof Error ? error.message : String(error);
  }
  await admin.close().catch(() => {});
  await sleep(500);
}
console.error(`[kafka] probe: ${lastProblem}`);
process.exit(1);
