import {
  AlreadyExistsError,
  ConflictError,
  isMeridianError,
  MeridianError,
  NotFoundError,
  ValidationError,
} from '../errors.ts';
import type { LogRecord, ProducerRecord } from '../log/types.ts';
import type { Json, StoredReply } from '../store/types.ts';
import { decodeJson, encodeJson } from './codec.ts';
import { SagaEndedError } from './errors.ts';
import { maxCancelReasonLength } from './saga-cancellation.ts';

/**
 * The records that carry work to the owner of a work partition on the cluster shape, on the work
 * topic, keyed by the entity or saga id (so they land on the id's partition). Each names a
 * request id: the owner applies a request once (its inbox holds the id) and stores its reply
 * under that id.
 */
export type WorkRequest =
  | {
      readonly kind: 'send';
      readonly requestId: string;
      readonly entity: string;
      readonly id: string;
      readonly command: string;
      readonly input: Json;
      readonly traceparent: string;
    }
  | {
      readonly kind: 'start';
      readonly requestId: string;
      readonly saga: string;
      readonly id: string;
      readonly input: Json;
      readonly traceparent: string;
    }
  | {
      /** A signal for a saga, handed to the owner of the saga's partition (`runtime.signal`). */
      readonly kind: 'signal';
      readonly requestId: string;
      /** The saga id. */
      readonly id: string;
      readonly name: string;
      readonly value: Json;
    }
  | {
      /** A saga's cancellation, handed to the owner of the saga's partition (`runtime.cancelSaga`). */
      readonly kind: 'cancel';
      readonly requestId: string;
      /** The saga id. */
      readonly id: string;
      readonly reason: string;
    }
  | {
      /** A subscription's record, handed to the owner of the entity its handler sends to. */
      readonly kind: 'deliver';
      readonly requestId: string;
      readonly subscription: string;
      /** The entity id whose owner must handle it: the work record's key. */
      readonly id: string;
      readonly hops: number;
      /** 1 for the first delivery; a retry after the handler failed here counts up. */
      readonly attempt: number;
      readonly record: LogRecord;
    };

/** A consumed record as a work request carries it: key and value in base64. */
interface CarriedRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
  timestamp: number;
}

function carry(record: LogRecord): CarriedRecord {
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    key: record.key === null ? null : Buffer.from(record.key).toString('base64'),
    value: record.value === null ? null : Buffer.from(record.value).toString('base64'),
    headers: { ...record.headers },
    timestamp: record.timestamp,
  };
}

function uncarry(value: unknown): LogRecord {
  const carried = value as Partial<CarriedRecord> | null;
  const bytes = (text: unknown) =>
    typeof text === 'string' ? new Uint8Array(Buffer.from(text, 'base64')) : null;
  if (
    typeof carried !== 'object' ||
    carried === null ||
    typeof carried.topic !== 'string' ||
    !Number.isInteger(carried.partition) ||
    !Number.isInteger(carried.offset) ||
    !Number.isFinite(carried.timestamp) ||
    typeof carried.headers !== 'object' ||
    carried.headers === null ||
    Object.values(carried.headers).some((header) => typeof header !== 'string')
  ) {
    throw new ValidationError(
      `A 'deliver' work record's 'record' is not a record (topic, partition, offset, key, value, headers, timestamp)`,
    );
  }
  return {
    topic: carried.topic,
    partition: carried.partition!,
    offset: carried.offset!,
    key: bytes(carried.key),
    value: bytes(carried.value),
    headers: carried.headers,
    timestamp: carried.timestamp!,
  };
}

/**
 * The reply to a 'start' request that created the saga (null: it existed already). Nodes that
 * predate it reply null to both, which the sender takes as "it may have ended already".
 */
export const startCreatedReply = 'created';

/** The header naming a work record's kind, so tools can tell them apart without decoding. */
export const workKindHeader = 'meridian-work';

/** The largest request id accepted from a record. */
const maxRequestIdLength = 512;

export function encodeWorkRequest(request: WorkRequest): ProducerRecord {
  const body = request.kind === 'deliver' ? { ...request, record: carry(request.record) } : request;
  return {
    key: request.id,
    value: encodeJson(body as unknown as Json),
    headers: { [workKindHeader]: request.kind },
  };
}

