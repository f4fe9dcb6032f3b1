// Structured logs: one JSON object per line, the level chosen by the environment (and refused
// with a clear error when misspelt), and the active span's trace and span ids on every entry
// written inside it, beside the fields naming what it concerns.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { type RecordedSpans, recordSpansInMemory } from './in-memory.ts';
import { createLogger, logLevelFromEnv } from './logger.ts';
import { inSpan } from './tracing.ts';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, destination };
}

describe('logs', () => {
  let spans: RecordedSpans | undefined;
  afterEach(async () => {
    await spans?.shutdown();
    spans = undefined;
  });

  it('chooses the level from MERIDIAN_LOG_LEVEL, else NODE_ENV, and refuses an unknown one', () => {
    expect(logLevelFromEnv({ MERIDIAN_LOG_LEVEL: 'WARN' })).toBe('warn');
    expect(logLevelFromEnv({ NODE_ENV: 'production' })).toBe('info');
    expect(logLevelFromEnv({ NODE_ENV: 'test' })).toBe('silent');
    expect(logLevelFromEnv({})).toBe('debug');
    expect(() => logLevelFromEnv({ MERIDIAN_LOG_LEVEL: 'loud' })).toThrow(ValidationError);
    expect(() => logLevelFromEnv({ MERIDIAN_LOG_LEVEL: 'loud' })).toThrow(/fatal, error, warn, info/);
  });

  it('writes JSON lines carrying the active span’s trace and span ids and what they concern', async () => {
    spans = recordSpansInMemory();
    const { lines, destination } = capture();
    const logger = createLogger({ name: 'shop', level: 'info', destination });
    logger.info({ sagaId: 'order-1' }, 'outside any span');
    await inSpan('saga.step charge', {}, async (span) => {
      logger.child({ sagaId: 'order-1' }).warn({ attempt: 2 }, 'charge retried');
      expect(lines[1]).toMatchObject({
        level: 'warn',
        name: 'shop',
        msg: 'charge retried',
        sagaId: 'order-1',
        attempt: 2,
        trace_id: span.spanContext().traceId,
        span_id: span.spanContext().spanId,
      });
    });
    expect(lines[0]).toMatchObject({ level: 'info', sagaId: 'order-1', msg: 'outside any span' });
    expect(lines[0]).not.toHaveProperty('trace_id');
    expect(typeof lines[0]!.time).toBe('string');
  });
});
