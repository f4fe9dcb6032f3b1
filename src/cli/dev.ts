// `meridian dev <module>`: runs any app module on the embedded shape with its HTTP routes.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunningEmbeddedApp } from '../app/embedded.ts';
import { isMeridianError, ValidationError } from '../errors.ts';
import { loadAppModule } from './app-module.ts';
import { type CommandOutput, choice, consoleOutput, parseCommand, port } from './args.ts';

export const DEV_USAGE = `Usage: meridian dev <module> [options]

Runs an app module on the embedded shape: one SQLite file in --data-dir holds its log and its
store, the runtime hosts its entities, sagas and subscriptions, and an HTTP gateway serves its
routes beside /healthz, /readyz, /metrics and /openapi.json. <module> is a .ts or .js file
whose default export is an app: 'export default defineApp({ name, definitions, routes })'.
Starting again on the same data directory resumes every saga in flight, even after kill -9.

Options:
  --data-dir <path>   where the SQLite file lives, created when missing (default ./.meridian)
  --host <address>    address to listen on (default 127.0.0.1)
  --port <n>          port to listen on, 0 for any free one [PORT] (default 7070)
  --watch             restart (draining first) whenever the module or a file it imports changes
  --auth on|off       'off' makes every caller an operator: local experiments only (default on:
                      an operator's development token, signed with a secret kept in the data
                      directory, is printed at start; docs/security.md)
  --take-over         take the data directory over from the process using it (it exits)`;

export interface DevOptions {
  module: string;
  dataDir: string;
  host: string;
  port: number;
  watch: boolean;
  auth: boolean;
  takeOver: boolean;
}

/** Parses and validates `meridian dev`'s arguments; 'help' when the usage was asked for. */
export function parseDevOptions(argv: string[], env: NodeJS.ProcessEnv): DevOptions | 'help' {
  const parsed = parseCommand(
    'meridian dev',
    argv,
    {
      'data-dir': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      watch: { type: 'boolean' },
      auth: { type: 'string' },
      'take-over': { type: 'boolean' },
    },
    ['module'],
  );
  if (parsed === 'help') return 'help';
  const module = parsed.positionals[0];
  if (module === undefined) {
    throw new ValidationError(`meridian dev needs an app module: meridian dev src/app.ts`);
  }
  const dataDir = parsed.values['data-dir'] ?? '.meridian';
  if (dataDir.trim() === '')
    throw new ValidationError(`'--data-dir' must be a directory path: current value is ''`);
  return {
    module,
    dataDir,
    host: parsed.values.host ?? '127.0.0.1',
    port: port(parsed.values.port, env, 7070),
    watch: parsed.values.watch === true,
    auth: choice('--auth', parsed.values.auth, 'on', ['on', 'off'] as const) === 'on',
    takeOver: parsed.values['take-over'] === true,
  };
}

function banner(options: DevOptions, running: RunningEmbeddedApp): string[] {
  const kinds = new Map<string, string[]>();
  for (const definition of running.app.definitions) {
    kinds.set(definition.kind, [...(kinds.get(definition.kind) ?? []), definition.name]);
  }
  const listed = ['entity', 'saga', 'subscription']
    .filter((kind) => kinds.has(kind))
    .map(
      (kind) =>
        `  ${`${kind === 'entity' ? 'entities' : `${kind}s`}`.padEnd(15)}  ${kinds.get(kind)!.join(', ')}`,
    );
  return [
    `App '${running.app.name}' listening on ${running.url}  (pid ${process.pid})`,
    `  data directory   ${resolve(options.dataDir)}`,
    ...listed,
    `  OpenAPI          ${running.url}/openapi.json    probes /healthz /readyz, metrics /metrics`,
    'Ctrl-C drains and exits; starting again on the same data directory resumes what was in flight.',
  ];
}

/** Set for the processes `--watch` starts, so that they know a signal may reach them more than once. */
const watchedVariable = 'MERIDIAN_DEV_WATCHED';

