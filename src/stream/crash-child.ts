// The process the stream crash test SIGKILLs: runs a windows job over a prepared database to the
// end of its input, printing a line after each commit. Usage: crash-child.ts <db path>
import { jsonValue } from '../log/index.ts';
import { count, first, last, sum } from './aggregators.ts';
import { fromTopic } from './dataflow.ts';
import { openStreamJob } from './job.ts';
import { readModelSink, topicSink } from './sinks.ts';
import { openEmbeddedAt } from './stream.fixture.ts';
import { tableFromTopic } from './table.ts';
import { sliding, tumbling } from './windows.ts';

export interface CrashEvent {
  readonly key: string;
  readonly n: number;
}

export const inputTopic = 'crash-in';
/** A changelog of reference rows per key, which the input is joined with. */
export const tableTopic = 'crash-ref';
export const outputTopics = ['crash-sums', 'crash-moving', 'crash-late', 'crash-joined'] as const;

/** Windowed aggregations and a table join fanned out from one input, to topics and a read model. */
export function crashDataflow() {
  const source = fromTopic<CrashEvent>({
    topic: inputTopic,
    decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as CrashEvent,
    outOfOrdernessMs: 300,
    idleTimeoutMs: null,
  });
  const late = topicSink<CrashEvent>('crash-late', (e) => ({
    key: e.key,
    value: jsonValue(e),
    timestamp: 0,
  }));
  const keyed = source.keyBy((e) => e.key);
  const reference = tableFromTopic<number>({
    topic: tableTopic,
    decode: (record) => JSON.parse(new TextDecoder().decode(record.value!)) as number,
    historyRetentionMs: 5000,
  });
  keyed
    .leftJoin(reference, (e, row) => [e.key, e.n, row])
    .to(
      topicSink('crash-joined', (joined) => ({
        key: joined[0] as string,
        value: jsonValue(joined),
        timestamp: 0,
      })),
    );
  const sums = keyed
    .window(tumbling({ sizeMs: 1000 }), { allowedLatenessMs: 200, late })
    .aggregate(sum((e: CrashEvent) => e.n));
  sums.to(
    topicSink('crash-sums', (r) => ({
      key: r.key,
      value: jsonValue([r.window.startMs, r.value, r.update]),
      timestamp: r.window.endMs - 1,
    })),
  );
  sums.to(
    readModelSink({
      type: 'crash-sums',
      id: (r) => `${r.key}/${String(r.window.startMs).padStart(12, '0')}`,
      state: (r) => r.value,
    }),
  );
  const ends = keyed
    .window(sliding({ sizeMs: 3000, slideMs: 1000 }), { late })
    .aggregate(last((e: CrashEvent) => e.n));
  ends.to(
    topicSink('crash-moving', (r) => ({
      key: r.key,
      value: jsonValue([r.window.startMs, r.value]),
      timestamp: r.window.endMs - 1,
    })),
  );
  const firsts = keyed.window(tumbling({ sizeMs: 2000 }), { late }).aggregate(first((e: CrashEvent) => e.n));
  const counts = keyed.window(tumbling({ sizeMs: 2000 }), { late }).aggregate(count());
  firsts.to(
    topicSink('crash-moving', (r) => ({
      key: r.key,
      value: jsonValue(['first', r.window.startMs, r.value]),
      timestamp: r.window.endMs - 1,
    })),
  );
  counts.to(
    topicSink('crash-moving', (r) => ({
      key: r.key,
      value: jsonValue(['count', r.window.startMs, r.value]),
      timestamp: r.window.endMs - 1,
    })),
  );
  return source;
}

if (import.meta.main) {
  const [path] = process.argv.slice(2);
  const db = openEmbeddedAt(path!);
  const job = await openStreamJob({
    name: 'crash',
    source: crashDataflow(),
    store: db.store,
    log: db.log,
    maxRecordsPerRead: 37,
    maxRecordsPerTransaction: 200,
    onCommit: (event) => process.stdout.write(`committed ${event.records}\n`),
  });
  await job.runToEnd({ finish: true });
  await db.close();
  process.stdout.write('done\n');
}
