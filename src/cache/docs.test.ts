/**
 * Type-checks and runs every `ts` code block of docs/cache.md, so the documented examples cannot
 * go stale: each block becomes a temporary module whose `meridian/cache` (and `meridian/testing`,
 * `meridian`) imports point at the package's entry points in src/. Blocks marked `ts needs-redis` run only when MERIDIAN_TEST_REDIS_URL is set.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const markdown = readFileSync(join(root, 'docs/cache.md'), 'utf8');
const directory = mkdtempSync(join(tmpdir(), 'meridian-cache-docs-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const blocks = [...markdown.matchAll(/^```ts( needs-redis)?\n([\s\S]*?)^```$/gm)].map((match, index) => {
  const file = join(directory, `example-${index + 1}.ts`);
  writeFileSync(file, importsFromSource(match[2]!));
  return { file, needsRedis: match[1] !== undefined };
});

describe('docs/cache.md examples', () => {
  // tsc over the examples and every entry point they import (the runtime's, the log's, the
  // store's): tens of seconds on a loaded 2-core machine.
  it('type-check against the public surface', { timeout: 120_000 }, () => {
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
    try {
      execFileSync(
        join(root, 'node_modules/.bin/tsc'),
        ['--noEmit', '-p', join(directory, 'tsconfig.json')],
        {
          encoding: 'utf8',
        },
      );
    } catch (error) {
      throw new Error(
        `The examples do not type-check:\n${(error as { stdout?: string }).stdout ?? String(error)}`,
      );
    }
  });

  blocks.forEach((block, index) => {
    it.skipIf(block.needsRedis && !process.env.MERIDIAN_TEST_REDIS_URL)(
      `example ${index + 1} runs`,
      async () => {
        await import(pathToFileURL(block.file).href);
      },
    );
  });
});
