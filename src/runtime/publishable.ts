import { ValidationError } from '../errors.ts';
import type { Log, ProducerRecord, TopicDescription } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';

const encoder = new TextEncoder();

/**
 * What the log would refuse at a transaction's final append (or a relay's publish), refused when
 * a unit publishes, so that only that unit fails: a key that is not a string or bytes, a value
 * that is not bytes, an explicit partition, a keyless record on a compacted topic, a header that
 * is not a string, a record larger than `maxRecordBytes`.
 */
export function checkPublishable(
  description: TopicDescription,
  record: ProducerRecord,
  maxRecordBytes: number,
): void {
  const topic = description.name;
  const key = record.key;
  let bytes = 0;
  if (typeof key === 'string') bytes += encoder.encode(key).length;
  else if (key instanceof Uint8Array) bytes += key.length;
  else if (key !== null && key !== undefined) {
    throw new ValidationError(
      `A record for topic '${topic}' has a key that is neither a string, bytes nor null`,
    );
  }
  if (record.value !== null && !(record.value instanceof Uint8Array)) {
    throw new ValidationError(`A record for topic '${topic}' must have bytes or null as its value`);
  }
  bytes += record.value?.length ?? 0;
  if (record.partition !== undefined) {
    throw new ValidationError(`Records the runtime publishes are partitioned by key: drop 'partition'`);
  }
  if ((key === null || key === undefined) && description.cleanupPolicy === 'compact') {
    throw new ValidationError(`A record for the compacted topic '${topic}' needs a key`);
  }
  const headers = record.headers ?? {};
  let anyHeader = false;
  for (const [name, value] of Object.entries(headers)) {
    anyHeader = true;
    if (typeof value !== 'string') {
      throw new ValidationError(`Header '${name}' of a record for topic '${topic}' must be a string`);
    }
  }
  // Counted as the log counts them: the headers' JSON text.
  if (anyHeader) bytes += encoder.encode(JSON.stringify(headers)).length;
  if (bytes > maxRecordBytes) {
    throw new ValidationError(
      `A record for topic '${topic}' is ${bytes} bytes (key + value + headers), more than 'maxRecordBytes' ${maxRecordBytes}`,
    );
  }
}

/**
 * Checks what units publish against the topics they publish to (each described once; topics are
 * created outside units, so one seen inside a unit exists), for both commit paths.
 */
export class PublishCheck {
  readonly #log: Log;
  readonly #maxRecordBytes: number;
  readonly #topics = new Map<string, TopicDescription>();

  /** `maxRecordBytes`: 1 to 67108864, @default 1048576 (must not exceed the log's own limit). */
  constructor(log: Log, maxRecordBytes: number | undefined) {
    this.#log = log;
    this.#maxRecordBytes = integerOption('maxRecordBytes', maxRecordBytes, 1_048_576, 1, 67_108_864);
  }

  /** Refuses the first of `records` the log would refuse for `topic` (see checkPublishable). */
  async check(topic: string, records: readonly ProducerRecord[]): Promise<void> {
    let description = this.#topics.get(topic);
    if (description === undefined) {
      description = await this.#log.describeTopic(topic);
      this.#topics.set(topic, description);
    }
    for (const record of records) checkPublishable(description, record, this.#maxRecordBytes);
  }
}
