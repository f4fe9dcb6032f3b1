import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The console's files: its own (ui/), and the front-end libraries it runs on, served from the
 * installed packages as they ship (Preact, its hooks, htm, uPlot), so `npm start` serves the
 * console with no build step. A fixed table: nothing outside it is ever read.
 */
const require = createRequire(import.meta.url);
/** The folder of a package's resolved entry file (`dist/` for these four). */
const entryDirectory = (name: string) => dirname(require.resolve(name));
const ui = join(import.meta.dirname, 'ui');

const javascript = 'text/javascript; charset=utf-8';
const table: Record<string, { path: () => string; type: string }> = {
  'index.html': { path: () => join(ui, 'index.html'), type: 'text/html; charset=utf-8' },
  'app.js': { path: () => join(ui, 'app.js'), type: javascript },
  'views.js': { path: () => join(ui, 'views.js'), type: javascript },
  'client.js': { path: () => join(ui, 'client.js'), type: javascript },
  'style.css': { path: () => join(ui, 'style.css'), type: 'text/css; charset=utf-8' },
  'preact.js': { path: () => join(entryDirectory('preact'), 'preact.mjs'), type: javascript },
  'hooks.js': {
    path: () => join(entryDirectory('preact/hooks'), 'hooks.mjs'),
    type: javascript,
  },
  'htm.js': { path: () => join(entryDirectory('htm'), 'htm.module.js'), type: javascript },
  'uplot.js': { path: () => join(entryDirectory('uplot'), 'uPlot.esm.js'), type: javascript },
  'uplot.css': {
    path: () => join(entryDirectory('uplot'), 'uPlot.min.css'),
    type: 'text/css; charset=utf-8',
  },
};

export const assetNames: readonly string[] = Object.keys(table);

const cache = new Map<string, Promise<Buffer>>();

/** One of the console's files, read once; undefined for a name not in the table. */
export function consoleAsset(name: string): { body: Promise<Buffer>; type: string } | undefined {
  const entry = Object.hasOwn(table, name) ? table[name] : undefined;
  if (entry === undefined) return undefined;
  let body = cache.get(name);
  if (body === undefined) {
    body = readFile(entry.path());
    // A failed read is not kept: the next request tries again.
    body.catch(() => cache.delete(name));
    cache.set(name, body);
  }
  return { body, type: entry.type };
}
