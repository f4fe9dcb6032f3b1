// The package as a user gets it: `npm pack` once, install the tarball into fresh projects (npm
// prefers its cache; the registry is the only network CI allows), and use it from plain
// JavaScript and from TypeScript; then docs/tutorial.md runs as written — `meridian new`, the
// scaffold's own tests, `meridian dev`, and a saga that survives kill -9.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repositoryRoot } from './package-entries.ts';

const workspace = mkdtempSync(join(tmpdir(), 'meridian-package-'));
let tarball: string;

/** The environment every npm and node call here runs with: this Node first on the PATH, npm offline-first and quiet. */
const env = {
  ...process.env,
  PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  MERIDIAN_PACKAGE: '',
};

function run(command: string, args: string[], cwd: string, timeoutMs = 120_000): string {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status ?? result.signal}:\n${result.stdout}\n${result.stderr}`.slice(
        -4000,
      ),
    );
  }
  return result.stdout;
}

/** A free TCP port on 127.0.0.1, for the tutorial's server. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(() => {
  const output = run('npm', ['pack', '--silent', '--pack-destination', workspace], repositoryRoot);
  tarball = join(workspace, output.trim().split('\n').pop()!);
}, 120_000);

afterAll(() => rmSync(workspace, { recursive: true, force: true }));

describe('the packed tarball', () => {
  it('holds the build, the scaffold and the README, and no test code', () => {
    const files = run('tar', ['-tzf', tarball], workspace).trim().split('\n');
    expect(files).toContain('package/dist/index.js');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files).toContain('package/templates/app/src/app.ts');
    // The web console's own files are not TypeScript: the build copies them beside its module.
    for (const asset of ['index.html', 'app.js', 'views.js', 'client.js', 'style.css'])
      expect(files).toContain(`package/dist/dashboard/ui/${asset}`);
    // The scaffold ships its own test (test/app.test.ts); the build ships none of ours.
    const shipped = files.filter((file) => file.startsWith('package/dist/'));
    expect(
      shipped.filter((file) =>
        /\.test\.|harness|fixture|test-schema|crash-child|contract\.|shapes\./.test(file),
      ),
    ).toEqual([]);
    const built = files.filter((file) => file.startsWith('package/dist/') && file.endsWith('.js'));
    const importingVitest = built.filter((file) =>
      readFileSync(join(repositoryRoot, file.slice('package/'.length)), 'utf8').includes("from 'vitest'"),
    );
    expect(importingVitest).toEqual([]);
  });

  it('installs into a fresh project and works from plain JavaScript and from TypeScript', () => {
    const project = join(workspace, 'consumer');
    mkdirSync(project);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
    );
    run('npm', ['install', '--no-save', tarball], project);

    writeFileSync(
      join(project, 'plain.mjs'),
      `import { createRuntime, entity, saga } from 'meridian';
import { openSqliteLog } from 'meridian/log';
import { SqliteStore } from 'meridian/store';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const log = openSqliteLog({ path: join(mkdtempSync(join(tmpdir(), 'plain-')), 'plain.db') });
const store = new SqliteStore({ database: log.db });
const Counter = entity('Counter', { initial: { n: 0 }, commands: { add: (s, i) => ({ state: { n: s.n + i.by }, reply: s.n + i.by }) } });
const Twice = saga('Twice', async (ctx, id) => { await ctx.send(Counter, id, 'add', { by: 1 }); return ctx.send(Counter, id, 'add', { by: 1 }); });
const runtime = createRuntime({ store, log }).register(Counter, Twice);
await runtime.start();
console.log('counted', await (await runtime.startSaga(Twice, 'twice-1', 'c')).result());
await runtime.stop(); await store.close(); await log.close();
`,
    );
    expect(run('node', ['plain.mjs'], project)).toContain('counted 2');

    writeFileSync(
      join(project, 'typed.ts'),
      `import { defineApp, entity, TerminalError } from 'meridian';
import { simulatedGateway } from 'meridian/chaos/http';
import { Type } from 'meridian/http';
import { startTestApp } from 'meridian/testing';

