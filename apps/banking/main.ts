#!/usr/bin/env node
// The banking case study's gateway: `npm run banking -- --policies on|off` (`--help` for more).
import { ensureError } from '../../src/index.ts';
import { run } from './cli.ts';

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (thrown) {
  console.error(`banking: ${ensureError(thrown).message}`);
  process.exitCode = 2;
}
