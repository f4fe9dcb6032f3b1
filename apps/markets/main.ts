#!/usr/bin/env node
// The markets case study: `npm run markets -- replay ...`, `npm run markets` for the live demo.
import { ensureError, isMeridianError } from '../../src/index.ts';
import { run } from './cli.ts';

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (thrown) {
  const error = ensureError(thrown);
  console.error(`markets: ${isMeridianError(error) ? `${error.code}: ` : ''}${error.message}`);
  process.exitCode = 2;
}
