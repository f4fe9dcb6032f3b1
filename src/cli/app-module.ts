import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type App, isApp } from '../app/app.ts';
import { ensureError, ValidationError } from '../errors.ts';

/**
 * Loads an app module: a file whose default export is an app (`export default defineApp({...})`).
 * TypeScript files run as they are (Node strips the types). Every way this can fail names the
 * file and what to do.
 */
export async function loadAppModule(path: string, cwd: string): Promise<App> {
  const file = resolve(cwd, path);
  if (!existsSync(file)) {
    throw new ValidationError(`app module '${path}' does not exist (looked for ${file})`);
  }
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (thrown) {
    const error = ensureError(thrown);
    throw new ValidationError(`app module '${path}' failed to load: ${error.message}`, { cause: error });
  }
  const app = module.default;
  if (!isApp(app)) {
    const exported = Object.keys(module).join(', ') || 'nothing';
    throw new ValidationError(
      `app module '${path}' must export an app as its default export ('export default defineApp({ name, definitions, routes })'): it exports ${exported}`,
    );
  }
  return app;
}
