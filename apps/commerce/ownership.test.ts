// Issue 16: one owner per data directory, visibly. A second `commerce demo` on a directory in use
// refuses, naming the process that holds it; with --take-over it starts, and the process it
// took over exits with a message saying by whom, instead of lingering unready.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDemoProcess as demo } from './demo-process.fixture.ts';

/** At most `ms` for `promise`, so a process that never exits fails the test instead of hanging it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, fail) =>
      setTimeout(() => fail(new Error(`${what} did not happen within ${ms} ms`)), ms),
    ),
  ]);
}

describe('one owner per data directory', () => {
  const children: ChildProcess[] = [];
  let directory: string | undefined;
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  });

  it('refuses a second process naming the first, and lets --take-over replace it, the first exiting with a clear message', async () => {
    directory = mkdtempSync(join(tmpdir(), 'meridian-owner-'));
    const first = demo(directory);
    children.push(first.child);
    await within(first.url, 20_000, 'the first demo listening');

    const second = demo(directory);
    children.push(second.child);
    expect(await within(second.exited, 20_000, 'the second demo exiting')).toBe(1);
    expect(second.output()).toContain(`is in use by process ${first.child.pid}`);
    expect(second.output()).toContain('--take-over');

    const third = demo(directory, ['--take-over']);
    children.push(third.child);
    await within(third.url, 20_000, 'the taking-over demo listening');
    expect(third.output()).toContain(`Took the data directory over from process ${first.child.pid}`);
    expect(await within(first.exited, 10_000, 'the taken-over demo exiting')).toBe(3);
    expect(first.output()).toContain(`process ${third.child.pid} on`);
    expect(first.output()).toContain('took the data directory');

    third.child.kill('SIGTERM');
    expect(await within(third.exited, 20_000, 'the last demo draining')).toBe(0);
    // A clean exit gives the directory up: the next start needs no --take-over.
    const fourth = demo(directory);
    children.push(fourth.child);
    await within(fourth.url, 20_000, 'a fresh demo listening');
  }, 90_000);

  it('takes over a directory whose holder died without giving it up (a kill -9 leaves the file)', async () => {
    directory = mkdtempSync(join(tmpdir(), 'meridian-owner-'));
    const first = demo(directory);
    children.push(first.child);
    await within(first.url, 20_000, 'the first demo listening');
    first.child.kill('SIGKILL');
    await first.exited;
    const second = demo(directory);
    children.push(second.child);
    await within(second.url, 20_000, 'the next demo listening');
    expect(second.output()).not.toContain('Took the data directory over');
  }, 60_000);
});
