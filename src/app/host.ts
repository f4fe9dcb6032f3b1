import type { AuthOptions, GatewayOptions } from '../http/index.ts';
import type { Log } from '../log/types.ts';
import { createRuntime, type Runtime } from '../runtime/runtime.ts';
import type { RuntimeOptions } from '../runtime/runtime-types.ts';
import type { Store } from '../store/types.ts';
import { startTracingFromEnv } from '../telemetry/index.ts';
import type { App } from './app.ts';

export interface StartAppOptions {
  /** The store the app's state lives in; the caller opens and closes it. */
  store: Store;
  /** The log the app's topics live in; the caller opens and closes it. */
  log: Log;
  /** Runtime tuning (clock, timers, cluster, drain time...). */
  runtime?: Omit<RuntimeOptions, 'store' | 'log'>;
  /**
   * Who may call the app's routes (docs/security.md): API keys and bearer tokens, a route's
   * `access` deciding; `false` makes every caller an operator (local experiments only). Required.
   */
  auth: AuthOptions | false;
  /** HTTP gateway tuning (body limit, Idempotency-Key TTL, logger...). */
  http?: Omit<GatewayOptions, 'auth' | 'store' | 'clock' | 'timers'>;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
}

export interface RunningApp {
  /** The app's base URL: `http://127.0.0.1:7070`. */
  readonly url: string;
  readonly app: App;
  readonly runtime: Runtime;
  /**
   * Drains: `/readyz` fails at once and requests in flight finish, then the runtime stops, which
   * lets running steps finish and parks every saga where it is (the next start resumes them).
   * Does not close the store or the log.
   */
  close(): Promise<void>;
}

/**
 * Runs an app on a store and a log: a runtime hosting its definitions (resuming every saga in
 * flight) and an HTTP gateway with its routes, `/healthz`, `/readyz`, `/metrics` and
 * `/openapi.json`. The HTTP layer loads here, not when `meridian` is imported.
 */
export async function startApp(app: App, options: StartAppOptions): Promise<RunningApp> {
  const { createGateway } = await import('../http/index.ts');
  // Tracing from the OTEL_* variables, when they turn it on: before anything makes a span.
  const tracing = await startTracingFromEnv(process.env, { serviceName: app.name });
  // Structured JSON logs (pino) with trace ids; the runtime's operating problems go there
  // unless the caller takes them itself.
  const { createLogger } = await import('../telemetry/logger.ts');
  const logger = createLogger({ name: app.name });
  const runtime = createRuntime({
    onProblem: (problem) =>
      logger.warn(
        {
          ...(problem.sagaId === undefined ? {} : { sagaId: problem.sagaId }),
          ...(problem.subscription === undefined ? {} : { subscription: problem.subscription }),
          error: problem.error,
        },
        problem.message,
      ),
    ...options.runtime,
    store: options.store,
    log: options.log,
  });
  runtime.register(...app.definitions);
  for (const singleton of app.singletons ?? []) runtime.singleton(singleton);
  const gateway = await createGateway({
    title: app.name,
    version: app.version ?? '0.1.0',
    ...(app.description === undefined ? {} : { description: app.description }),
    ...options.http,
    auth: options.auth,
    store: options.store,
    ...(options.runtime?.clock === undefined ? {} : { clock: options.runtime.clock }),
    ...(options.runtime?.timers === undefined ? {} : { timers: options.runtime.timers }),
  });
  const closing = new AbortController();
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      closing.abort();
      await gateway.close();
      await runtime.stop();
      // Exports the spans still buffered: the last requests' traces are not lost on a drain.
      await tracing?.shutdown();
    })();
    return closed;
  };
  try {
    await app.routes?.(gateway, { runtime, closing: closing.signal });
    gateway.exposeRuntime(runtime);
    // The console, unless the app serves its own page at `/`.
    if (!gateway.routes().some((route) => route.url === '/' && route.method === 'GET')) {
      const { registerConsole } = await import('../dashboard/index.ts');
      registerConsole(gateway, runtime, {
        ...(options.http?.metricsPrefix === undefined ? {} : { metricsPrefix: options.http.metricsPrefix }),
      });
    }
    gateway.addReadinessCheck('runtime', () =>
      runtime.running
        ? { ok: true, detail: `app '${app.name}' running` }
        : { ok: false, detail: 'the runtime is not running' },
    );
    if (options.runtime?.cluster !== undefined) {
      gateway.addReadinessCheck('cluster', () => ({
        ok: true,
        detail: `owns work partitions [${(runtime.cluster?.owned() ?? []).join(',')}]`,
      }));
    }
    await runtime.start();
    await gateway.ready();
    const url = await gateway.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
    return { url, app, runtime, close };
  } catch (error) {
    await close().catch(() => {
      // The first error is the one worth reporting.
    });
    throw error;
  }
}
