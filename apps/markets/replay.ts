// `markets replay`: trades from a CSV file through the 5 s windows into canonical CSV files, so the
// results can be compared with another engine's (the Flink job in the shared bench folder).

import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ValidationError } from '../../src/index.ts';
import { SqliteLog } from '../../src/log/index.ts';
import { SqliteDatabase, SqliteStore } from '../../src/store/index.ts';
import { callbackSink, openStreamJob, type WindowResult } from '../../src/stream/index.ts';
import { parseTradeLine, tradeLine, tradesHeader, windowLine, windowsHeader } from './csv.ts';
import { encodeTrade, type Trade, type WindowStats } from './trade.ts';
import { windowsDataflow } from './windows-job.ts';

export interface ReplayOptions {
  readonly input: string;
  readonly output: string;
  readonly lateOutput: string;
  readonly disorderMs: number;
  readonly allowedLatenessMs: number;
}

export interface ReplaySummary {
  readonly trades: number;
  readonly windows: number;
  readonly late: number;
}

const appendBatch = 5000;

/** Appends the CSV's trades, in file order, to one partition of `topic` (so input order is file order). */
async function ingest(path: string, log: SqliteLog, topic: string): Promise<number> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;
  let batch = [];
  let trades = 0;
  for await (const line of lines) {
    lineNumber++;
    if (lineNumber === 1) {
      if (line.replace(/\r$/, '') !== tradesHeader) {
        throw new ValidationError(
          `Trades CSV '${path}' must start with the header '${tradesHeader}': found '${line.slice(0, 80)}'`,
        );
      }
      continue;
    }
    if (line.length === 0) continue;
    batch.push(encodeTrade(parseTradeLine(line, lineNumber)));
    if (batch.length === appendBatch) {
      await log.append(topic, batch);
      trades += batch.length;
      batch = [];
    }
  }
  if (lineNumber === 0)
    throw new ValidationError(`Trades CSV '${path}' is empty: it needs the header '${tradesHeader}'`);
  if (batch.length > 0) await log.append(topic, batch);
  return trades + batch.length;
}

/**
 * Runs the replay in a scratch SQLite database: the trades go into a topic, the windows job reads
 * it to its end with the exactly-once commit path, and the final result of each window (the last
 * update, with allowed lateness) and every late trade are written sorted.
 */
export async function replay(options: ReplayOptions): Promise<ReplaySummary> {
  const directory = await mkdtemp(join(tmpdir(), 'markets-replay-'));
  const database = new SqliteDatabase({ path: join(directory, 'replay.db') });
  const store = new SqliteStore({ database });
  const log = new SqliteLog(database, { retentionCheckIntervalMs: null });
  try {
    await log.createTopic('trades', { partitions: 1, retentionMs: null });
    const trades = await ingest(options.input, log, 'trades');
    const windows = new Map<string, [number, string, WindowStats]>();
    const late: Trade[] = [];
    const source = windowsDataflow({
      topic: 'trades',
      outOfOrdernessMs: options.disorderMs,
      allowedLatenessMs: options.allowedLatenessMs,
      idleTimeoutMs: null,
      windows: [
        callbackSink<WindowResult<WindowStats>>('replay-windows', (results) => {
          for (const r of results)
            windows.set(`${r.window.startMs}|${r.key}`, [r.window.startMs, r.key, r.value]);
        }),
      ],
      late: callbackSink<Trade>('replay-late', (trades) => {
        late.push(...trades);
      }),
    });
    const job = await openStreamJob({ name: 'markets-replay', source, store, log, maxRecordsPerRead: 5000 });
    await job.runToEnd({ finish: true });
    await writeOutputs(options, [...windows.values()], late);
    return { trades, windows: windows.size, late: late.length };
  } finally {
    await log.close();
    await store.close();
    database.close();
    await rm(directory, { recursive: true, force: true });
  }
}

async function writeOutputs(
  options: ReplayOptions,
  windows: Array<[number, string, WindowStats]>,
  late: Trade[],
): Promise<void> {
  windows.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const windowLines = windows.map(([startMs, symbol, stats]) => windowLine(startMs, symbol, stats));
  const lateLines = late.map(tradeLine);
  lateLines.sort((a, b) => {
    const byTime = Number(a.slice(0, a.indexOf(','))) - Number(b.slice(0, b.indexOf(',')));
    return byTime !== 0 ? byTime : a < b ? -1 : a > b ? 1 : 0;
  });
  await writeFile(options.output, `${[windowsHeader, ...windowLines].join('\n')}\n`);
  await writeFile(options.lateOutput, `${[tradesHeader, ...lateLines].join('\n')}\n`);
}
