// The examples in docs/runtime.md run as written (against this checkout), so the docs cannot
// drift from the API.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

const docs = readFileSync(resolve(import.meta.dirname, '../../docs/runtime.md'), 'utf8');

/** The first ```ts block after the heading `heading`, and the block after it (what it prints). */
function example(heading: string): { code: string; prints: string } {
  const section = docs.split(`\n${heading}\n`)[1];
  const code = section?.match(/```ts\n([\s\S]*?)```/)?.[1];
  const prints = section?.split('It prints:')[1]?.match(/```\n([\s\S]*?)```/)?.[1];
  expect(code, `a ts block under '${heading}'`).toBeDefined();
  return { code: code!, prints: prints ?? '' };
}

/** Runs `code` with 'meridian' pointing at this checkout; returns what it printed. */
function run(code: string): string {
  const directory = mkdtempSync(join(tmpdir(), 'meridian-runtime-docs-'));
  try {
    const script = join(directory, 'example.ts');
    writeFileSync(script, importsFromSource(code));
    const child = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    return child.stdout;
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

it('the docs/runtime.md example completes one order and compensates the declined one', () => {
  const stdout = run(example('## Example').code);
  expect(stdout).toContain('order-1: pay-1');
  expect(stdout).toContain("order-2: compensated - Step 'charge' failed after 1 attempt(s): card declined");
  expect(stdout).toContain('stock: { available: 3, reserved: 2 }');
  expect(stdout).toContain("'compensation Inventory.reserve'");
  expect(stdout).toContain("compensated: [ 'order-2' ]");
});

it('the docs/runtime.md concurrency example prints what the page says it prints', () => {
  const { code, prints } = example('## Concurrency, signals, cancellation and progress');
  expect(run(code)).toBe(prints);
});