const Account = entity('Account', {
  initial: { balance: 0 },
  commands: {
    deposit(account, input: { amount: number }) {
      if (input.amount <= 0) throw new TerminalError('deposit a positive amount');
      return { state: { balance: account.balance + input.amount }, reply: account.balance + input.amount };
    },
  },
});
const app = defineApp({
  name: 'bank',
  definitions: [Account],
  routes(gateway, { runtime }) {
    gateway.route({
      method: 'POST',
      url: '/accounts/:id/deposit',
      access: { scopes: ['accounts:write'] },
      // The schema types request.params: a typo in 'id' would not compile.
      schema: { params: Type.Object({ id: Type.String({ maxLength: 64 }) }) },
      handler: async (request) => ({ balance: await runtime.send(Account, request.params.id, 'deposit', { amount: 5 }) }),
    });
  },
});
const running = await startTestApp(app);
const balance: number = (await running.runtime.send(Account, 'a-1', 'deposit', { amount: 10 }));
const token = await running.devAuth!.issue('ada', 'customer', { scopes: ['accounts:write'] });
const response = await fetch(running.url + '/accounts/a-1/deposit', {
  method: 'POST',
  headers: { authorization: 'Bearer ' + token },
});
console.log('typed', balance, JSON.stringify(await response.json()));
// A simulation spec's HTTP face, from its own entry: the routes' gateway and services are typed.
export const simulated = simulatedGateway((gateway, { runtime }) => void gateway.route({
  method: 'GET', url: '/accounts/:id', access: 'public', handler: async () => ({ ok: runtime !== undefined }),
}));
await running.destroy();
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'es2024',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          // As in most projects: ioredis's own declarations do not check cleanly (redis-errors has none).
          skipLibCheck: true,
          typeRoots: [join(repositoryRoot, 'node_modules/@types')],
          types: ['node'],
        },
        files: ['typed.ts'],
      }),
    );
    // The declarations in dist/ type a consumer's code, and Node runs the same file with its types stripped.
    run(process.execPath, [join(repositoryRoot, 'node_modules/typescript/bin/tsc'), '-p', '.'], project);
    expect(run('node', ['typed.ts'], project)).toContain('typed 10 {"balance":15}');
  }, 180_000);
});

/** docs/tutorial.md as one bash script: `sh` blocks run as they are, `ts` blocks naming a file are written to it. */
function tutorialScript(markdown: string, port: number): { script: string; expected: string[] } {
  const lines: string[] = ['set -euo pipefail'];
  const expected: string[] = [];
  for (const match of markdown.matchAll(/```(sh|ts|text)\n([\s\S]*?)```/g)) {
    const [, language, body] = match as unknown as [string, string, string];
    if (language === 'sh') lines.push(body.replace(/^export PORT=7070$/m, `export PORT=${port}`));
    if (language === 'text') expected.push(...body.split('\n').filter((line) => line !== ''));
    if (language === 'ts') {
      const file = /^\/\/ file: (\S+)\n/.exec(body)?.[1];
      if (file === undefined)
        throw new Error(`a ts block in docs/tutorial.md names no file:\n${body.slice(0, 200)}`);
      lines.push(`cat > ${file} <<'MERIDIAN_TUTORIAL_EOF'`, body, 'MERIDIAN_TUTORIAL_EOF');
    }
  }
  return { script: lines.join('\n'), expected };
}

describe('docs/tutorial.md', () => {
  it('runs as written: meridian new, its tests, meridian dev, and a saga that survives kill -9', async () => {
    const directory = join(workspace, 'tutorial');
    mkdirSync(directory);
    copyFileSync(tarball, join(directory, 'meridian-0.1.0.tgz'));
    const markdown = readFileSync(join(repositoryRoot, 'docs', 'tutorial.md'), 'utf8');
    const { script, expected } = tutorialScript(markdown, await freePort());
    writeFileSync(join(directory, 'tutorial.sh'), script);
    const output = run('bash', ['tutorial.sh'], directory, 240_000);
    for (const line of expected) {
      const pattern = new RegExp(
        line
          .split('…')
          .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
          .join('.*'),
      );
      expect(output, `docs/tutorial.md promises '${line}'`).toMatch(pattern);
    }
  }, 300_000);
});
