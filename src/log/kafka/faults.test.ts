// Failure behaviour of the kafka log against real brokers: a broker killed under load loses and
// duplicates no acknowledged record for a consumer group, and a consuming process killed with
// SIGKILL hands over at exactly its last committed offset. Nodes are stopped and started through
// scripts/kafka/kafka.sh; every loop is bounded in count and time; only 127.0.0.1 is used.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { Admin } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMeridianError } from '../../errors.ts';
import { decodeString, utf8 } from '../codec.ts';
import type { Consumer, LogRecord } from '../types.ts';
import { KafkaLog } from './kafka-log.ts';
import { parseBrokerList } from './options.ts';

const cluster = process.env.MERIDIAN_TEST_KAFKA_CLUSTER;
const anyBrokers = cluster ?? process.env.MERIDIAN_TEST_KAFKA_BROKERS;
const kafkaScript = resolve(import.meta.dirname, '../../../scripts/kafka/kafka.sh');
const childScript = resolve(import.meta.dirname, 'consumer-child.fixture.ts');
const execFileAsync = promisify(execFile);

async function kafkaSh(...args: string[]): Promise<void> {
  await execFileAsync('bash', [kafkaScript, ...args], { timeout: 120_000 });
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

/** Retries what may pass (the coordinator moving after a broker died), a bounded number of times. */
async function retrying<T>(what: () => Promise<T>, attempts = 60): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await what();
    } catch (error) {
      const retryable = isMeridianError(error) && error.code === 'RETRYABLE';
      if (!retryable || attempt >= attempts) throw error;
      await sleep(250);
    }
  }
}

async function commitAll(consumer: Consumer, records: readonly LogRecord[]): Promise<void> {
  await retrying(() => consumer.commit(records));
}

// Needs the 3-node layout (`npm run kafka:cluster:start`), whose broker list the script prints as
// MERIDIAN_TEST_KAFKA_CLUSTER; without it this suite is skipped so `npm test` passes anywhere.
describe.skipIf(!cluster)(
  'kafka log on a 3-node cluster (replication factor 3, min.insync.replicas 2)',
  () => {
    const brokers = parseBrokerList(cluster ?? '');
    let log: KafkaLog;
    let stopped: string | undefined;

    beforeAll(async () => {
      // Retries outlast a leader election (broker.session.timeout.ms is 6 s in kafka.sh's cluster).
      log = new KafkaLog({ brokers, clientId: 'meridian-faults', retries: 30, retryDelayMs: 500 });
      await log.connect();
    });

    afterAll(async () => {
      // Leave the cluster whole for whatever runs next, even when the test failed midway.
      if (stopped !== undefined) await kafkaSh('start-node', stopped);
      await log?.close();
    });

    it.each([
      ['SIGKILL', ['--kill']],
      ['SIGTERM', []],
    ])(
      'a broker stopped with %s during a sustained append/consume run loses and duplicates no acknowledged record',
      async (_signal, stopArgs) => {
        const runId = randomUUID().slice(0, 8);
        const topic = `faults-broker-${runId}`;
        const group = `faults-broker-${runId}`;
        await log.createTopic(topic, { partitions: 6, replicationFactor: 3 });
        // Kill the group's coordinator: it also leads some of the topic's partitions, so producing,
        // fetching, heartbeats and commits all have to fail over.
        const admin = new Admin({ clientId: 'meridian-faults-admin', bootstrapBrokers: brokers });
        const [coordinator] = await admin.findCoordinator({ keyType: 0, keys: [group] });
        await admin.close();
        const victim = String(coordinator?.nodeId ?? 2);

        const batches = 240;
        const perBatch = 25;
        const acknowledged = new Set<string>();
        const failed = new Set<string>();
        const deliveries = new Map<string, number>();
        const lastOffset = new Map<number, number>();
        const outOfOrder: string[] = [];
        const consumer = log.consumer({ group, topics: [topic] });
        let producing = true;
        const faults: Promise<void>[] = [];
        let stoppedAtBatch: number | undefined;
        let acknowledgedWhileDown = 0;

        const produce = async () => {
          for (let batch = 0; batch < batches; batch++) {
            if (batch === 80) {
              stopped = victim;
              faults.push(
                kafkaSh('stop-node', victim, ...stopArgs).then(() => {
                  stoppedAtBatch = batch;
                }),
              );
            }
            if (batch === 160) {
              faults.push(
                Promise.all(faults).then(async () => {
                  await kafkaSh('start-node', victim);
                  stopped = undefined;
                }),
              );
            }
            const ids = Array.from({ length: perBatch }, (_, i) => `${batch}-${i}`);
            try {
              await log.append(
                topic,
                ids.map((id) => ({ key: id, value: utf8(id) })),
              );
              for (const id of ids) acknowledged.add(id);
              if (stoppedAtBatch !== undefined) acknowledgedWhileDown++;
            } catch {
              // Not acknowledged: the record may or may not be in the log, but at most once.
              for (const id of ids) failed.add(id);
            }
          }
          producing = false;
        };

        const consume = async () => {
          const deadline = Date.now() + 150_000;
          while (Date.now() < deadline) {
            let records: LogRecord[];
            try {
              records = await consumer.poll({ timeoutMs: 500 });
            } catch (error) {
              if (isMeridianError(error) && error.code === 'RETRYABLE') continue;
              throw error;
            }
            for (const record of records) {
              const id = decodeString(record) ?? '';
              deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
              const previous = lastOffset.get(record.partition) ?? -1;
              if (record.offset <= previous)
                outOfOrder.push(`${record.partition}:${record.offset} after ${previous}`);
              lastOffset.set(record.partition, record.offset);
            }
            if (records.length > 0) await commitAll(consumer, records);
            if (!producing && [...acknowledged].every((id) => deliveries.has(id))) return;
          }
        };

        await Promise.all([produce(), consume()]);
        await Promise.all(faults);
        await consumer.close();

        // The run went through the fault: most batches were acknowledged, before and after it.
        expect(acknowledged.size).toBeGreaterThan((batches * perBatch) / 2);
        expect(acknowledged.has(`${batches - 1}-0`) || failed.has(`${batches - 1}-0`)).toBe(true);
        expect(acknowledgedWhileDown, 'batches acknowledged after the broker was down').toBeGreaterThan(0);
        const lost = [...acknowledged].filter((id) => !deliveries.has(id));
        expect(lost, 'acknowledged records never delivered').toEqual([]);
        const duplicated = [...deliveries].filter(([, count]) => count > 1);
        expect(duplicated, 'records delivered more than once').toEqual([]);
        const unknown = [...deliveries.keys()].filter((id) => !acknowledged.has(id) && !failed.has(id));
        expect(unknown).toEqual([]);
        expect(outOfOrder).toEqual([]);
        // Every delivered record was committed: the group's offsets are at the ends of the partitions.
        const committed = await log.committedOffsets(group, topic);
        for (let partition = 0; partition < 6; partition++) {
          expect(committed.get(partition) ?? 0).toBe((await log.offsets(topic, partition)).end);
        }
      },
      240_000,
    );
  },
);

