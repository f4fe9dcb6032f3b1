/**
 * Type-checks and runs every `ts` code block of docs/cache.md, so the documented examples cannot
 * go stale (test/doc-examples.ts). Blocks marked `ts needs-redis` run only when
 * MERIDIAN_TEST_REDIS_URL is set.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, it } from 'vitest';
import { docExamples } from '../../test/doc-examples.ts';
import { repositoryRoot } from '../../test/package-entries.ts';

const examples = docExamples('docs/cache.md');
afterAll(() => examples.remove());

describe('docs/cache.md examples', () => {
  // tsc over the examples and every entry point they import (the runtime's, the log's, the
  // store's): tens of seconds on a loaded 2-core machine.
  it('type-check against the public surface', { timeout: 120_000 }, () => {
    examples.typeCheck({
      paths: { ioredis: [join(repositoryRoot, 'node_modules/ioredis/built/index.d.ts')] },
    });
  });

  examples.blocks.forEach((block, index) => {
    it.skipIf(block.marker === 'needs-redis' && !process.env.MERIDIAN_TEST_REDIS_URL)(
      `example ${index + 1} runs`,
      async () => {
        await import(pathToFileURL(block.file).href);
      },
    );
  });
});
