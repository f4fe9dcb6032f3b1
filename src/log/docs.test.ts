// The example in docs/log.md runs as written (against this checkout's log), so the docs cannot
// drift from the API.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

it('the docs/log.md example appends, consumes and commits', () => {
  const docs = readFileSync(resolve(import.meta.dirname, '../../docs/log.md'), 'utf8');
  const example = docs.split('## Example')[1]?.match(/```ts\n([\s\S]*?)```/)?.[1];
  expect(example).toBeDefined();
  const directory = mkdtempSync(join(tmpdir(), 'meridian-log-docs-'));
  try {
    const script = join(directory, 'example.ts');
    writeFileSync(script, importsFromSource(example!));
    const run = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/orders\/\d@0/);
    expect(run.stdout).toMatch(/\{ orderId: 1, total: 30 \}/);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
