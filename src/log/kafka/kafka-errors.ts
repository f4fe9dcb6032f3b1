import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  isMeridianError,
  NotFoundError,
  RetryableError,
  TerminalError,
  ValidationError,
} from '../../errors.ts';
import { OffsetOutOfRangeError, RecordTooLargeError } from '../errors.ts';

/**
 * Turns the Kafka client's errors into Meridian's, so callers of the `kafka` log see the same
 * typed errors as callers of the `sqlite` one. The client nests errors (a MultipleErrors of a
 * ResponseError of ProtocolErrors, one per failed partition); the broker's reason is the
 * `apiId` of a ProtocolError somewhere inside.
 */

interface ClientErrorShape {
  code?: unknown;
  apiId?: unknown;
  canRetry?: unknown;
  closed?: unknown;
  message?: unknown;
  errors?: unknown;
  cause?: unknown;
}

/** Walks an error and everything nested in it, bounded so a cyclic cause cannot loop. */
function* nested(error: unknown): Generator<ClientErrorShape> {
  const queue: unknown[] = [error];
  for (let seen = 0; queue.length > 0 && seen < 100; seen++) {
    const current = queue.shift();
    if (typeof current !== 'object' || current === null) continue;
    const shape = current as ClientErrorShape;
    yield shape;
    if (Array.isArray(shape.errors)) queue.push(...shape.errors);
    if (shape.cause !== undefined) queue.push(shape.cause);
  }
}

/** The broker error names (`apiId`) anywhere in a client error. */
export function brokerErrorNames(error: unknown): Set<string> {
  const names = new Set<string>();
  for (const shape of nested(error)) {
    if (typeof shape.apiId === 'string') names.add(shape.apiId);
  }
  return names;
}

export function hasBrokerError(error: unknown, ...names: string[]): boolean {
  const found = brokerErrorNames(error);
  return names.some((name) => found.has(name));
}

/** The client's "Unknown topic X." (from a metadata request for a topic that does not exist). */
export function isUnknownTopic(error: unknown): boolean {
  for (const shape of nested(error)) {
    if (shape.apiId === 'UNKNOWN_TOPIC_OR_PARTITION' || shape.apiId === 'UNKNOWN_TOPIC_ID') return true;
    if (typeof shape.message === 'string' && shape.message.startsWith('Unknown topic ')) return true;
  }
  return false;
}

function isClientClosed(error: unknown): boolean {
  for (const shape of nested(error)) {
    if (shape.closed === true) return true;
    if (typeof shape.message === 'string' && /^Client (is )?closed/.test(shape.message)) return true;
  }
  return false;
}

/**
 * A broker that could not be reached, or that the client's metadata no longer lists (it died and
 * the cluster dropped it): both pass once the client refreshes its metadata and finds the new
 * leader, even when the client marked a step of the chain as not retryable.
 */
export function isBrokerUnreachable(error: unknown): boolean {
  for (const shape of nested(error)) {
    if (shape.code === 'PLT_KFK_NETWORK' || shape.code === 'PLT_KFK_TIMEOUT') return true;
    if (typeof shape.message === 'string' && shape.message.startsWith('Cannot find broker with node id')) {
      return true;
    }
  }
  return false;
}

/** True when nothing in the chain says retrying cannot help (the client marks those canRetry: false). */
function mayPass(error: unknown): boolean {
  for (const shape of nested(error)) {
    if (shape.canRetry === false) return false;
  }
  return true;
}

function firstMessage(error: unknown): string {
  let deepest = '';
  for (const shape of nested(error)) {
    if (typeof shape.message === 'string' && shape.message.length > 0) deepest = shape.message;
  }
  return deepest || String(error);
}

const notFound = ['UNKNOWN_TOPIC_OR_PARTITION', 'UNKNOWN_TOPIC_ID', 'GROUP_ID_NOT_FOUND'];
const tooLarge = ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE'];
const invalid = [
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_PARTITIONS',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_REPLICA_ASSIGNMENT',
  'INVALID_CONFIG',
  'INVALID_TIMESTAMP',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'POLICY_VIOLATION',
  'INVALID_GROUP_ID',
  'INVALID_SESSION_TIMEOUT',
];
const conflict = ['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'REBALANCE_IN_PROGRESS', 'FENCED_INSTANCE_ID'];

/**
 * A Meridian error for a failed client call. `action` says what was attempted
 * ("Cannot append to topic 'orders'"); the broker's reason follows it.
 */
export function translateKafkaError(error: unknown, action: string, details: Record<string, unknown> = {}) {
  if (isMeridianError(error)) return error;
  const names = brokerErrorNames(error);
  const reason = names.size > 0 ? `${[...names].join(', ')}: ${firstMessage(error)}` : firstMessage(error);
  const message = `${action}: ${reason}`;
  const options = { cause: error, details: { ...details, brokerErrors: [...names] } };
  const any = (list: readonly string[]) => list.some((name) => names.has(name));
  if (isClientClosed(error)) return new ClosedError(message, options);
  if (names.has('TOPIC_ALREADY_EXISTS')) return new AlreadyExistsError(message, options);
  if (any(notFound) || isUnknownTopic(error)) return new NotFoundError(message, options);
  if (any(tooLarge)) return new RecordTooLargeError(message, options);
  if (names.has('OFFSET_OUT_OF_RANGE')) return new OffsetOutOfRangeError(message, options);
  if (any(invalid)) return new ValidationError(message, options);
  if (any(conflict)) return new ConflictError(message, options);
  if (isBrokerUnreachable(error) || mayPass(error)) return new RetryableError(message, options);
  return new TerminalError(message, options);
}
