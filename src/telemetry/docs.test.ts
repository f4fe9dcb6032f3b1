// The example in docs/observability.md runs as written (against this checkout) and prints what
// the page says it prints, so the docs cannot drift from the spans.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

const docs = readFileSync(resolve(import.meta.dirname, '../../docs/observability.md'), 'utf8');

it('the docs/observability.md example prints the span tree the page shows', () => {
  const section = docs.split('\n### Example\n')[1]!;
  const code = section.match(/```ts\n([\s\S]*?)```/)![1]!;
  const prints = section.split('It prints:')[1]!.match(/```\n([\s\S]*?)```/)![1]!;
  const directory = mkdtempSync(join(tmpdir(), 'meridian-observability-docs-'));
  try {
    const script = join(directory, 'example.ts');
    writeFileSync(script, importsFromSource(code));
    const child = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toBe(prints);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
