import { trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';
import { ValidationError } from '../errors.ts';

export type { Logger };

const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof levels)[number];

type Environment = Readonly<Record<string, string | undefined>>;

/**
 * The level logs are written at: `MERIDIAN_LOG_LEVEL` when set, else by `NODE_ENV`: `info` in
 * production, `silent` under test, `debug` otherwise (development).
 */
export function logLevelFromEnv(env: Environment = process.env): LogLevel {
  const given = env.MERIDIAN_LOG_LEVEL?.trim().toLowerCase();
  if (given !== undefined && given !== '') {
    if (!(levels as readonly string[]).includes(given)) {
      throw new ValidationError(
        `MERIDIAN_LOG_LEVEL is '${given.slice(0, 20)}': use one of ${levels.join(', ')}`,
      );
    }
    return given as LogLevel;
  }
  if (env.NODE_ENV === 'production') return 'info';
  if (env.NODE_ENV === 'test') return 'silent';
  return 'debug';
}

/**
 * A structured JSON logger (pino), one line per entry. Every entry written while a span is
 * active carries its `trace_id` and `span_id`, so a log line leads to its trace; callers add
 * what the entry concerns (`sagaId`, `entity`, `requestId`) as fields, or bind them with
 * `logger.child({ sagaId })`.
 */
export function createLogger(
  options: { name?: string; level?: LogLevel; destination?: DestinationStream } = {},
): Logger {
  return pino(
    {
      name: options.name ?? 'meridian',
      level: options.level ?? logLevelFromEnv(),
      // Correlation: the active span's ids, as OpenTelemetry's log data model names them.
      mixin() {
        const span = trace.getActiveSpan();
        if (span === undefined || !span.isRecording()) return {};
        const context = span.spanContext();
        return { trace_id: context.traceId, span_id: context.spanId };
      },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}