// Runs against the cluster when it is up, else against the single broker CI starts.
describe.skipIf(!anyBrokers)('kafka log: a consuming process killed with SIGKILL', () => {
  const brokers = parseBrokerList(anyBrokers ?? '');
  let log: KafkaLog;

  beforeAll(async () => {
    log = new KafkaLog({ brokers, clientId: 'meridian-faults', sessionTimeoutMs: 6000 });
    await log.connect();
  });

  afterAll(async () => {
    await log?.close();
  });

  it('hands its partitions over at exactly the last committed offset', async () => {
    const runId = randomUUID().slice(0, 8);
    const topic = `faults-kill-${runId}`;
    const group = `faults-kill-${runId}`;
    const partitions = 3;
    const total = 3000;
    await log.createTopic(topic, { partitions });
    for (let from = 0; from < total; from += 500) {
      await log.append(
        topic,
        Array.from({ length: 500 }, (_, i) => ({ key: `k${from + i}`, value: utf8(`v${from + i}`) })),
      );
    }

    const child = spawn(process.execPath, [childScript, brokers.join(','), topic, group, '6000'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const polledByChild = new Set<string>();
    const reported = new Map<number, number>();
    let reportedTotal = 0;
    const exited = new Promise<NodeJS.Signals | null>((done) =>
      child.once('exit', (_code, signal) => done(signal)),
    );
    const killedMidway = new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error('the child committed too little within 60 s')), 60_000);
      createInterface({ input: child.stdout }).on('line', (line) => {
        const [kind, partition, offset] = line.split(' ');
        if (kind === 'polled') polledByChild.add(`${partition}:${offset}`);
        if (kind === 'committed') {
          const p = Number(partition);
          reportedTotal += Number(offset) - (reported.get(p) ?? 0);
          reported.set(p, Number(offset));
          // Kill well before the end, in the middle of the run.
          if (reportedTotal >= 600 && child.exitCode === null && !child.killed) {
            clearTimeout(timer);
            child.kill('SIGKILL');
            done();
          }
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        done();
      });
    });
    await killedMidway;
    expect(await exited).toBe('SIGKILL');

    // What the broker holds is at least what the child saw acknowledged, and never beyond what it polled.
    const committed = await log.committedOffsets(group, topic);
    for (let partition = 0; partition < partitions; partition++) {
      const offset = committed.get(partition) ?? 0;
      expect(offset).toBeGreaterThanOrEqual(reported.get(partition) ?? 0);
      if (offset > 0) expect(polledByChild.has(`${partition}:${offset - 1}`)).toBe(true);
    }

    // The next member starts each partition exactly at the committed offset (the killed member
    // leaves the group when its 6 s session expires) and brings the rest of the log.
    const next = log.consumer({ group, topics: [topic] });
    const firstSeen = new Map<number, number>();
    const resumed = new Set<string>();
    const deadline = Date.now() + 60_000;
    const needed = () => {
      let count = 0;
      for (let partition = 0; partition < partitions; partition++) count += committed.get(partition) ?? 0;
      return total - count;
    };
    while (resumed.size < needed() && Date.now() < deadline) {
      for (const record of await next.poll({ timeoutMs: 500 })) {
        if (!firstSeen.has(record.partition)) firstSeen.set(record.partition, record.offset);
        resumed.add(`${record.partition}:${record.offset}`);
      }
    }
    await next.close();
    for (let partition = 0; partition < partitions; partition++) {
      const end = (await log.offsets(topic, partition)).end;
      const start = committed.get(partition) ?? 0;
      if (start < end) expect(firstSeen.get(partition)).toBe(start);
      // Nothing lost: every offset was processed by the child before its commit, or after by the next member.
      for (let offset = 0; offset < end; offset++) {
        const key = `${partition}:${offset}`;
        expect(offset < start ? polledByChild.has(key) : resumed.has(key), key).toBe(true);
      }
    }
  }, 120_000);
});
