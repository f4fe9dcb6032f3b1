// `commerce demo`'s credentials (issue 16): it stays two commands, so it prints development tokens
// that work as their roles say; `--auth off` exists for local experiments and says so loudly.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDemoProcess } from '../demo-process.fixture.ts';

describe('commerce demo credentials', () => {
  const children: ChildProcess[] = [];
  const directories: string[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
  });

  /** A demo on a fresh data directory, its URL once it is listening, and how it stops. */
  async function demo(extra: string[] = []) {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-demo-auth-'));
    directories.push(directory);
    const started = startDemoProcess(directory, extra);
    children.push(started.child);
    const url = await started.url;
    const stop = async () => {
      started.child.kill('SIGTERM');
      expect(await started.exited).toBe(0);
    };
    return { url, output: started.output, stop };
  }

  it('prints an operator token and a customer token that work as their roles say, and nothing works without one', async () => {
    const { url, output, stop } = await demo();
    const operator = /export TOKEN=(\S+)/.exec(output())?.[1];
    const customer = /export ADA=(\S+)/.exec(output())?.[1];
    expect(operator).toBeDefined();
    expect(customer).toBeDefined();
    expect(output()).not.toContain('WARNING');
    const put = (authorization?: string) =>
      fetch(`${url}/inventory/demo-1`, {
        method: 'PUT',
        headers: {
          'content-type': 'application/json',
          ...(authorization === undefined ? {} : { authorization: `Bearer ${authorization}` }),
        },
        body: JSON.stringify({ available: 5, price: 1 }),
      });
    expect((await put()).status).toBe(401);
    expect((await put(customer)).status).toBe(403);
    expect((await put(operator)).status).toBe(200);
    const read = await fetch(`${url}/inventory/demo-1`, { headers: { authorization: `Bearer ${customer}` } });
    expect(read.status).toBe(200);
    await stop();
  }, 60_000);

  it('--auth off says loudly that every caller is an operator, prints no token, and serves anyone', async () => {
    const { url, output, stop } = await demo(['--auth', 'off']);
    expect(output()).toContain('!!! WARNING: --auth off: every caller is an operator.');
    expect(output()).not.toContain('export TOKEN=');
    const put = await fetch(`${url}/inventory/demo-1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ available: 5, price: 1 }),
    });
    expect(put.status).toBe(200);
    await stop();
    // Its stderr (a pipe of its own) is all read once it exited.
    expect(output()).toContain('meridian demo: WARNING: authentication is off (--auth off)');
  }, 60_000);
});
