// The kafka log's options: documented defaults, every bound checked with a message that names
// the option and the value, and the broker list as the environment variables hold it.
import { describe, expect, it } from 'vitest';
import { normalizeKafkaLogOptions, parseBrokerList } from './options.ts';

describe('kafka log options', () => {
  it('applies the documented defaults', () => {
    expect(normalizeKafkaLogOptions({ brokers: ['127.0.0.1:9092'] })).toMatchObject({
      clientId: 'meridian',
      requestTimeoutMs: 30_000,
      retries: 5,
      maxRecordBytes: 1_048_576,
      sessionTimeoutMs: 8000,
      heartbeatIntervalMs: 1000,
      fetchMaxWaitMs: 500,
    });
  });

  it.each([
    [{ brokers: [] }, "'brokers' must be an array of 1 to 100"],
    [{ brokers: ['no-port'] }, "'brokers' entries must be 'host:port': current value is 'no-port'"],
    [{ brokers: ['h:1'], clientId: 'has space' }, "'clientId' must be"],
    [{ brokers: ['h:1'], retries: 101 }, "'retries' must be an integer in [0, 100]: current value is 101"],
    [{ brokers: ['h:1'], fetchMaxWaitMs: -1 }, "'fetchMaxWaitMs' must be an integer in [0, 30000]"],
    [
      { brokers: ['h:1'], heartbeatIntervalMs: 6000, sessionTimeoutMs: 6000 },
      "'heartbeatIntervalMs' must be below",
    ],
  ])('rejects %j', (options, message) => {
    expect(() => normalizeKafkaLogOptions(options)).toThrowError(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(message) }),
    );
  });

  it('parses a comma-separated broker list', () => {
    expect(parseBrokerList(' 127.0.0.1:19092,127.0.0.1:19093 ,, ')).toEqual([
      '127.0.0.1:19092',
      '127.0.0.1:19093',
    ]);
  });
});
