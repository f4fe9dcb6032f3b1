// The replay files: trades in (`ts_ms,symbol,price,qty`), windows and late trades out.

import { ValidationError } from '../../src/index.ts';
import { centsText, maxPriceCents, maxQty, symbolPattern, type Trade, type WindowStats } from './trade.ts';

export const tradesHeader = 'ts_ms,symbol,price,qty';
export const windowsHeader = 'window_start_ms,symbol,count,volume,vwap,open,high,low,close';

const pricePattern = /^(\d{1,9})(?:\.(\d{1,2}))?$/;
const integerPattern = /^\d{1,15}$/;

function bad(lineNumber: number, what: string, line: string): never {
  throw new ValidationError(
    `Trades CSV line ${lineNumber}: ${what} (expected '${tradesHeader}', e.g. '1767623400000,AAPL,187.25,100'): '${line.slice(0, 120)}'`,
    { details: { line: lineNumber } },
  );
}

/** Parses one data line (1-based `lineNumber` for messages); a bad field is a ValidationError naming it. */
export function parseTradeLine(line: string, lineNumber: number): Trade {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  const fields = text.split(',');
  if (fields.length !== 4) bad(lineNumber, `${fields.length} fields instead of 4`, line);
  const [ts, symbol, price, qty] = fields as [string, string, string, string];
  if (!integerPattern.test(ts)) bad(lineNumber, 'ts_ms must be a non-negative integer of milliseconds', line);
  if (!symbolPattern.test(symbol)) bad(lineNumber, 'symbol must be 1-16 of A-Z 0-9 . _ -', line);
  const priceMatch = pricePattern.exec(price);
  if (priceMatch === null) bad(lineNumber, 'price must be dollars with at most two decimals', line);
  const priceCents = Number(priceMatch[1]) * 100 + Number((priceMatch[2] ?? '0').padEnd(2, '0'));
  if (priceCents > maxPriceCents) bad(lineNumber, `price must be at most ${centsText(maxPriceCents)}`, line);
  if (!integerPattern.test(qty) || Number(qty) < 1 || Number(qty) > maxQty) {
    bad(lineNumber, `qty must be an integer in [1, ${maxQty}]`, line);
  }
  return { timestampMs: Number(ts), symbol, priceCents, qty: Number(qty) };
}

export function windowLine(startMs: number, symbol: string, stats: WindowStats): string {
  return `${startMs},${symbol},${stats.count},${stats.volume},${stats.vwap},${centsText(stats.openCents)},${centsText(stats.highCents)},${centsText(stats.lowCents)},${centsText(stats.closeCents)}`;
}

export function tradeLine(trade: Trade): string {
  return `${trade.timestampMs},${trade.symbol},${centsText(trade.priceCents)},${trade.qty}`;
}
