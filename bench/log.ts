/**
 * Log benchmark: append and consume throughput, one line per case.
 *
 *   npm run bench:log                      # the embedded SQLite log
 *   npm run bench:log -- --backend kafka   # a backend registered in `backends` below
 *
 * Each case appends keyless records (Kafka's producer-perf-test does the same) of a fixed value
 * size to a fresh 4-partition topic in batches, awaiting each append before the next (so
 * "batch 1" measures one durable commit per record), then consumes all of them with one consumer
 * group member (default maxPollRecords 500). Figures are records per second of wall time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Log } from '../src/log/index.ts';
import { openSqliteLog } from '../src/log/index.ts';
import { KafkaLog, parseBrokerList } from '../src/log/kafka/index.ts';

/** One backend under test: how to open a fresh log for a case, and which durability settings it has. */
interface BenchBackend {
  readonly name: string;
  /** Durability settings to run, in order; the first is the backend's default. */
  readonly durabilities: readonly string[];
  open(durability: string): Promise<Log>;
  /** Removes what the cases left behind (files, topics). */
  cleanup(): Promise<void>;
}

interface BenchCase {
  durability: string;
  valueBytes: number;
  batchRecords: number;
  records: number;
}

/** Backends by `--backend` name. Add one by returning a BenchBackend (e.g. a KafkaLog factory). */
const backends: Record<string, () => Promise<BenchBackend>> = {
  sqlite: async () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-bench-log-'));
    let sequence = 0;
    return {
      name: 'sqlite',
      durabilities: ['process', 'fsync'],
      open: async (durability) =>
        openSqliteLog({
          path: join(directory, `bench-${++sequence}.db`),
          durability: durability as 'process' | 'fsync',
          retentionCheckIntervalMs: null,
        }),
      cleanup: async () => rmSync(directory, { recursive: true, force: true }),
    };
  },
  kafka: async () => {
    // A running broker: `npm run kafka:start`. The producer is idempotent with acks=all, the
    // only setting the kafka backend has (what it survives is the replication, not an fsync).
    const brokers = parseBrokerList(process.env.MERIDIAN_TEST_KAFKA_BROKERS ?? '127.0.0.1:9092');
    const open = async () => {
      const log = new KafkaLog({ brokers, clientId: 'meridian-bench' });
      await log.connect();
      return log;
    };
    // The cases' topic names are fixed: drop those of an earlier run, whose records would
    // otherwise reach this run's consumers.
    const dropBenchTopics = async () => {
      const log = await open();
      for (const topic of await log.listTopics()) {
        if (topic === 'warmup' || /^bench-\d+$/.test(topic)) await log.deleteTopic(topic);
      }
      await log.close();
    };
    await dropBenchTopics();
    return { name: 'kafka', durabilities: ['acks=all'], open, cleanup: dropBenchTopics };
  },
};

/**
 * Record counts per case: large enough for a stable rate, small enough that the whole run stays
 * under a minute. A batch-1 append is one commit; with fsync that is one disk flush per record.
 */
function casesFor(durabilities: readonly string[]): BenchCase[] {
  const cases: BenchCase[] = [];
  for (const durability of durabilities) {
    const flushes = durability === 'fsync';
    for (const valueBytes of [100, 1024]) {
      for (const batchRecords of [1, 100]) {
        let records: number;
        if (batchRecords === 1) records = flushes ? 3_000 : 30_000;
        else if (flushes) records = valueBytes === 100 ? 100_000 : 50_000;
        else records = valueBytes === 100 ? 200_000 : 100_000;
        cases.push({ durability, valueBytes, batchRecords, records });
      }
    }
  }
  return cases;
}

async function runCase(backend: BenchBackend, benchCase: BenchCase, topic: string) {
  const log = await backend.open(benchCase.durability);
  try {
    await log.createTopic(topic, { partitions: 4, retentionMs: null });
    const value = new Uint8Array(benchCase.valueBytes).fill(42);
    const batch = Array.from({ length: benchCase.batchRecords }, () => ({ value }));
    const appends = benchCase.records / benchCase.batchRecords;
    const appendStart = performance.now();
    for (let i = 0; i < appends; i++) await log.append(topic, batch);
    const appendSeconds = (performance.now() - appendStart) / 1000;

    const consumer = log.consumer({ group: `bench-${topic}`, topics: [topic] });
    let consumed = 0;
    const consumeStart = performance.now();
    while (consumed < benchCase.records) {
      const records = await consumer.poll({ timeoutMs: 5000 });
      if (records.length === 0) throw new Error(`consumed only ${consumed} of ${benchCase.records} records`);
      consumed += records.length;
    }
    const consumeSeconds = (performance.now() - consumeStart) / 1000;
    await consumer.close();
    return {
      appendPerSecond: benchCase.records / appendSeconds,
      consumePerSecond: consumed / consumeSeconds,
      appendMegabytesPerSecond: (benchCase.records * benchCase.valueBytes) / appendSeconds / 1e6,
    };
  } finally {
    await log.close();
  }
}

function parseBackend(argv: readonly string[]): string {
  const index = argv.indexOf('--backend');
  if (index < 0) return 'sqlite';
  const name = argv[index + 1];
  if (name === undefined || !(name in backends)) {
    throw new Error(`--backend must be one of ${Object.keys(backends).join(', ')}: current value is ${name}`);
  }
  return name;
}

const rate = (value: number) => Math.round(value).toLocaleString('en-US').padStart(10);

async function main(): Promise<void> {
  const backend = await backends[parseBackend(process.argv.slice(2))]!();
  try {
    const [load1] = loadavg();
    console.log(
      `# log benchmark · backend ${backend.name} · node ${process.version} · ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}) · load ${load1?.toFixed(2)} · ${new Date().toISOString()}`,
    );
    // Warm the JIT and the file system so the first case is not penalised.
    await runCase(
      backend,
      { durability: backend.durabilities[0]!, valueBytes: 100, batchRecords: 100, records: 20_000 },
      'warmup',
    );
    let sequence = 0;
    for (const benchCase of casesFor(backend.durabilities)) {
      const result = await runCase(backend, benchCase, `bench-${++sequence}`);
      console.log(
        [
          `log ${backend.name}`,
          `durability=${benchCase.durability.padEnd(7)}`,
          `value=${String(benchCase.valueBytes).padStart(4)}B`,
          `batch=${String(benchCase.batchRecords).padStart(3)}`,
          `records=${String(benchCase.records).padStart(6)}`,
          `append=${rate(result.appendPerSecond)} rec/s (${result.appendMegabytesPerSecond.toFixed(1).padStart(5)} MB/s)`,
          `consume=${rate(result.consumePerSecond)} rec/s`,
        ].join('  '),
      );
    }
  } finally {
    await backend.cleanup();
  }
}

try {
  await main();
} catch (error) {
  console.error(`bench:log failed: ${(error as Error).message}`);
  process.exitCode = 1;
}
