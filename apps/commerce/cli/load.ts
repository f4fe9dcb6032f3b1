// `commerce load`: an open-loop load generator against a running commerce gateway.

import { type CommandOutput, consoleOutput } from '../../../src/cli/index.ts';
import { isMeridianError } from '../../../src/index.ts';
import {
  type LatencySummary,
  LoadGenerator,
  type LoadProgress,
  LoadSetupError,
  type LoadSummary,
} from './load-generator.ts';
import { LOAD_USAGE, type LoadOptions, parseLoadOptions } from './load-options.ts';

export function formatProgress(progress: LoadProgress): string {
  return [
    `[${progress.phase === 'warm-up' ? 'warm-up ' : ''}${progress.elapsedSeconds.toFixed(1).padStart(6)}s]`,
    `offered ${progress.offered}`,
    `achieved ${progress.acceptedLastSecond}/s`,
    `accepted ${progress.accepted}`,
    `completed ${progress.completed}`,
    `in-flight ${progress.inFlight}`,
    `not-sent ${progress.notSentOnTime}`,
    `errors ${progress.errors}`,
  ].join('  ');
}

function formatLatency(label: string, latency: LatencySummary): string {
  if (latency.count === 0) return `${label.padEnd(22)} (no samples)`;
  const ms = (value: number) => `${value.toFixed(1)} ms`;
  return `${label.padEnd(22)} p50 ${ms(latency.p50Ms)}  p90 ${ms(latency.p90Ms)}  p99 ${ms(latency.p99Ms)}  max ${ms(latency.maxMs)}  (n=${latency.count})`;
}

export function formatSummary(summary: LoadSummary): string[] {
  const errors = Object.entries(summary.errorsByKind);
  return [
    `Summary (${summary.durationSeconds} s against ${summary.url}${summary.warmupSeconds > 0 ? `, after ${summary.warmupSeconds} s of warm-up not counted` : ''})`,
    `  offered    ${summary.offered} orders (${summary.offeredPerSecond}/s)`,
    `  sent       ${summary.sent}  not sent on time (concurrency limit) ${summary.notSentOnTime}`,
    `  accepted   ${summary.accepted} (${summary.acceptedPerSecond}/s)`,
    `  completed  ${summary.completed} (${summary.completedPerSecond}/s): confirmed ${summary.confirmed}, cancelled ${summary.cancelled}, unfinished ${summary.unfinished}`,
    `  ${formatLatency('latency to 202', summary.latencyToAccepted)}`,
    `  ${formatLatency('latency to terminal', summary.latencyToTerminal)} (watched by ${summary.watchedBy})`,
    `  errors     ${errors.length === 0 ? 'none' : errors.map(([kind, count]) => `${kind} ${count}`).join(', ')}`,
  ];
}

function describeRun(options: LoadOptions): string {
  const warmup = options.warmupSeconds > 0 ? ` after ${options.warmupSeconds} s of warm-up` : '';
  return `commerce load: ${options.ratePerSecond} orders/s for ${options.durationSeconds} s${warmup} against ${options.url} (${options.skus} SKUs × ${options.stock} units, concurrency ${options.concurrency}, seed ${options.seed})`;
}

/**
 * Runs `commerce load`. Exit codes: 0 when the run completed (errors are reported, not fatal),
 * 1 when the inventory setup failed, 2 for invalid options. Ctrl-C stops offering, waits for
 * the orders in flight (bounded by the terminal timeout) and prints the summary.
 */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: LoadOptions | 'help';
  try {
    options = parseLoadOptions(argv, process.env);
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`commerce load: ${error.message}\n\n${LOAD_USAGE}`);
    return 2;
  }
  if (options === 'help') {
    output.out(LOAD_USAGE);
    return 0;
  }
  const selected = options;
  const log = (line: string) => (selected.json ? output.err(line) : output.out(line));
  log(describeRun(selected));
  const generator = new LoadGenerator(selected, { progress: (progress) => log(formatProgress(progress)) });
  const stop = new AbortController();
  const onSigint = () => {
    log('Stopping: waiting for the orders in flight...');
    stop.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    if (!selected.skipSetup) {
      try {
        await generator.setup();
      } catch (error) {
        if (!(error instanceof LoadSetupError)) throw error;
        output.err(`commerce load: ${error.message}`);
        return 1;
      }
    }
    const summary = await generator.run(stop.signal);
    if (selected.json) output.out(JSON.stringify(summary));
    else for (const line of formatSummary(summary)) output.out(line);
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    generator.close();
  }
}
