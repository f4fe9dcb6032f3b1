/**
 * Type-checks and runs every `ts` code block of docs/stream.md, so the documented examples cannot
 * go stale (test/doc-examples.ts).
 */
import { pathToFileURL } from 'node:url';
import { afterAll, describe, it } from 'vitest';
import { docExamples } from '../../test/doc-examples.ts';

const examples = docExamples('docs/stream.md');
afterAll(() => examples.remove());

describe('docs/stream.md examples', () => {
  // tsc on a busy 2-core machine can take most of a minute.
  it('type-check against the public surface', { timeout: 180_000 }, () => {
    examples.typeCheck();
  });

  examples.blocks.forEach((block, index) => {
    it(`example ${index + 1} runs`, async () => {
      await import(pathToFileURL(block.file).href);
    });
  });
});
