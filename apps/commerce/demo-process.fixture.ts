// `commerce demo` as a child process, for the tests that kill, restart or contest it.
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');

export interface DemoProcess {
  readonly child: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  readonly exited: Promise<number | null>;
  /**
   * Its URL, once the banner's last line is out (printed after its signal handlers are in
   * place, so a signal sent then drains instead of killing it); rejects if it exits first or
   * takes more than 20 s.
   */
  readonly url: Promise<string>;
}

/** Starts `commerce demo --traffic off --port 0 --data-dir <dataDir> ...extra`. */
export function startDemoProcess(dataDir: string, extra: string[] = []): DemoProcess {
  const child = spawn(
    process.execPath,
    [
      join(root, 'apps/commerce/cli/main.ts'),
      'demo',
      '--traffic',
      'off',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      ...extra,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORT: '' } },
  );
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const url = new Promise<string>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`the demo did not start within 20 s:\n${output}`)), 20_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Commerce API listening on (http:\/\/\S+)/.exec(output);
      if (match !== null && output.includes('Ctrl-C drains')) {
        clearTimeout(timer);
        done(match[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      fail(new Error(`the demo exited (${code}) before listening:\n${output}`));
    });
  });
  url.catch(() => undefined);
  return { child, output: () => output, exited, url };
}
