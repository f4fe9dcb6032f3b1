// A trade, its bytes in the log, and the 5-second window's statistics (count, volume, VWAP, OHLC).

import { ValidationError } from '../../src/index.ts';
import type { LogRecord, ProducerRecord } from '../../src/log/index.ts';
import { aggregator } from '../../src/stream/index.ts';

export interface Trade {
  readonly symbol: string;
  /** Price in integer cents (two decimals exactly). */
  readonly priceCents: number;
  readonly qty: number;
  readonly timestampMs: number;
}

/** Symbols: 1-16 upper-case letters, digits, '.', '-' or '_'. */
export const symbolPattern = /^[A-Z0-9._-]{1,16}$/;
/** A price at most a billion dollars and a quantity at most a billion keep every window sum exact. */
export const maxPriceCents = 100_000_000_000;
export const maxQty = 1_000_000_000;

const valueBytes = 12;

/**
 * Key: the symbol (so a symbol's trades share a partition); value: price in cents as two
 * little-endian u32 (low, high) and qty as a u32. Read byte by byte: a record's value sits at any
 * offset of the log's batch buffer, where a typed array view would need alignment.
 */
export function encodeTrade(trade: Trade): ProducerRecord {
  const value = new Uint8Array(valueBytes);
  const view = new DataView(value.buffer);
  view.setUint32(0, trade.priceCents % 4_294_967_296, true);
  view.setUint32(4, Math.floor(trade.priceCents / 4_294_967_296), true);
  view.setUint32(8, trade.qty, true);
  return { key: trade.symbol, value, timestamp: trade.timestampMs };
}

function u32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16)) + bytes[at + 3]! * 16_777_216;
}

/** Symbols seen before, by their key bytes' latin-1 text: decoding a key is then one map lookup. */
const symbolCache = new Map<string, string>();

function symbolOf(key: Uint8Array): string {
  // Symbols are ASCII (symbolPattern), so latin-1 is their UTF-8.
  const text = String.fromCharCode.apply(null, key as unknown as number[]);
  let symbol = symbolCache.get(text);
  if (symbol === undefined) {
    if (!symbolPattern.test(text))
      throw new ValidationError(`Trade key '${text.slice(0, 32)}' is not a symbol`);
    if (symbolCache.size < 100_000) symbolCache.set(text, text);
    symbol = text;
  }
  return symbol;
}

export function decodeTrade(record: LogRecord): Trade {
  const value = record.value;
  if (record.key === null || value === null || value.byteLength !== valueBytes) {
    throw new ValidationError(`A trade record needs a symbol key and a ${valueBytes}-byte value`);
  }
  return {
    symbol: symbolOf(record.key),
    priceCents: u32(value, 0) + u32(value, 4) * 4_294_967_296,
    qty: u32(value, 8),
    timestampMs: record.timestamp,
  };
}

/**
 * A window's accumulator, flat for speed and small state: count, volume, notional (Σ cents × qty),
 * open (event time, input sequence, price), close (same), high, low.
 */
type OhlcAcc = [number, number, number, number, number, number, number, number, number, number, number];

export interface WindowStats {
  readonly count: number;
  readonly volume: number;
  readonly notionalCents: number;
  /** Σ(price × qty) / Σqty, 4 decimals, rounded half-even on the exact integer sums. */
  readonly vwap: string;
  readonly openCents: number;
  readonly highCents: number;
  readonly lowCents: number;
  readonly closeCents: number;
}

/** Count, volume, VWAP and OHLC; open/close by event time, ties by input order (Flink's job's rule). */
export const ohlc = aggregator<Trade, OhlcAcc, WindowStats>({
  create: () => [
    0,
    0,
    0,
    Number.MAX_SAFE_INTEGER,
    0,
    0,
    Number.MIN_SAFE_INTEGER,
    0,
    0,
    Number.MIN_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER,
  ],
  add(acc, trade, timestampMs, sequence) {
    acc[0] += 1;
    acc[1] += trade.qty;
    acc[2] += trade.priceCents * trade.qty;
    if (timestampMs < acc[3] || (timestampMs === acc[3] && sequence < acc[4])) {
      acc[3] = timestampMs;
      acc[4] = sequence;
      acc[5] = trade.priceCents;
    }
    if (timestampMs > acc[6] || (timestampMs === acc[6] && sequence > acc[7])) {
      acc[6] = timestampMs;
      acc[7] = sequence;
      acc[8] = trade.priceCents;
    }
    if (trade.priceCents > acc[9]) acc[9] = trade.priceCents;
    if (trade.priceCents < acc[10]) acc[10] = trade.priceCents;
    return acc;
  },
  result: (acc) => ({
    count: acc[0],
    volume: acc[1],
    notionalCents: acc[2],
    vwap: vwapText(acc[2], acc[1]),
    openCents: acc[5],
    highCents: acc[9],
    lowCents: acc[10],
    closeCents: acc[8],
  }),
});

/** notional / volume / 100 to 4 decimals, half-even, on exact integers (as BigDecimal does). */
export function vwapText(notionalCents: number, volume: number): string {
  if (volume === 0) return '0.0000';
  const numerator = BigInt(notionalCents) * 100n;
  const denominator = BigInt(volume);
  let quotient = numerator / denominator;
  const twiceRemainder = 2n * (numerator % denominator);
  if (twiceRemainder > denominator || (twiceRemainder === denominator && quotient % 2n === 1n))
    quotient += 1n;
  const text = quotient.toString().padStart(5, '0');
  return `${text.slice(0, -4)}.${text.slice(-4)}`;
}

/** Cents as dollars with two decimals: 10005 -> '100.05'. */
export function centsText(cents: number): string {
  const text = String(cents).padStart(3, '0');
  return `${text.slice(0, -2)}.${text.slice(-2)}`;
}
