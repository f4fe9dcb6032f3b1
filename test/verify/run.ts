// Runs `meridian verify` command lines as the verify tests write them, each as a child process.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, expect } from 'vitest';
import type { VerifyReport } from '../../src/chaos/index.ts';

const root = resolve(import.meta.dirname, '../..');

/** The verify runs still going when the file ends (a failure, a timeout): SIGTERM stops each with its app. */
const running = new Set<ReturnType<typeof spawn>>();
afterAll(() => {
  for (const child of running) child.kill('SIGTERM');
});

/** Runs a `meridian verify` command line (`NAME=value ... meridian verify ...`) with --json. */
export async function verify<Report = VerifyReport>(
  commandLine: string,
): Promise<{ code: number | null; report: Report; stderr: string }> {
  const words = commandLine.split(' ');
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0]!)) {
    const [name, value] = words.shift()!.split('=') as [string, string];
    env[name] = value;
  }
  expect(words[0]).toBe('meridian');
  const child = spawn(process.execPath, [resolve(root, 'src/cli/main.ts'), ...words.slice(1), '--json'], {
    cwd: root,
    // Nothing planted unless the command line says so.
    env: { ...process.env, MERIDIAN_VERIFY_TEST_BUG: '', MERIDIAN_PLANTED_BUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  expect(stdout, stderr).toMatch(/^\{/);
  return { code, report: JSON.parse(stdout) as Report, stderr };
}
