import { ValidationError } from '../errors.ts';
import type { Gateway } from '../http/index.ts';
import type { Definition } from '../runtime/definitions.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { SingletonDefinition } from '../runtime/singletons.ts';

/** What an app's `routes` receive besides the gateway. */
export interface AppServices {
  /** The runtime hosting the app's definitions (started before the first request is served). */
  readonly runtime: Runtime;
  /** Aborted when the app starts draining: long polls should answer at once instead of holding it up. */
  readonly closing: AbortSignal;
}

/**
 * An app: what `meridian dev <module>` (and `meridian/testing`'s `startTestApp`) runs. The same
 * value runs on either shape: the host brings the store, the log, the runtime and the gateway.
 */
export interface App {
  /** Lower-case letters, digits and '-', starting with a letter: `shop`, `order-service`. */
  readonly name: string;
  /** One line for the OpenAPI document. */
  readonly description?: string;
  /** The app's API version in its OpenAPI document. @default '0.1.0' */
  readonly version?: string;
  /** Entities, sagas and subscriptions the runtime hosts. */
  readonly definitions: readonly Definition[];
  /** Cluster-wide singletons (cleanup, retention), one leader at a time. @default none */
  readonly singletons?: readonly SingletonDefinition[];
  /**
   * Registers the app's HTTP routes on the gateway, once, before it listens. `/healthz`,
   * `/readyz`, `/metrics` and `/openapi.json` are there already.
   */
  readonly routes?: (gateway: Gateway, services: AppServices) => void | Promise<void>;
}

const appNamePattern = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * Checks an app and returns it: an app module's default export is `defineApp({...})`. Bad
 * input fails here, at import, with the field and the rule named, rather than at first request.
 */
export function defineApp<A extends App>(app: A): A {
  if (typeof app !== 'object' || app === null) {
    throw new ValidationError(
      `An app must be an object with 'name' and 'definitions': current value is ${String(app)}`,
    );
  }
  if (typeof app.name !== 'string' || !appNamePattern.test(app.name)) {
    throw new ValidationError(
      `An app's 'name' must be 1-63 lower-case letters, digits or '-', starting with a letter: current value is '${String(app.name)}'`,
    );
  }
  if (!Array.isArray(app.definitions)) {
    throw new ValidationError(
      `App '${app.name}' needs 'definitions': an array of entities, sagas and subscriptions`,
    );
  }
  app.definitions.forEach((definition, index) => {
    const kind = (definition as { kind?: unknown } | null)?.kind;
    if (kind !== 'entity' && kind !== 'saga' && kind !== 'subscription') {
      throw new ValidationError(
        `App '${app.name}': definitions[${index}] is not an entity, saga or subscription (made with entity(), saga() or subscription())`,
      );
    }
  });
  if (app.routes !== undefined && typeof app.routes !== 'function') {
    throw new ValidationError(`App '${app.name}': 'routes' must be a function (gateway, services) => void`);
  }
  return app;
}

/** Whether a value looks like an app (for hosts loading a module). */
export function isApp(value: unknown): value is App {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as App).name === 'string' &&
    Array.isArray((value as App).definitions)
  );
}
