// Apps: an app module's shape (defineApp) and the hosts that run one, on the embedded shape or
// on a store and a log the caller opened.
export { type App, type AppServices, defineApp, isApp } from './app.ts';
export { type EmbeddedAppOptions, type RunningEmbeddedApp, startEmbeddedApp } from './embedded.ts';
export { type RunningApp, type StartAppOptions, startApp } from './host.ts';
