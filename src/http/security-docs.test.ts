// The example of docs/security.md runs as written (against this checkout's gateway), and prints
// what its comment says: the docs cannot drift from what the gateway does.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';

it('the docs/security.md example authenticates, authorizes and refuses as its comment says', () => {
  const docs = readFileSync(resolve(import.meta.dirname, '../../docs/security.md'), 'utf8');
  const block = /```ts\n([\s\S]*?)\n```/.exec(docs);
  expect(block).not.toBeNull();
  const code = block![1]!.replace(
    "'meridian/http'",
    JSON.stringify(resolve(import.meta.dirname, 'index.ts')),
  );
  const expected = /console\.log\([^)]*\); \/\/ (.*)$/m.exec(code)![1]!;
  const directory = mkdtempSync(join(tmpdir(), 'meridian-security-docs-'));
  try {
    writeFileSync(join(directory, 'package.json'), JSON.stringify({ type: 'module' }));
    writeFileSync(join(directory, 'example.ts'), code);
    const printed = execFileSync(process.execPath, [join(directory, 'example.ts')], { encoding: 'utf8' });
    expect(printed.trim()).toBe(expected);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
