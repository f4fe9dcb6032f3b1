import { NotFoundError } from '../errors.ts';
import type { Log, LogRecord } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';
import { deadLetterHeaders } from './subscription-runner.ts';

/** A record that a subscription could not handle, as it sits on the dead-letter topic. */
export interface DeadLetter {
  readonly subscription: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly error: string;
  readonly attempts: number;
  readonly at: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: Readonly<Record<string, string>>;
  /** Where the dead letter itself sits on the dead-letter topic. */
  readonly deadLetter: { readonly partition: number; readonly offset: number };
}

/** Dead letters on `topic`, oldest first per partition; optionally of one subscription. */
export async function readDeadLetters(
  log: Log,
  topic: string,
  options: { subscription?: string; limit?: number },
): Promise<DeadLetter[]> {
  const limit = integerOption('limit', options.limit, 100, 1, 1000);
  let partitions: number;
  try {
    partitions = (await log.describeTopic(topic)).partitions;
  } catch (error) {
    if (error instanceof NotFoundError) return [];
    throw error;
  }
  const found: DeadLetter[] = [];
  for (let partition = 0; partition < partitions && found.length < limit; partition++) {
    const { start, end } = await log.offsets(topic, partition);
    let offset = start;
    while (offset < end && found.length < limit) {
      const records = await log.read(topic, partition, offset, { maxRecords: 500 });
      if (records.length === 0) break;
      for (const record of records) {
        const letter = toDeadLetter(record);
        if (options.subscription === undefined || letter.subscription === options.subscription)
          found.push(letter);
        if (found.length >= limit) break;
      }
      offset = records[records.length - 1]!.offset + 1;
    }
  }
  return found;
}

function toDeadLetter(record: LogRecord): DeadLetter {
  const header = (name: string) => record.headers[name] ?? '';
  return {
    subscription: header(deadLetterHeaders.subscription),
    topic: header(deadLetterHeaders.topic),
    partition: Number(header(deadLetterHeaders.partition)),
    offset: Number(header(deadLetterHeaders.offset)),
    error: header(deadLetterHeaders.error),
    attempts: Number(header(deadLetterHeaders.attempts)),
    at: Number(header(deadLetterHeaders.at)),
    key: record.key,
    value: record.value,
    headers: record.headers,
    deadLetter: { partition: record.partition, offset: record.offset },
  };
}
