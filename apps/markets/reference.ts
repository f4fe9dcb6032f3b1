// Per-symbol reference data (sector, tick size) as a changelog topic keyed by symbol, and the
// table the analytics job joins trades' windows and alerts with. A row is valid from its record's
// event time on: a window or alert meets the row valid at its own event time.

import { ValidationError } from '../../src/index.ts';
import { jsonValue, type LogRecord, type ProducerRecord } from '../../src/log/index.ts';
import { type Sink, type Table, tableFromTopic } from '../../src/stream/index.ts';
import { symbolPattern } from './trade.ts';

export type SymbolInfo = {
  readonly sector: string;
  /** The smallest price step, in cents. */
  readonly tickSizeCents: number;
};

const sectorPattern = /^[A-Za-z][A-Za-z &-]{0,31}$/;
const maxTickSizeCents = 100_000;

/** Validates reference data from outside (HTTP): the symbol, a sector name and a tick size like "0.01". */
export function parseSymbolInfo(symbol: string, body: unknown): SymbolInfo {
  if (!symbolPattern.test(symbol))
    throw new ValidationError(`Symbol '${symbol.slice(0, 32)}' must match ${symbolPattern}`);
  const input = body as { sector?: unknown; tickSize?: unknown } | null;
  if (typeof input?.sector !== 'string' || !sectorPattern.test(input.sector)) {
    throw new ValidationError(
      `'sector' must be 1-32 letters, spaces, '&' or '-', starting with a letter: current value is ${JSON.stringify(input?.sector ?? null).slice(0, 40)}`,
    );
  }
  const tick = typeof input.tickSize === 'string' ? /^(\d{1,4})\.(\d{2})$/.exec(input.tickSize) : null;
  const tickSizeCents = tick === null ? 0 : Number(tick[1]) * 100 + Number(tick[2]);
  if (tickSizeCents < 1 || tickSizeCents > maxTickSizeCents) {
    throw new ValidationError(
      `'tickSize' must be dollars with two decimals from "0.01" to "1000.00": current value is ${JSON.stringify(input.tickSize ?? null).slice(0, 40)}`,
    );
  }
  return { sector: input.sector, tickSizeCents };
}

export function encodeSymbolInfo(symbol: string, info: SymbolInfo, validFromMs: number): ProducerRecord {
  return { key: symbol, value: jsonValue({ ...info }), timestamp: validFromMs };
}

function decodeSymbolInfo(record: LogRecord): SymbolInfo {
  const info = JSON.parse(new TextDecoder().decode(record.value!)) as SymbolInfo;
  if (typeof info.sector !== 'string' || !Number.isSafeInteger(info.tickSizeCents))
    throw new ValidationError('A reference record needs {sector, tickSizeCents}');
  return { sector: info.sector, tickSizeCents: info.tickSizeCents };
}

/** The reference table over `topic`; a record it cannot read goes to `invalid` rather than stopping the job. */
export function referenceTable(topic: string, invalid: Sink<LogRecord>): Table<SymbolInfo> {
  return tableFromTopic({ topic, decode: decodeSymbolInfo, invalid });
}

const sectors = ['Technology', 'Energy', 'Banks', 'Health Care', 'Utilities', 'Retail', 'Industrials'];

/** Seeded reference rows for the generator's symbols, valid from the start of time. */
export function generatedReference(symbols: readonly string[]): ProducerRecord[] {
  return symbols.map((symbol, index) =>
    encodeSymbolInfo(
      symbol,
      { sector: sectors[index % sectors.length]!, tickSizeCents: index % 5 === 0 ? 5 : 1 },
      0,
    ),
  );
}
