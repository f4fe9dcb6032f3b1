import type { JournalEntry, Json, SagaRecord } from '../store/types.ts';
import type { AnyEntityDefinition, SagaFailure } from './definitions.ts';
import { untag } from './saga-calls.ts';
import { cancelReasonOf, failureFromEntry, journalNames } from './saga-journal.ts';

/**
 * A saga's read side: what it is doing and what it did, as typed data. `runtime.progress(id)`
 * builds it from the saga's record and journal, so applications never read journal entries or
 * the runtime's names for them.
 */
export interface SagaProgress extends Omit<SagaRecord, 'version'> {
  /** Why it is compensating, compensated, failed or cancelled (the saga record's reason). */
  readonly reason: string | null;
  /** What made it compensate, as data (message, code, step, details); null until then. */
  readonly failure: SagaFailure | null;
  /** When that failure was journaled (runtime clock, ms); null until then. */
  readonly failedAt: number | null;
  /** Its finished calls, in the order they finished (`at`: when, on the runtime clock). */
  readonly calls: readonly SagaCall[];
}

export type SagaCall =
  | {
      readonly kind: 'step';
      readonly name: string;
      readonly status: 'completed' | 'failed';
      /** The step's result, or `{ code }` of its error when it failed. */
      readonly result: Json | null;
      readonly error: string | null;
      readonly attempts: number;
      readonly at: number;
    }
  | {
      readonly kind: 'send';
      readonly entity: string;
      readonly command: string;
      /** `failed`: the entity rejected the command. */
      readonly status: 'completed' | 'failed';
      readonly reply: Json | null;
      readonly error: string | null;
      readonly at: number;
    }
  | { readonly kind: 'sleep'; readonly name: string; readonly wakeAt: number; readonly at: number }
  | {
      readonly kind: 'signal';
      readonly name: string;
      readonly status: 'received' | 'timed-out';
      readonly value: Json | null;
      readonly at: number;
    }
  | { readonly kind: 'emit'; readonly topic: string; readonly at: number }
  /** The saga noticed its cancellation here (`runtime.cancelSaga`), with the reason given. */
  | { readonly kind: 'cancelled'; readonly reason: string; readonly at: number }
  | { readonly kind: 'now' | 'random'; readonly value: number; readonly at: number }
  | {
      readonly kind: 'compensation';
      /** The step undone, or null for a send. */
      readonly step: string | null;
      /** The send undone (its entity and command), or null for a step. */
      readonly send: { readonly entity: string; readonly command: string } | null;
      /** The reply of a send's compensation command; null for a step's. */
      readonly reply: Json | null;
      readonly at: number;
    };

/** `Entity.command` of a send, split by the registered entity it names. */
function sendOf(
  name: string,
  entities: ReadonlyMap<string, AnyEntityDefinition>,
): { entity: string; command: string } | null {
  for (const [entity, definition] of entities) {
    if (!name.startsWith(`${entity}.`)) continue;
    const command = name.slice(entity.length + 1);
    if (Object.hasOwn(definition.commands, command)) return { entity, command };
  }
  return null;
}

function callOf(entry: JournalEntry, entities: ReadonlyMap<string, AnyEntityDefinition>): SagaCall | null {
  const name = untag(entry.name).name;
  const at = entry.at;
  const prefixed = (prefix: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : null);
  switch (entry.kind) {
    case 'step': {
      const send = sendOf(name, entities);
      if (send !== null) {
        const { status, result: reply, error } = entry;
        return { kind: 'send', ...send, status, reply: status === 'completed' ? reply : null, error, at };
      }
      const { status, result, error, attempts } = entry;
      return { kind: 'step', name, status, result, error, attempts, at };
    }
    case 'sleep':
      return { kind: 'sleep', name, wakeAt: (entry.result as { wakeAt: number }).wakeAt, at };
    case 'compensation': {
      const send = sendOf(name, entities);
      return { kind: 'compensation', step: send === null ? name : null, send, reply: entry.result, at };
    }
    case 'event': {
      if (name === journalNames.now || name === journalNames.random) {
        return { kind: name === journalNames.now ? 'now' : 'random', value: entry.result as number, at };
      }
      if (name === journalNames.cancelled) {
        return { kind: 'cancelled', reason: cancelReasonOf(entry), at };
      }
      const topic = prefixed('emit:');
      if (topic !== null) return { kind: 'emit', topic, at };
      const signal = prefixed('$signal:');
      if (signal === null) return null;
      const received = entry.status === 'completed';
      const value = received ? (entry.result as { value: Json }).value : null;
      return { kind: 'signal', name: signal, status: received ? 'received' : 'timed-out', value, at };
    }
  }
}

/** The progress of the saga `record` with journal `journal`. */
export function sagaProgress(
  record: SagaRecord,
  journal: readonly JournalEntry[],
  entities: ReadonlyMap<string, AnyEntityDefinition>,
): SagaProgress {
  const calls: SagaCall[] = [];
  let failure: SagaFailure | null = null;
  let failedAt: number | null = null;
  for (const entry of journal) {
    if (entry.kind === 'event' && untag(entry.name).name === journalNames.failed) {
      failure = failureFromEntry(entry);
      failedAt = entry.at;
      continue;
    }
    const call = callOf(entry, entities);
    if (call !== null) calls.push(call);
  }
  const { id, type, status, input, output, reason, createdAt, updatedAt } = record;
  return { id, type, status, input, output, reason, failure, failedAt, createdAt, updatedAt, calls };
}
