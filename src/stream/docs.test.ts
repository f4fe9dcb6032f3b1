/**
 * Type-checks and runs every `ts` code block of docs/stream.md, so the documented examples cannot
 * go stale: each block becomes a temporary module whose `meridian/stream` (and `meridian/testing`,
 * `meridian`) imports point at the package's entry points in src/.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, it } from 'vitest';
import { importsFromSource } from '../../test/package-entries.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const markdown = readFileSync(join(root, 'docs/stream.md'), 'utf8');
const directory = mkdtempSync(join(tmpdir(), 'meridian-stream-docs-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const blocks = [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match, index) => {
  const file = join(directory, `example-${index + 1}.ts`);
  writeFileSync(file, importsFromSource(match[1]!));
  return { file };
});

describe('docs/stream.md examples', () => {
  // tsc on a busy 2-core machine can take most of a minute.
  it('type-check against the public surface', { timeout: 180_000 }, () => {
    writeFileSync(join(directory, 'package.json'), JSON.stringify({ type: 'module' }));
    writeFileSync(
      join(directory, 'tsconfig.json'),
      JSON.stringify({
        extends: join(root, 'tsconfig.json'),
        compilerOptions: {
          typeRoots: [join(root, 'node_modules/@types')],
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
    it(`example ${index + 1} runs`, async () => {
      await import(pathToFileURL(block.file).href);
    });
  });
});
