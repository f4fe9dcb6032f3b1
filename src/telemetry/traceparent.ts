import type { Random } from '../time.ts';

/**
 * W3C trace context (https://www.w3.org/TR/trace-context/): every record Meridian writes carries
 * a `traceparent` header, so a tracing layer can follow a request from the command that caused
 * it through every saga step and record it produced. Ids come from the Random port, so a
 * simulated run with a seed produces the same ids every time.
 */
export const traceparentHeader = 'traceparent';

export interface TraceContext {
  /** 32 lower-case hex characters, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex characters, not all zero: the span that caused what carries it. */
  readonly spanId: string;
  readonly sampled: boolean;
}

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Parses a `traceparent` header; null when absent or malformed (the spec says: start a new trace). */
export function parseTraceparent(header: string | undefined | null): TraceContext | null {
  if (typeof header !== 'string') return null;
  const match = traceparentPattern.exec(header.trim());
  if (match === null) return null;
  const [, version, traceId, spanId, flags] = match as unknown as [string, string, string, string, string];
  if (version === 'ff' || /^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

export function formatTraceparent(context: TraceContext): string {
  return `00-${context.traceId}-${context.spanId}-${context.sampled ? '01' : '00'}`;
}

function randomHex(random: Random, length: number): string {
  let text = '';
  while (text.length < length) {
    // 24 bits per draw: well inside the 32 bits of precision a Random gives.
    text += Math.floor(random.next() * 0x1000000)
      .toString(16)
      .padStart(6, '0');
  }
  text = text.slice(0, length);
  // An all-zero id is invalid; the odds are negligible, but the fix is free.
  return /^0+$/.test(text) ? `${text.slice(0, -1)}1` : text;
}

/** A new trace with a root span. */
export function newTrace(random: Random): TraceContext {
  return { traceId: randomHex(random, 32), spanId: randomHex(random, 16), sampled: true };
}

/** A new span in the same trace as `parent` (a new trace when there is no parent). */
export function childSpan(parent: TraceContext | null, random: Random): TraceContext {
  if (parent === null) return newTrace(random);
  return { traceId: parent.traceId, spanId: randomHex(random, 16), sampled: parent.sampled };
}

/** The traceparent of a child span of `parentHeader` (or of a new trace if it is absent or malformed). */
export function childTraceparent(parentHeader: string | undefined | null, random: Random): string {
  return formatTraceparent(childSpan(parseTraceparent(parentHeader), random));
}