function text(record: Record<string, unknown>, field: string, max = 1024): string {
  const value = record[field];
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw new ValidationError(
      `A work record's '${field}' must be a non-empty string of at most ${max} characters`,
    );
  }
  return value;
}

/**
 * Decodes a work record. A record that is not one (bad JSON, a missing or malformed field) is a
 * ValidationError naming what was wrong: the owner skips it and reports it, never retries it.
 */
export function decodeWorkRequest(record: LogRecord): WorkRequest {
  let body: unknown;
  try {
    body = decodeJson(record.value);
  } catch (error) {
    throw new ValidationError(
      `A record at ${record.topic}/${record.partition}@${record.offset} is not a work request: its value is not JSON`,
      { cause: error },
    );
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError(
      `A record at ${record.topic}/${record.partition}@${record.offset} is not a work request: its value is not an object`,
    );
  }
  const fields = body as Record<string, unknown>;
  if (fields.kind === 'deliver') {
    const hops = fields.hops;
    if (typeof hops !== 'number' || !Number.isInteger(hops) || hops < 1 || hops > 100) {
      throw new ValidationError(`A 'deliver' work record's 'hops' must be an integer from 1 to 100`);
    }
    const attempt = fields.attempt ?? 1;
    if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 1 || attempt > 1000) {
      throw new ValidationError(`A 'deliver' work record's 'attempt' must be an integer from 1 to 1000`);
    }
    return {
      kind: 'deliver',
      requestId: text(fields, 'requestId', maxRequestIdLength),
      subscription: text(fields, 'subscription'),
      id: text(fields, 'id'),
      hops,
      attempt,
      record: uncarry(fields.record),
    };
  }
  if (fields.kind === 'signal') {
    return {
      kind: 'signal',
      requestId: text(fields, 'requestId', maxRequestIdLength),
      id: text(fields, 'id'),
      name: text(fields, 'name', 100),
      value: (fields.value ?? null) as Json,
    };
  }
  if (fields.kind === 'cancel') {
    return {
      kind: 'cancel',
      requestId: text(fields, 'requestId', maxRequestIdLength),
      id: text(fields, 'id'),
      reason: text(fields, 'reason', maxCancelReasonLength),
    };
  }
  const base = {
    requestId: text(fields, 'requestId', maxRequestIdLength),
    id: text(fields, 'id'),
    input: (fields.input ?? null) as Json,
    traceparent: text(fields, 'traceparent', 128),
  };
  if (fields.kind === 'send') {
    return { kind: 'send', ...base, entity: text(fields, 'entity'), command: text(fields, 'command') };
  }
  if (fields.kind === 'start') return { kind: 'start', ...base, saga: text(fields, 'saga') };
  throw new ValidationError(
    `A record at ${record.topic}/${record.partition}@${record.offset} has work kind '${String(fields.kind).slice(0, 40)}': expected 'send', 'start', 'signal', 'cancel' or 'deliver'`,
  );
}

/** Rebuilds the error a remote owner stored with a reply: the shared classes by their code. */
export function errorFromReply(reply: StoredReply): Error {
  const message = reply.error ?? 'the request was rejected';
  const details = { requestId: reply.requestId, remote: true };
  switch (reply.code) {
    case 'INVALID_ARGUMENT':
      return new ValidationError(message, { details });
    case 'NOT_FOUND':
      return new NotFoundError(message, { details });
    case 'ALREADY_EXISTS':
      return new AlreadyExistsError(message, { details });
    case 'CONFLICT':
      return new ConflictError(message, { details });
    case 'SAGA_ENDED':
      return new SagaEndedError(message, { details });
    default:
      return new MeridianError(reply.code ?? 'REJECTED', message, { details });
  }
}

/** An error a request's handling ends with, as a stored reply. */
export function rejection(error: unknown): Omit<StoredReply, 'requestId' | 'partition' | 'createdAt'> {
  const message = error instanceof Error ? error.message : String(error);
  return {
    ok: false,
    reply: null,
    error: message.length > 4096 ? `${message.slice(0, 4081)}... (truncated)` : message,
    code: isMeridianError(error) ? error.code : null,
  };
}
