/**
 * Per-call overhead of Meridian's resilience policies, beside cockatiel's equivalents, in one
 * run: `npm run bench:resilience`.
 *
 * Each case awaits one policy-wrapped call at a time on an operation that returns a resolved
 * promise; its overhead is its time per call minus a bare `await` of the same operation, measured
 * in the same rounds. Cases run interleaved, round after round, and each figure is the best of
 * its rounds: on a machine shared with other work, interference only ever adds time, so the
 * fastest round is the closest to the code's own cost (the median is printed too, as a check).
 *
 * Options: --rounds N (default 15), --round-ms N (target duration of one round per case, default 40).
 */
import {
  BrokenCircuitError as CockatielBrokenCircuitError,
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  bulkhead as cockatielBulkhead,
  fallback as cockatielFallback,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  wrap as cockatielWrap,
  ExponentialBackoff,
  handleAll,
  handleWhen,
  TimeoutStrategy,
} from 'cockatiel';
import {
  aimdLimit,
  bulkhead,
  circuitBreaker,
  exponentialBackoff,
  fallback,
  gcra,
  hedge,
  isBrokenCircuitError,
  loadShedder,
  pipeline,
  rateLimit,
  retry,
  timeout,
  tokenBucket,
} from '../src/resilience/index.ts';
import { median } from './stats.ts';

interface Options {
  rounds: number;
  roundMs: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { rounds: 15, roundMs: 40 };
  for (let index = 0; index < argv.length; index += 2) {
    const value = Number(argv[index + 1]);
    if (argv[index] === '--rounds') options.rounds = value;
    else if (argv[index] === '--round-ms') options.roundMs = value;
    else throw new Error(`Unknown option ${argv[index]}`);
  }
  return options;
}

type Call = () => Promise<unknown>;

interface Case {
  name: string;
  /** Which side of the comparison: Meridian's policy, cockatiel's, or the bare baseline. */
  library: 'meridian' | 'cockatiel' | 'bare';
  call: Call;
  /** Calls per round, calibrated so a round takes about roundMs. */
  iterations: number;
  samplesNsPerCall: number[];
}

const resolved = () => Promise.resolve(1);

async function timeRound(call: Call, iterations: number, expectFailure: boolean): Promise<number> {
  const started = process.hrtime.bigint();
  if (expectFailure) {
    for (let index = 0; index < iterations; index++) {
      try {
        await call();
      } catch {
        // The open-circuit path: refusal is the expected outcome.
      }
    }
  } else {
    for (let index = 0; index < iterations; index++) await call();
  }
  return Number(process.hrtime.bigint() - started) / iterations;
}

/** Opens a breaker by failing calls through it until it refuses one. */
async function openBreaker(execute: (fn: () => Promise<unknown>) => Promise<unknown>): Promise<void> {
  for (let index = 0; index < 100; index++) {
    try {
      await execute(() => Promise.reject(new Error('down')));
    } catch (error) {
      if (isBrokenCircuitError(error) || error instanceof CockatielBrokenCircuitError) return;
    }
  }
  throw new Error('The breaker did not open');
}

const LONG_MS = 60_000;

