// The executed example of docs/verify.md: the command under "Example: a planted bug, caught"
// runs as written (against this checkout) and prints what the page says it prints, but for the
// time it took.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const docs = readFileSync(resolve(root, 'docs/verify.md'), 'utf8');

it('the docs/verify.md simulation example prints what the page says', () => {
  const section = docs.split('\n### Example: a planted bug, caught\n')[1]!;
  const command = section.match(/```sh\n([\s\S]*?)\n```/)![1]!;
  const prints = section.split('It prints:')[1]!.match(/```\n([\s\S]*?)```/)![1]!;
  const words = command.split(' ');
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0]!)) {
    const [name, value] = words.shift()!.split('=') as [string, string];
    env[name] = value;
  }
  expect(words[0]).toBe('meridian');
  const child = spawnSync(process.execPath, [resolve(root, 'src/cli/main.ts'), ...words.slice(1)], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect(child.status, child.stderr).toBe(1);
  expect(child.stdout.replace(/ runs in [\d.]+ s\)/, ' runs in … s)')).toBe(prints);
}, 150_000);
