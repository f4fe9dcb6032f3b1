import { AlreadyExistsError, ConflictError, RetryableError } from '../errors.ts';
import type { JournalEntry, Json, SagaRecord } from '../store/types.ts';
import { toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import type { SagaDefinition } from './definitions.ts';
import { requireRuntimeId } from './options.ts';
import type { SagaLaunch } from './saga-execution.ts';
import { journalNames } from './saga-journal.ts';

/** JSON with sorted keys, to compare two inputs regardless of key order. */
function canonical(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, Json>)[key]!)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Creates a saga and its start entry (sequence 0, holding its trace context) inside `scope`, to
 * be launched once the transaction commits. Idempotent: null when a saga with this id exists with
 * the same type and input; ConflictError when it exists with another.
 */
export async function createSaga(
  scope: UnitScope,
  definition: SagaDefinition,
  id: string,
  input: unknown,
  traceparent: string,
  nowMs: number,
): Promise<SagaLaunch | null> {
  requireRuntimeId('A saga id', id);
  const inputJson = toJson(`The input of saga '${definition.name}'`, input);
  try {
    await scope.tx.sagas.create({
      id,
      type: definition.name,
      status: 'running',
      input: inputJson,
      createdAt: nowMs,
    });
  } catch (error) {
    if (!(error instanceof AlreadyExistsError)) throw error;
    // Idempotent start: the same id with the same type and input is the same saga.
    const existing = await scope.tx.sagas.get(id);
    if (existing === null) {
      // PostgreSQL: retention deleted the ended saga (past its outcome period) between the two
      // statements. The id is free now; starting again creates the saga anew.
      throw new RetryableError(
        `Saga '${id}' was deleted by retention while being started again: start it again`,
      );
    }
    if (existing.type !== definition.name || canonical(existing.input) !== canonical(inputJson)) {
      throw new ConflictError(
        `Saga '${id}' exists with ${existing.type !== definition.name ? `type '${existing.type}'` : 'another input'}: a saga id names one saga with one input`,
        { details: { sagaId: id, existingType: existing.type, type: definition.name } },
      );
    }
    return null;
  }
  const start: JournalEntry = {
    sagaId: id,
    sequence: 0,
    kind: 'event',
    name: journalNames.start,
    status: 'completed',
    result: { traceparent },
    error: null,
    attempts: 1,
    at: nowMs,
  };
  await scope.tx.sagas.appendJournal(start);
  const record: SagaRecord = {
    id,
    type: definition.name,
    status: 'running',
    input: inputJson,
    output: null,
    reason: null,
    createdAt: nowMs,
    updatedAt: nowMs,
    version: 1,
  };
  return { sagaId: id, definition, record, journal: [start] };
}
