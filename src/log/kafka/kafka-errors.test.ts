// The Kafka client's nested errors become Meridian's typed errors, whatever depth the broker's
// reason sits at, so callers of the kafka log handle the same errors as callers of the SQLite log.
import { describe, expect, it } from 'vitest';
import { translateKafkaError } from './kafka-errors.ts';

/** The client's shape: a MultipleErrors of a ResponseError of ProtocolErrors. */
function clientError(apiId: string, canRetry: boolean) {
  const protocol = Object.assign(new Error(`broker said ${apiId}`), {
    code: 'PLT_KFK_PROTOCOL',
    apiId,
    canRetry,
  });
  const response = Object.assign(new AggregateError([protocol], 'Received response with error'), {
    code: 'PLT_KFK_RESPONSE',
  });
  return Object.assign(new AggregateError([response], 'Producing messages failed.'), {
    code: 'PLT_KFK_MULTIPLE',
  });
}

describe('translateKafkaError', () => {
  it.each([
    ['TOPIC_ALREADY_EXISTS', false, 'ALREADY_EXISTS'],
    ['UNKNOWN_TOPIC_OR_PARTITION', true, 'NOT_FOUND'],
    ['MESSAGE_TOO_LARGE', false, 'RECORD_TOO_LARGE'],
    ['RECORD_LIST_TOO_LARGE', false, 'RECORD_TOO_LARGE'],
    ['OFFSET_OUT_OF_RANGE', false, 'OFFSET_OUT_OF_RANGE'],
    ['INVALID_TIMESTAMP', false, 'INVALID_ARGUMENT'],
    ['INVALID_REPLICATION_FACTOR', false, 'INVALID_ARGUMENT'],
    ['ILLEGAL_GENERATION', false, 'CONFLICT'],
    ['NOT_LEADER_OR_FOLLOWER', true, 'RETRYABLE'],
    ['NOT_ENOUGH_REPLICAS', true, 'RETRYABLE'],
    ['TOPIC_AUTHORIZATION_FAILED', false, 'TERMINAL'],
  ])('%s (canRetry %s) becomes %s', (apiId, canRetry, code) => {
    const translated = translateKafkaError(clientError(apiId, canRetry), "Cannot append to topic 'orders'", {
      topic: 'orders',
    });
    expect(translated.code).toBe(code);
    expect(translated.message).toMatch(new RegExp(`^Cannot append to topic 'orders': ${apiId}: broker said`));
    expect(translated.details).toMatchObject({ topic: 'orders', brokerErrors: [apiId] });
  });

  it('an unreachable broker is retryable even where the client marked a step final', () => {
    const refused = Object.assign(new Error('Connection to 127.0.0.1:19094 failed.'), {
      code: 'PLT_KFK_NETWORK',
      canRetry: true,
    });
    const gone = Object.assign(new Error('Cannot find broker with node id 3'), {
      code: 'PLT_KFK_USER',
      canRetry: false,
    });
    expect(translateKafkaError(new AggregateError([refused, gone], 'fetch failed 2 times.'), 'x').code).toBe(
      'RETRYABLE',
    );
    expect(translateKafkaError(gone, 'x').code).toBe('RETRYABLE');
  });

  it('a closed client is ClosedError, and Meridian errors pass through unchanged', () => {
    const closed = Object.assign(new Error('Client is closed.'), { code: 'PLT_KFK_NETWORK', closed: true });
    expect(translateKafkaError(closed, 'x').code).toBe('CLOSED');
    const original = translateKafkaError(clientError('OFFSET_OUT_OF_RANGE', false), 'x');
    expect(translateKafkaError(original, 'y')).toBe(original);
  });
});
