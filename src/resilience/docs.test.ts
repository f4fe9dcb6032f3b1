/**
 * Type-checks and runs every `ts` code block of docs/resilience.md, so the documented examples
 * cannot go stale: each block is written to a temporary module, with `meridian` pointing at this
 * layer's public surface (plus the shared errors and time ports the root index also exports).
 * Blocks marked `ts needs-redis` run only when MERIDIAN_TEST_REDIS_URL is set.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

const markdown = readFileSync(fileURLToPath(new URL('../../docs/resilience.md', import.meta.url)), 'utf8');
const directory = mkdtempSync(join(tmpdir(), 'meridian-resilience-docs-'));
const source = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const root = source('../../');
writeFileSync(join(directory, 'package.json'), JSON.stringify({ type: 'module' }));
writeFileSync(
  join(directory, 'tsconfig.json'),
  JSON.stringify({
    extends: join(root, 'tsconfig.json'),
    compilerOptions: {
      typeRoots: [join(root, 'node_modules/@types')],
      paths: { ioredis: [join(root, 'node_modules/ioredis/built/index.d.ts')] },
    },
    include: ['*.ts'],
  }),
);

interface Example {
  heading: string;
  code: string;
  needsRedis: boolean;
}

function examples(): Example[] {
  const found: Example[] = [];
  let heading = '';
  const lines = markdown.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.startsWith('## ')) heading = line.slice(3);
    const fence = /^```ts(?: (.*))?$/.exec(line);
    if (fence === null) continue;
    const body: string[] = [];
    for (index++; index < lines.length && lines[index] !== '```'; index++) body.push(lines[index]!);
    found.push({ heading, code: body.join('\n'), needsRedis: fence[1] === 'needs-redis' });
  }
  return found;
}

afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('docs/resilience.md examples', () => {
  const all = examples();
  const files = all.map((example, index) => {
    const file = join(directory, `example-${index + 1}.ts`);
    writeFileSync(file, importsFromSource(example.code));
    return file;
  });

  it('has an example for every policy section', () => {
    const headings = new Set(all.map((example) => example.heading));
    for (const section of [
      'Retry',
      'Timeout',
      'Circuit breaker',
      'Bulkhead',
      'Rate limits',
      'Fallback',
      'Hedging',
    ]) {
      expect(headings).toContain(section);
    }
    expect(headings).toContain('Adaptive concurrency and load shedding');
    expect(headings).toContain('Composing policies');
  });

  it('type-check against the public surface', () => {
    try {
      execFileSync(
        join(root, 'node_modules/.bin/tsc'),
        ['--noEmit', '-p', join(directory, 'tsconfig.json')],
        { encoding: 'utf8' },
      );
    } catch (error) {
      throw new Error(
        `The examples do not type-check:\n${(error as { stdout?: string }).stdout ?? String(error)}`,
      );
    }
  });

  all.forEach((example, index) => {
    // The Redis example needs a real server (MERIDIAN_TEST_REDIS_URL), like the limiter's own tests.
    const skip = example.needsRedis && !process.env.MERIDIAN_TEST_REDIS_URL;
    it.skipIf(skip)(`${example.heading} (example ${index + 1}) runs and its assertions hold`, async () => {
      await import(pathToFileURL(files[index]!).href);
    });
  });
});
