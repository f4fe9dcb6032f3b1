// `npm run markets` prints development tokens that work as their roles say (a reader reads and
// cannot post trades; the operator posts), and without one nothing is served.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnNode } from '../../src/children.fixture.ts';

const directory = mkdtempSync(join(tmpdir(), 'meridian-markets-demo-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('markets demo', () => {
  it('prints an operator token and a reader token that work as their roles say', {
    timeout: 60_000,
  }, async () => {
    const child = spawnNode(join(import.meta.dirname, 'main.ts'), [
      '--port',
      '0',
      '--dir',
      directory,
      '--rate',
      '0',
    ]);
    let output = '';
    const started = await new Promise<{ url: string; operator: string; reader: string }>(
      (resolve, reject) => {
        child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
          output += chunk;
          const url = /serving (http:\S+)/.exec(output)?.[1];
          const operator = /export TOKEN=(\S+)/.exec(output)?.[1];
          const reader = /export READER=(\S+)/.exec(output)?.[1];
          if (url !== undefined && operator !== undefined && reader !== undefined)
            resolve({ url, operator, reader });
        });
        child.once('exit', (code) => reject(new Error(`the demo exited with ${code}: ${output}`)));
      },
    );
    const { url, operator, reader } = started;
    const trades = JSON.stringify({ trades: [{ timestampMs: 1000, symbol: 'AAA', price: '1.00', qty: 1 }] });
    const post = (token?: string) =>
      fetch(`${url}/markets/trades`, {
        method: 'POST',
        body: trades,
        headers: {
          'content-type': 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
      });
    expect((await post()).status).toBe(401);
    expect((await post(reader)).status).toBe(403);
    expect((await post(operator)).status).toBe(202);
    expect((await fetch(`${url}/markets/movers`)).status).toBe(401);
    expect(
      (await fetch(`${url}/markets/movers`, { headers: { authorization: `Bearer ${reader}` } })).status,
    ).toBe(200);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
