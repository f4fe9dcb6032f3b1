// `meridian dev`: its options, and a clear error naming the file for every way an app module
// can be wrong, before anything is opened.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { loadAppModule } from './app-module.ts';
import { parseDevOptions } from './dev.ts';

const directory = mkdtempSync(join(tmpdir(), 'meridian-dev-'));
const meridian = resolve(import.meta.dirname, '../index.ts');
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function module(name: string, text: string): string {
  writeFileSync(join(directory, name), text);
  return name;
}

describe('meridian dev options', () => {
  it('defaults to ./.meridian on 127.0.0.1:7070; PORT and the flags override them', () => {
    expect(parseDevOptions(['src/app.ts'], {})).toEqual({
      module: 'src/app.ts',
      dataDir: '.meridian',
      host: '127.0.0.1',
      port: 7070,
    });
    expect(parseDevOptions(['app.ts'], { PORT: '8080' }).valueOf()).toMatchObject({ port: 8080 });
    expect(parseDevOptions(['app.ts', '--port', '0', '--data-dir', 'd', '--host', '0.0.0.0'], {})).toEqual({
      module: 'app.ts',
      dataDir: 'd',
      host: '0.0.0.0',
      port: 0,
    });
    expect(parseDevOptions(['--help'], {})).toBe('help');
  });

  it.each([
    [[], 'meridian dev needs an app module: meridian dev src/app.ts'],
    [['a.ts', 'b.ts'], "meridian dev takes <module> only: 'b.ts' is one too many"],
    [['a.ts', '--port', '70000'], "'--port' must be an integer in [0, 65535]: current value is '70000'"],
    [['a.ts', '--verbose'], "meridian dev: Unknown option '--verbose'"],
  ])('%j is refused: %s', (argv, message) => {
    expect(() => parseDevOptions(argv, {})).toThrow(ValidationError);
    expect(() => parseDevOptions(argv, {})).toThrow(message);
  });
});

describe('loading an app module', () => {
  it('returns the default export when it is an app', async () => {
    const file = module(
      'good.ts',
      `import { defineApp, entity } from ${JSON.stringify(meridian)};
const Counter = entity('Counter', { initial: { n: 0 }, commands: { add: (s: { n: number }) => ({ state: { n: s.n + 1 } }) } });
export default defineApp({ name: 'good', definitions: [Counter] });`,
    );
    const app = await loadAppModule(file, directory);
    expect(app.name).toBe('good');
    expect(app.definitions.map((definition) => definition.name)).toEqual(['Counter']);
  });

  it.each([
    ['missing.ts', undefined, "app module 'missing.ts' does not exist"],
    [
      'named.ts',
      'export const app = { name: "x" };',
      "app module 'named.ts' must export an app as its default export ('export default defineApp({ name, definitions, routes })'): it exports app",
    ],
    [
      'broken.ts',
      'throw new Error("boom at import");',
      "app module 'broken.ts' failed to load: boom at import",
    ],
    [
      'invalid.ts',
      `import { defineApp } from ${JSON.stringify(meridian)}; export default defineApp({ name: 'Bad Name', definitions: [] });`,
      "app module 'invalid.ts' failed to load: An app's 'name' must be 1-63 lower-case letters, digits or '-', starting with a letter: current value is 'Bad Name'",
    ],
  ])('%s is refused with a message naming it', async (name, text, message) => {
    if (text !== undefined) module(name, text);
    await expect(loadAppModule(name, directory)).rejects.toThrow(message);
  });
});
