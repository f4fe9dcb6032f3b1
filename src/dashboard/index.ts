/**
 * `meridian/dashboard`: the live web console every node serves (docs/observability.md).
 * `startApp` registers it on its gateway; an app that builds its own gateway calls
 * `registerConsole(gateway, runtime)`.
 */
export { type ConsoleOptions, registerConsole } from './console.ts';
export type { ConsoleSnapshot } from './events.ts';