/**
 * `--watch`: runs the same command without it under Node's own watch mode, which restarts the
 * process (SIGTERM, so it drains) whenever a file it imported changes. Signals sent to this
 * process reach the child; resolves with the child's exit code.
 */
function watch(argv: string[]): Promise<number> {
  const main = fileURLToPath(
    new URL(`./main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
  );
  const child = spawn(
    process.execPath,
    ['--watch', main, 'dev', ...argv.filter((arg) => arg !== '--watch')],
    {
      stdio: 'inherit',
    },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((done) => {
    child.once('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      done(code ?? (signal === null ? 1 : 128));
    });
  });
}

/** Waits for SIGINT/SIGTERM, then drains; a second signal exits at once (safe: sagas resume from their journals). */
function drainOnSignal(running: RunningEmbeddedApp, output: CommandOutput): Promise<number> {
  // Under --watch one Ctrl-C arrives several times (from the terminal, and relayed by the watch
  // parents): repeats within this window are that same signal, not a second one.
  const repeatWindowMs = process.env[watchedVariable] === '1' ? 1000 : 0;
  return new Promise<number>((done) => {
    let draining = false;
    let firstAtMs = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (draining && performance.now() - firstAtMs < repeatWindowMs) return;
      if (draining) {
        output.err(`${signal} again: exiting now; sagas in flight resume on the next start.`);
        process.exit(130);
      }
      draining = true;
      firstAtMs = performance.now();
      output.out(`${signal}: draining (requests in flight finish, sagas park where they are)...`);
      running.close().then(
        () => {
          output.out('Stopped cleanly.');
          done(0);
        },
        (error: unknown) => {
          output.err(`meridian dev: draining failed: ${(error as Error).message}`);
          done(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * Runs `meridian dev`. Exit codes: 0 after a clean drain, 1 when the module or the app could not
 * start, 2 for invalid options; 130 on a second signal.
 */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: DevOptions | 'help';
  try {
    options = parseDevOptions(argv, process.env);
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`${error.message}\n\n${DEV_USAGE}`);
    return 2;
  }
  if (options === 'help') {
    output.out(DEV_USAGE);
    return 0;
  }
  if (options.watch) return watch(argv);
  let running: RunningEmbeddedApp;
  try {
    const app = await loadAppModule(options.module, process.cwd());
    const { startEmbeddedApp } = await import('../app/embedded.ts');
    running = await startEmbeddedApp(app, {
      dataDir: options.dataDir,
      host: options.host,
      port: options.port,
      ...(options.auth ? {} : { auth: false }),
      takeOver: options.takeOver,
      onTakenOver: (by) => {
        output.err(
          `meridian dev: process ${by.pid} on ${by.host} took the data directory over; stopping this one.`,
        );
        process.kill(process.pid, 'SIGTERM');
      },
      runtime: { onProblem: (problem) => output.err(`runtime: ${problem.message}: ${problem.error}`) },
    });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'EADDRINUSE') {
      output.err(
        `meridian dev: port ${options.port} on ${options.host} is in use: pass --port <n> (or PORT=<n>), or stop the other process`,
      );
      return 1;
    }
    if (!isMeridianError(error)) throw error;
    output.err(`meridian dev: ${error.code}: ${error.message}`);
    return 1;
  }
  const lines = banner(options, running);
  const last = lines.pop()!;
  for (const line of lines) output.out(line);
  if (running.devAuth === undefined) {
    output.err(
      'meridian dev: WARNING: --auth off: every caller is an operator; anyone who reaches the port can do anything',
    );
  } else {
    output.out(`  auth             export TOKEN=${await running.devAuth.issue('dev-operator', 'operator')}`);
    output.out(`                   (an operator's development token, 24 h: Authorization: Bearer $TOKEN)`);
  }
  output.out(last);
  return drainOnSignal(running, output);
}
