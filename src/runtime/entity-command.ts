import { ensureError, ValidationError } from '../errors.ts';
import type { ProducerRecord } from '../log/types.ts';
import type { Json } from '../store/types.ts';
import type { Random } from '../time.ts';
import { encodeJson, toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import type { AnyEntityDefinition, CommandContext, CommandResult } from './definitions.ts';
import { noteEntityChange } from './entity-changes.ts';
import { childTraceparent, traceparentHeader } from './trace.ts';

/** Headers Meridian puts on the records it writes, besides `traceparent`. */
export const headers = {
  entity: 'meridian-entity',
  entityId: 'meridian-entity-id',
  command: 'meridian-command',
  entityVersion: 'meridian-entity-version',
  /** 'true' on the events of the command that deleted the entity. */
  entityDeleted: 'meridian-entity-deleted',
  saga: 'meridian-saga',
  sagaType: 'meridian-saga-type',
} as const;

export type CommandOutcome =
  | { readonly ok: true; readonly reply: Json; readonly version: number; readonly events: number }
  /** The handler rejected the command: nothing changed. Deterministic, so never worth retrying. */
  | { readonly ok: false; readonly error: Error };

export interface CommandRequest {
  readonly entity: AnyEntityDefinition;
  readonly id: string;
  readonly command: string;
  readonly input: unknown;
  /** The traceparent of the span that sent the command; events carry a child of it. */
  readonly traceparent: string;
  readonly nowMs: number;
  readonly random: Random;
}

type AnyHandler = (
  state: unknown,
  input: unknown,
  ctx: CommandContext,
) => CommandResult<unknown, unknown> | undefined;

/**
 * Applies one command inside `scope`: reads the state, runs the handler, writes the new state
 * with the version it read (a stale writer gets a ConflictError) and appends the events — all in
 * the caller's transaction. A handler that throws is a rejection (`ok: false`), and everything
 * the handler decided is serialised before anything is written, so a rejection writes nothing.
 */
export async function applyCommand(scope: UnitScope, request: CommandRequest): Promise<CommandOutcome> {
  const { entity, id, command } = request;
  const handler = Object.hasOwn(entity.commands, command)
    ? ((entity.commands as Record<string, unknown>)[command] as AnyHandler)
    : undefined;
  if (typeof handler !== 'function') {
    return {
      ok: false,
      error: new ValidationError(
        `Entity '${entity.name}' has no command '${command}': its commands are ${Object.keys(entity.commands).join(', ')}`,
      ),
    };
  }
  const stored = await scope.tx.entities.get(entity.name, id);
  const version = stored?.version ?? 0;
  let decided: { state: Json | undefined; events: Json[]; reply: Json; delete: boolean };
  try {
    const state = stored === null ? entity.initialState(id) : stored.state;
    const result = handler(state, request.input, { entity: entity.name, id, version, nowMs: request.nowMs });
    if (result !== undefined && (typeof result !== 'object' || result === null)) {
      throw new ValidationError(
        `Command '${command}' of entity '${entity.name}' must return an object { state?, events?, reply? } or nothing`,
      );
    }
    if (typeof (result as { then?: unknown } | undefined)?.then === 'function') {
      throw new ValidationError(
        `Command '${command}' of entity '${entity.name}' returned a promise: command handlers must be synchronous (do I/O in a saga step)`,
      );
    }
    const events = result?.events ?? [];
    if (!Array.isArray(events)) {
      throw new ValidationError(
        `'events' of command '${command}' of entity '${entity.name}' must be an array`,
      );
    }
    const deleting = result?.delete ?? false;
    if (typeof deleting !== 'boolean' || (deleting && result?.state !== undefined)) {
      throw new ValidationError(
        `'delete' of command '${command}' of entity '${entity.name}' must be a boolean, and true only without 'state'`,
      );
    }
    decided = {
      delete: deleting,
      state:
        result === undefined || result.state === undefined
          ? undefined
          : toJson(`The state of entity '${entity.name}'`, result.state),
      events: events.map((event) => toJson(`An event of entity '${entity.name}'`, event)),
      reply: toJson(`The reply of command '${command}' of entity '${entity.name}'`, result?.reply),
    };
  } catch (error) {
    return { ok: false, error: ensureError(error) };
  }
  let newVersion = version;
  if (decided.state !== undefined) {
    newVersion = await scope.tx.entities.put(entity.name, id, decided.state, version);
  } else if (decided.delete) {
    // Ended: the row goes at the version read (a racing writer gets a ConflictError); its
    // events carry the version it ended at.
    if (stored !== null) await scope.tx.entities.delete(entity.name, id, version);
    newVersion = 0;
  }
  if (decided.state !== undefined || (decided.delete && stored !== null)) {
    noteEntityChange(scope, {
      entity: entity.name,
      id,
      version: newVersion,
      previousVersion: version,
      state: decided.state,
      previousState: stored?.state,
    });
  }
  if (decided.events.length > 0) {
    const records: ProducerRecord[] = decided.events.map((event) => ({
      key: id,
      value: encodeJson(event),
      headers: {
        [traceparentHeader]: childTraceparent(request.traceparent, request.random),
        [headers.entity]: entity.name,
        [headers.entityId]: id,
        [headers.command]: command,
        [headers.entityVersion]: String(decided.delete ? version : newVersion),
        ...(decided.delete ? { [headers.entityDeleted]: 'true' } : {}),
      },
      timestamp: request.nowMs,
    }));
    await scope.publish(entity.eventsTopic, records);
  }
  return { ok: true, reply: decided.reply, version: newVersion, events: decided.events.length };
}
