import { assert } from '../../assert.ts';
import type { Json } from '../types.ts';

/** A BIGINT/INTEGER column: SQLite gives a number, pg gives BIGINT as a string. */
export function toInteger(value: unknown, column: string): number {
  const number = typeof value === 'number' ? value : Number(value);
  assert(Number.isSafeInteger(number), `column '${column}' must hold a safe integer: got ${String(value)}`);
  return number;
}

export function toOptionalInteger(value: unknown, column: string): number | null {
  return value === null || value === undefined ? null : toInteger(value, column);
}

export function parseJson(text: unknown, column: string): Json {
  assert(typeof text === 'string', `column '${column}' must hold JSON text`);
  return JSON.parse(text) as Json;
}

export function parseOptionalJson(text: unknown, column: string): Json | null {
  return text === null || text === undefined ? null : parseJson(text, column);
}

/**
 * A BYTEA/BLOB column as a plain Uint8Array. pg returns a Buffer that may be a view into a
 * shared pool; copying gives callers bytes of their own, equal by type on both dialects.
 */
export function toBytes(value: unknown, column: string): Uint8Array | null {
  if (value === null || value === undefined) return null;
  assert(value instanceof Uint8Array, `column '${column}' must hold bytes`);
  return Buffer.isBuffer(value) ? new Uint8Array(value) : value;
}

export function toOptionalString(value: unknown, column: string): string | null {
  if (value === null || value === undefined) return null;
  assert(typeof value === 'string', `column '${column}' must hold text`);
  return value;
}

export function toStringColumn(value: unknown, column: string): string {
  assert(typeof value === 'string', `column '${column}' must hold text`);
  return value;
}
