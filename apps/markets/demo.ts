// `markets demo` (the default): the live app with the seeded generator, printing windows as they close.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseCommandLine } from '../../src/cli/index.ts';
import { type DevelopmentAuth, developmentAuth } from '../../src/http/index.ts';
import { ValidationError } from '../../src/index.ts';
import { MARKETS_READ_SCOPE } from './http-api.ts';
import { startMarkets } from './markets.ts';
import { centsText } from './trade.ts';
import { MARKETS_USAGE } from './usage.ts';

/** An integer command-line option in [min, max], or `fallback` when absent; a ValidationError names a bad one. */
export function integer(
  option: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new ValidationError(
      `'--${option}' must be an integer in [${min}, ${max}]: current value is '${text.slice(0, 32)}'`,
    );
  }
  return Number(text);
}

/** What the demo prints about credentials: development tokens, or a loud warning with --auth off. */
async function authLines(devAuth: DevelopmentAuth | undefined, url: string): Promise<string[]> {
  if (devAuth === undefined) {
    return [
      '  !!! WARNING: --auth off: every caller is an operator. Anyone who can reach this port can',
      '  !!! post trades and change reference data. Local experiments only.',
    ];
  }
  const operator = await devAuth.issue('demo-operator', 'operator');
  const reader = await devAuth.issue('demo-reader', 'customer', { scopes: [MARKETS_READ_SCOPE] });
  return [
    `  auth     development tokens (24 h), signed with ${devAuth.secretPath}:`,
    `    operator (reads, POST trades, PUT reference)  export TOKEN=${operator}`,
    `    reader   (markets:read)                       export READER=${reader}`,
    `  e.g.     curl -s -H "authorization: Bearer $READER" ${url}/markets/movers`,
  ];
}

export async function runDemo(argv: string[]): Promise<number> {
  const values = parseCommandLine('markets', argv, {
    port: { type: 'string' },
    dir: { type: 'string' },
    rate: { type: 'string' },
    seed: { type: 'string' },
    symbols: { type: 'string' },
    'disorder-ms': { type: 'string' },
    auth: { type: 'string' },
  });
  if (values === 'help') {
    console.log(MARKETS_USAGE);
    return 0;
  }
  if (values.auth !== undefined && values.auth !== 'on' && values.auth !== 'off') {
    throw new ValidationError(
      `'--auth' must be 'on' or 'off': current value is '${values.auth.slice(0, 16)}'`,
    );
  }
  const directory = resolve(values.dir ?? '.meridian/markets');
  mkdirSync(directory, { recursive: true });
  const devAuth = values.auth === 'off' ? undefined : developmentAuth(directory);
  const markets = await startMarkets({
    path: join(directory, 'markets.db'),
    auth: devAuth?.auth ?? false,
    port: integer('port', values.port, 7090, 0, 65_535),
    ratePerSecond: integer('rate', values.rate, 2000, 0, 200_000),
    seed: integer('seed', values.seed, 42, 0, 2 ** 31),
    symbols: integer('symbols', values.symbols, 50, 1, 5000),
    disorderMs: integer('disorder-ms', values['disorder-ms'], 2000, 0, 60_000),
    onWindows: (windows) => {
      const hottest = [...windows].sort((a, b) => b.count - a.count).slice(0, 3);
      for (const w of hottest) {
        console.log(
          `${new Date(w.startMs).toISOString().slice(11, 19)} ${w.symbol.padEnd(8)} n=${String(w.count).padStart(5)} vol=${String(w.volume).padStart(8)} vwap=${w.vwap} o/h/l/c=${centsText(w.openCents)}/${centsText(w.highCents)}/${centsText(w.lowCents)}/${centsText(w.closeCents)}`,
        );
      }
      if (windows.length > 0) console.log(`  (${windows.length} windows closed)`);
    },
  });
  console.log(
    `markets: serving ${markets.url} (GET /markets/movers, /markets/symbols/SYM0001/latest, /markets/stream; OpenAPI at /openapi.json) — Ctrl-C stops`,
  );
  for (const line of await authLines(devAuth, markets.url)) console.log(line);
  if (devAuth === undefined) console.error('markets: WARNING: authentication is off (--auth off)');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await markets.stop();
  const metrics = markets.job.metrics;
  console.log(
    `markets: stopped after ${metrics.recordsIn} trades, ${metrics.lateRecords} late, ${metrics.transactions} commits`,
  );
  return 0;
}
