// The example in docs/runtime.md runs as written (against this checkout), so the docs cannot
// drift from the API.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

it('the docs/runtime.md example completes one order and compensates the declined one', () => {
  const docs = readFileSync(resolve(import.meta.dirname, '../../docs/runtime.md'), 'utf8');
  const example = docs.split('## Example')[1]?.match(/```ts\n([\s\S]*?)```/)?.[1];
  expect(example).toBeDefined();
  const directory = mkdtempSync(join(tmpdir(), 'meridian-runtime-docs-'));
  try {
    const script = join(directory, 'example.ts');
    writeFileSync(script, importsFromSource(example!));
    const run = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('order-1: pay-1');
    expect(run.stdout).toContain(
      "order-2: compensated - Step 'charge' failed after 1 attempt(s): card declined",
    );
    expect(run.stdout).toContain('stock: { available: 3, reserved: 2 }');
    expect(run.stdout).toContain("'compensation Inventory.reserve'");
    expect(run.stdout).toContain("compensated: [ 'order-2' ]");
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
