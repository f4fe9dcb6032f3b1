/**
 * `meridian/testing`: what an app's tests need. A test runs the app on the embedded shape in a
 * temporary directory (real SQLite, real HTTP on a free port), and can restart it on the same
 * directory to prove that state and sagas in flight survive; time and randomness can be faked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { App } from '../app/app.ts';
import { type EmbeddedAppOptions, type RunningEmbeddedApp, startEmbeddedApp } from '../app/embedded.ts';

export { flushMicrotasks, ManualClock, seededRandom } from '../time.ts';

export interface TestApp extends RunningEmbeddedApp {
  /** The temporary directory holding the app's SQLite file. */
  readonly dataDir: string;
  /** Drains and closes the app, then starts it again on the same directory; returns the new instance. */
  restart(): Promise<TestApp>;
  /** Closes the app and deletes its directory. */
  destroy(): Promise<void>;
}

export type TestAppOptions = Partial<Omit<EmbeddedAppOptions, 'host'>>;

/**
 * Starts an app for a test on 127.0.0.1 and a free port, in a new temporary directory unless
 * `dataDir` names one. `destroy()` it when the test ends.
 */
export async function startTestApp(app: App, options: TestAppOptions = {}): Promise<TestApp> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `meridian-${app.name}-`));
  let running: RunningEmbeddedApp;
  try {
    running = await startEmbeddedApp(app, { port: 0, ...options, dataDir, host: '127.0.0.1' });
  } catch (error) {
    if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    ...running,
    dataDir,
    async restart() {
      await running.close();
      return startTestApp(app, { ...options, dataDir });
    },
    async destroy() {
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