async function buildCases(): Promise<{ groups: [string, Case[]][]; failing: Set<string> }> {
  const groups: [string, Case[]][] = [];
  const failing = new Set<string>();
  const add = (group: string, library: Case['library'], call: Call, expectFailure = false) => {
    let entry = groups.find(([name]) => name === group);
    if (entry === undefined) {
      entry = [group, []];
      groups.push(entry);
    }
    const name = `${group}/${library}`;
    if (expectFailure) failing.add(name);
    entry[1].push({ name, library, call, iterations: 0, samplesNsPerCall: [] });
  };

  add('bare await', 'bare', resolved);

  const ourRetry = retry({ maxAttempts: 3, backoff: exponentialBackoff() });
  const theirRetry = cockatielRetry(handleAll, { maxAttempts: 3, backoff: new ExponentialBackoff() });
  add('retry', 'meridian', () => ourRetry.execute(resolved));
  add('retry', 'cockatiel', () => theirRetry.execute(resolved));

  const ourBreaker = circuitBreaker({ mode: 'consecutive', failureThreshold: 5, openDurationMs: LONG_MS });
  const theirBreaker = cockatielBreaker(handleAll, {
    halfOpenAfter: LONG_MS,
    breaker: new ConsecutiveBreaker(5),
  });
  add('circuit breaker (closed)', 'meridian', () => ourBreaker.execute(resolved));
  add('circuit breaker (closed)', 'cockatiel', () => theirBreaker.execute(resolved));

  const ourOpenBreaker = circuitBreaker({
    mode: 'consecutive',
    failureThreshold: 5,
    openDurationMs: LONG_MS,
  });
  const theirOpenBreaker = cockatielBreaker(handleAll, {
    halfOpenAfter: LONG_MS,
    breaker: new ConsecutiveBreaker(5),
  });
  await openBreaker((fn) => ourOpenBreaker.execute(fn));
  await openBreaker((fn) => theirOpenBreaker.execute(fn));
  add('circuit breaker (open)', 'meridian', () => ourOpenBreaker.execute(resolved), true);
  add('circuit breaker (open)', 'cockatiel', () => theirOpenBreaker.execute(resolved), true);

  const ourBulkhead = bulkhead({ maxConcurrent: 10 });
  const theirBulkhead = cockatielBulkhead(10, 0);
  add('bulkhead', 'meridian', () => ourBulkhead.execute(resolved));
  add('bulkhead', 'cockatiel', () => theirBulkhead.execute(resolved));

  const ourCooperative = timeout({ timeoutMs: LONG_MS });
  const theirCooperative = cockatielTimeout(LONG_MS, TimeoutStrategy.Cooperative);
  add('timeout (cooperative)', 'meridian', () => ourCooperative.execute(resolved));
  add('timeout (cooperative)', 'cockatiel', () => theirCooperative.execute(resolved));

  const ourAggressive = timeout({ timeoutMs: LONG_MS, strategy: 'aggressive' });
  const theirAggressive = cockatielTimeout(LONG_MS, TimeoutStrategy.Aggressive);
  add('timeout (aggressive)', 'meridian', () => ourAggressive.execute(resolved));
  add('timeout (aggressive)', 'cockatiel', () => theirAggressive.execute(resolved));

  const ourFallback = fallback({ fallback: () => 0 });
  const theirFallback = cockatielFallback(handleAll, 0);
  add('fallback', 'meridian', () => ourFallback.execute(resolved));
  add('fallback', 'cockatiel', () => theirFallback.execute(resolved));

  // The four-policy pipeline, as a service would put it in front of a dependency. Retry does not
  // handle an open circuit in either library, so the open path measures one refusal per call.
  const ourPipeline = pipeline(
    retry({
      maxAttempts: 3,
      backoff: exponentialBackoff(),
      retryIf: (error) => !isBrokenCircuitError(error),
    }),
    circuitBreaker({ mode: 'consecutive', failureThreshold: 5, openDurationMs: LONG_MS }),
    bulkhead({ maxConcurrent: 10 }),
    timeout({ timeoutMs: LONG_MS }),
  );
  const theirPipeline = cockatielWrap(
    cockatielRetry(
      handleWhen((error) => !(error instanceof CockatielBrokenCircuitError)),
      { maxAttempts: 3, backoff: new ExponentialBackoff() },
    ),
    cockatielBreaker(handleAll, { halfOpenAfter: LONG_MS, breaker: new ConsecutiveBreaker(5) }),
    cockatielBulkhead(10, 0),
    cockatielTimeout(LONG_MS, TimeoutStrategy.Cooperative),
  );
  add('retry+breaker+bulkhead+timeout', 'meridian', () => ourPipeline.execute(resolved));
  add('retry+breaker+bulkhead+timeout', 'cockatiel', () => theirPipeline.execute(resolved));

  const ourOpenBreakerInPipeline = circuitBreaker({
    mode: 'consecutive',
    failureThreshold: 5,
    openDurationMs: LONG_MS,
  });
  const ourOpenPipeline = pipeline(
    retry({
      maxAttempts: 3,
      backoff: exponentialBackoff(),
      retryIf: (error) => !isBrokenCircuitError(error),
    }),
    ourOpenBreakerInPipeline,
    bulkhead({ maxConcurrent: 10 }),
    timeout({ timeoutMs: LONG_MS }),
  );
  const theirOpenBreakerInPipeline = cockatielBreaker(handleAll, {
    halfOpenAfter: LONG_MS,
    breaker: new ConsecutiveBreaker(5),
  });
  const theirOpenPipeline = cockatielWrap(
    cockatielRetry(
      handleWhen((error) => !(error instanceof CockatielBrokenCircuitError)),
      { maxAttempts: 3, backoff: new ExponentialBackoff() },
    ),
    theirOpenBreakerInPipeline,
    cockatielBulkhead(10, 0),
    cockatielTimeout(LONG_MS, TimeoutStrategy.Cooperative),
  );
  await openBreaker((fn) => ourOpenBreakerInPipeline.execute(fn));
  await openBreaker((fn) => theirOpenBreakerInPipeline.execute(fn));
  add('retry+breaker+bulkhead+timeout (open)', 'meridian', () => ourOpenPipeline.execute(resolved), true);
  add('retry+breaker+bulkhead+timeout (open)', 'cockatiel', () => theirOpenPipeline.execute(resolved), true);

  // Policies cockatiel does not have: measured alone, for the record.
  const ourHedge = hedge({ delayMs: LONG_MS });
  add('hedge', 'meridian', () => ourHedge.execute(resolved));
  const ourTokenBucket = rateLimit({ limiter: tokenBucket({ ratePerSecond: 1e9, burst: 1e9 }) });
  add('rate limit (token bucket)', 'meridian', () => ourTokenBucket.execute(resolved));
  const ourGcra = rateLimit({ limiter: gcra({ ratePerSecond: 1e9, burst: 1e9 }) });
  add('rate limit (GCRA)', 'meridian', () => ourGcra.execute(resolved));
  const ourShedder = loadShedder({ limit: aimdLimit({ initialLimit: 100 }) });
  add('load shedder (AIMD)', 'meridian', () => ourShedder.execute(resolved));

  return { groups, failing };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const { groups, failing } = await buildCases();
  const cases = groups.flatMap(([, entries]) => entries);
  const bare = cases[0]!;

  // Warm up every case (JIT tiers settle) and calibrate its iterations to about roundMs.
  for (const entry of cases) {
    const expectFailure = failing.has(entry.name);
    await timeRound(entry.call, 20_000, expectFailure);
    const nsPerCall = await timeRound(entry.call, 20_000, expectFailure);
    entry.iterations = Math.max(1000, Math.round((options.roundMs * 1e6) / nsPerCall));
  }
  for (let round = 0; round < options.rounds; round++) {
    for (const entry of cases) {
      entry.samplesNsPerCall.push(await timeRound(entry.call, entry.iterations, failing.has(entry.name)));
    }
  }

  const best = (entry: Case) => Math.min(...entry.samplesNsPerCall);
  const bareBestNs = best(bare);
  const bareMedianNs = median(bare.samplesNsPerCall);
  console.log(
    `resilience policy overhead per call over a bare await (${bareBestNs.toFixed(0)} ns best, ${bareMedianNs.toFixed(0)} ns median), Node ${process.version}, ${options.rounds} rounds`,
  );
  console.log(
    `${'case'.padEnd(40)}${'meridian ns'.padStart(13)}${'cockatiel ns'.padStart(14)}${'ratio'.padStart(8)}   (medians: meridian / cockatiel)`,
  );
  const overhead = (entry: Case | undefined, statistic: 'best' | 'median') => {
    if (entry === undefined) return undefined;
    return statistic === 'best' ? best(entry) - bareBestNs : median(entry.samplesNsPerCall) - bareMedianNs;
  };
  const cell = (value: number | undefined, width: number) =>
    (value === undefined ? 'n/a' : value.toFixed(0)).padStart(width);
  let pipelineNs = Number.NaN;
  let wins = 0;
  let compared = 0;
  for (const [group, entries] of groups.slice(1)) {
    const oursEntry = entries.find((entry) => entry.library === 'meridian');
    const theirsEntry = entries.find((entry) => entry.library === 'cockatiel');
    const ours = overhead(oursEntry, 'best');
    const theirs = overhead(theirsEntry, 'best');
    if (group === 'retry+breaker+bulkhead+timeout') pipelineNs = ours ?? Number.NaN;
    if (ours !== undefined && theirs !== undefined) {
      compared++;
      if (ours <= theirs) wins++;
    }
    const ratio =
      ours !== undefined && theirs !== undefined && theirs > 0
        ? `${(theirs / Math.max(ours, 1)).toFixed(1)}x`
        : '';
    const medians = `${cell(overhead(oursEntry, 'median'), 7)} / ${cell(overhead(theirsEntry, 'median'), 0)}`;
    console.log(`${group.padEnd(40)}${cell(ours, 13)}${cell(theirs, 14)}${ratio.padStart(8)}   ${medians}`);
  }
  console.log(
    `summary: meridian at or below cockatiel in ${wins}/${compared} cases; four-policy pipeline ${pipelineNs.toFixed(0)} ns per call (target <= 1000 ns)`,
  );
}

await main();
