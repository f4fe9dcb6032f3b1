import { isMeridianError, ValidationError } from '../errors.ts';
import type { Clock, Random } from '../time.ts';
import type { AppliedRequest } from './cluster-node.ts';
import type { UnitScope } from './commit-path.ts';
import type { AnyEntityDefinition, SagaDefinition } from './definitions.ts';
import { applyCommand } from './entity-command.ts';
import { requestCancel } from './saga-cancellation.ts';
import { createSaga } from './saga-creation.ts';
import type { SagaLaunch } from './saga-execution.ts';
import { deliverSignal } from './saga-signals.ts';
import type { SubscriptionRunner } from './subscription-runner.ts';
import { rejection, startCreatedReply, type WorkRequest } from './work-requests.ts';

/** What applying routed work needs from the runtime of the node that owns it. */
export interface WorkDeps {
  readonly node: string;
  readonly entities: ReadonlyMap<string, AnyEntityDefinition>;
  readonly sagas: ReadonlyMap<string, SagaDefinition>;
  readonly runners: readonly SubscriptionRunner[];
  readonly clock: Clock;
  readonly random: Random;
  /** Runs a saga whose creation committed. */
  launch(launch: SagaLaunch): void;
  /** A signal for the saga committed: its run here looks for it (or it is resumed). */
  signalled(sagaId: string): void;
  /** A cancellation of the saga committed: its run here stops at its next durable boundary. */
  cancelled(sagaId: string, reason: string): void;
}

const done = { ok: true, reply: null, error: null, code: null } as const;

/**
 * Applies work another node routed to this one, inside `scope` (the owner's fenced transaction):
 * a command to one of its entities, the start, signal or cancellation of one of its sagas, or a subscription's record
 * whose handler reaches one of its entities. A request this node cannot apply for a reason that
 * would not change on a retry (an unknown definition, a saga id taken with another input, a
 * rejected command) becomes a rejection reply; anything else throws and is retried.
 */
export async function applyWorkRequest(
  deps: WorkDeps,
  scope: UnitScope,
  request: WorkRequest,
): Promise<AppliedRequest> {
  if (request.kind === 'send') return applySend(deps, scope, request);
  if (request.kind === 'deliver') return deliver(deps, scope, request);
  if (request.kind === 'cancel') return applyCancel(deps, scope, request);
  if (request.kind === 'signal') return applySignal(deps, scope, request);
  const definition = deps.sagas.get(request.saga);
  if (definition === undefined) {
    return rejection(new ValidationError(`Saga '${request.saga}' is not registered on node '${deps.node}'`));
  }
  let launch: SagaLaunch | null;
  try {
    // No savepoint needed: createSaga refuses before it writes anything (an invalid input, an id
    // taken with another input), so a rejection leaves nothing behind in the transaction.
    launch = await createSaga(
      scope,
      definition,
      request.id,
      request.input,
      request.traceparent,
      deps.clock.now(),
    );
  } catch (error) {
    if (isMeridianError(error) && (error.code === 'CONFLICT' || error.code === 'INVALID_ARGUMENT')) {
      return rejection(error);
    }
    throw error;
  }
  return launch === null
    ? done
    : { ...done, reply: startCreatedReply, afterCommit: () => deps.launch(launch) };
}

async function applySignal(
  deps: WorkDeps,
  scope: UnitScope,
  request: Extract<WorkRequest, { kind: 'signal' }>,
): Promise<AppliedRequest> {
  const delivered = await deliverSignal(scope, request.id, request.name, request.value);
  if (delivered instanceof Error) return rejection(delivered);
  return {
    ...done,
    reply: delivered,
    ...(delivered === 'delivered' ? { afterCommit: () => deps.signalled(request.id) } : {}),
  };
}

async function applyCancel(
  deps: WorkDeps,
  scope: UnitScope,
  request: Extract<WorkRequest, { kind: 'cancel' }>,
): Promise<AppliedRequest> {
  const asked = await requestCancel(scope, request.id, request.reason, deps.clock.now());
  if (asked instanceof Error) return rejection(asked);
  return {
    ...done,
    reply: asked,
    ...(asked === 'requested' ? { afterCommit: () => deps.cancelled(request.id, request.reason) } : {}),
  };
}

async function applySend(
  deps: WorkDeps,
  scope: UnitScope,
  request: Extract<WorkRequest, { kind: 'send' }>,
): Promise<AppliedRequest> {
  const definition = deps.entities.get(request.entity);
  if (definition === undefined) {
    return rejection(
      new ValidationError(`Entity '${request.entity}' is not registered on node '${deps.node}'`),
    );
  }
  const outcome = await applyCommand(scope, {
    entity: definition,
    id: request.id,
    command: request.command,
    input: request.input,
    traceparent: request.traceparent,
    nowMs: deps.clock.now(),
    random: deps.random,
  });
  return outcome.ok ? { ...done, reply: outcome.reply } : rejection(outcome.error);
}

/** Hands a forwarded record to this node's runner of its subscription. */
async function deliver(
  deps: WorkDeps,
  scope: UnitScope,
  request: Extract<WorkRequest, { kind: 'deliver' }>,
): Promise<AppliedRequest> {
  const runner = deps.runners.find((candidate) => candidate.definition.name === request.subscription);
  if (runner === undefined) {
    return rejection(
      new ValidationError(`Subscription '${request.subscription}' does not run on node '${deps.node}'`),
    );
  }
  const launches = await runner.deliver(scope, request);
  if (launches.length === 0) return done;
  return {
    ...done,
    afterCommit: () => {
      for (const launch of launches) deps.launch(launch);
    },
  };
}
