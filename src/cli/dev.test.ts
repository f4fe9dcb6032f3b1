// `meridian dev`: its options, and a clear error naming the file for every way an app module
// can be wrong, before anything is opened.
import { spawn } from 'node:child_process';
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
      watch: false,
      auth: true,
      takeOver: false,
    });
    expect(parseDevOptions(['app.ts'], { PORT: '8080' }).valueOf()).toMatchObject({ port: 8080 });
    expect(
      parseDevOptions(['app.ts', '--port', '0', '--data-dir', 'd', '--host', '0.0.0.0', '--watch'], {}),
    ).toEqual({
      module: 'app.ts',
      dataDir: 'd',
      host: '0.0.0.0',
      port: 0,
      watch: true,
      auth: true,
      takeOver: false,
    });
    expect(parseDevOptions(['app.ts', '--auth', 'off', '--take-over'], {})).toMatchObject({
      auth: false,
      takeOver: true,
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

describe('meridian dev --watch', () => {
  it('restarts the app, draining first, when its module changes; SIGTERM stops it with exit 0', async () => {
    const app = (version: number) =>
      `import { defineApp } from ${JSON.stringify(meridian)};
export default defineApp({ name: 'watched', definitions: [], routes(gateway) {
  gateway.route({ method: 'GET', url: '/version', access: 'public', handler: async () => ({ version: ${version} }) });
} });`;
    const file = join(directory, module('watched.ts', app(1)));
    const child = spawn(
      process.execPath,
      [
        resolve(import.meta.dirname, 'main.ts'),
        'dev',
        file,
        '--watch',
        '--port',
        '0',
        '--data-dir',
        join(directory, 'watched'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const exited = new Promise<number | null>((done) => child.once('exit', done));
    /** The URL of the `count`-th banner, once it is out (bounded). */
    const banner = (count: number) =>
      new Promise<string>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`no banner ${count} within 20 s:\n${output}`)), 20_000);
        const check = () => {
          const urls = [...output.matchAll(/App 'watched' listening on (http:\/\/\S+)/g)].map(
            (match) => match[1]!,
          );
          if (urls.length < count) return;
          clearTimeout(timer);
          done(urls[count - 1]!);
        };
        child.stdout!.on('data', check);
        check();
      });
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout!.prependListener('data', collect);
    child.stderr!.on('data', collect);
    try {
      const first = await banner(1);
      expect(await (await fetch(`${first}/version`)).json()).toEqual({ version: 1 });
      writeFileSync(file, app(2));
      const second = await banner(2);
      expect(await (await fetch(`${second}/version`)).json()).toEqual({ version: 2 });
      expect(output).toContain('SIGTERM: draining');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output.match(/Stopped cleanly\./g)).toHaveLength(2);
    } finally {
      // SIGTERM first: this process relays it to the watch-mode processes it started.
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  }, 60_000);
});

describe('meridian dev --auth off', () => {
  it('says loudly that every caller is an operator, prints no token, and serves operator routes to anyone', async () => {
    const file = join(
      directory,
      module(
        'open.ts',
        `import { defineApp } from ${JSON.stringify(meridian)};
export default defineApp({ name: 'open', definitions: [], routes(gateway) {
  gateway.route({ method: 'GET', url: '/secret', handler: async () => ({ secret: 42 }) });
} });`,
      ),
    );
    const child = spawn(
      process.execPath,
      [
        resolve(import.meta.dirname, 'main.ts'),
        'dev',
        file,
        '--auth',
        'off',
        '--port',
        '0',
        '--data-dir',
        join(directory, 'open'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.once('exit', done));
    try {
      const url = await new Promise<string>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`no banner within 20 s:\n${output}`)), 20_000);
        child.stdout!.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const match = /App 'open' listening on (http:\/\/\S+)/.exec(output);
          if (match === null) return;
          clearTimeout(timer);
          done(match[1]!);
        });
      });
      // The route is operator-only (no access given): with auth off, anyone is that operator.
      expect(await (await fetch(`${url}/secret`)).json()).toEqual({ secret: 42 });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output).toContain(
        'meridian dev: WARNING: --auth off: every caller is an operator; anyone who reaches the port can do anything',
      );
      expect(output).not.toContain('export TOKEN=');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    }
  }, 60_000);
});
