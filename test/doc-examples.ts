// The `ts` code blocks of a docs page as temporary modules whose `meridian/...` imports point at
// the package's entry points in src/, and a type-check of them against the public surface: the
// docs tests run every example, so none can go stale.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importsFromSource, repositoryRoot } from './package-entries.ts';

export interface DocExample {
  /** The module written for the block. */
  readonly file: string;
  /** The word after `ts` on the block's fence (`needs-redis`), if any. */
  readonly marker: string | undefined;
}

export interface DocExamples {
  readonly blocks: readonly DocExample[];
  /** Runs tsc over every block; throws with its output when they do not type-check. */
  typeCheck(compilerOptions?: Record<string, unknown>): void;
  /** Deletes the temporary modules. */
  remove(): void;
}

/** Writes each `ts` block of `docsPath` (relative to the repository) as a module of its own. */
export function docExamples(docsPath: string): DocExamples {
  const markdown = readFileSync(join(repositoryRoot, docsPath), 'utf8');
  const directory = mkdtempSync(join(tmpdir(), 'meridian-docs-'));
  const blocks = [...markdown.matchAll(/^```ts(?: ([\w-]+))?\n([\s\S]*?)^```$/gm)].map((match, index) => {
    const file = join(directory, `example-${index + 1}.ts`);
    writeFileSync(file, importsFromSource(match[2]!));
    return { file, marker: match[1] };
  });
  return {
    blocks,
    typeCheck(compilerOptions = {}) {
      writeFileSync(join(directory, 'package.json'), JSON.stringify({ type: 'module' }));
      const typeRoots = [join(repositoryRoot, 'node_modules/@types')];
      writeFileSync(
        join(directory, 'tsconfig.json'),
        JSON.stringify({
          extends: join(repositoryRoot, 'tsconfig.json'),
          compilerOptions: { typeRoots, ...compilerOptions },
          include: ['*.ts'],
        }),
      );
      try {
        const tsc = join(repositoryRoot, 'node_modules/.bin/tsc');
        execFileSync(tsc, ['--noEmit', '-p', join(directory, 'tsconfig.json')], { encoding: 'utf8' });
      } catch (error) {
        const output = (error as { stdout?: string }).stdout ?? String(error);
        throw new Error(`The examples of ${docsPath} do not type-check:\n${output.slice(0, 20_000)}`);
      }
    },
    remove() {
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
