// What importing Meridian costs: each entry is imported in fresh Node processes (so nothing is
// cached between samples) and the time from the import's start to its end is measured inside
// the process, leaving Node's own start-up out. `meridian` is measured as an installed package
// runs it (dist/, built first) and as this checkout runs it (TypeScript source, types stripped).
// Prints one line. Target (issue 15): the root import ≤ 200 ms.
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './stats.ts';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { samples: { type: 'string', default: '15' } } });
const samples = Number(values.samples);
if (!Number.isInteger(samples) || samples < 1 || samples > 200) {
  throw new RangeError(`'--samples' must be an integer in [1, 200]: current value is '${values.samples}'`);
}

execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });

/** Milliseconds one import of `file` took in a fresh process. */
function importMs(file: string): number {
  const script = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(join(root, file)).href)}); process.stdout.write(String(performance.now() - t));`;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
}

const measured = [
  ['meridian (dist)', 'dist/index.js'],
  ['meridian (source)', 'src/index.ts'],
  ['meridian/testing (dist)', 'dist/testing/index.js'],
  ['meridian/http (dist)', 'dist/http/index.js'],
] as const;
const figures = measured.map(([name, file]) => {
  const times = Array.from({ length: samples }, () => importMs(file));
  return `${name} p50 ${median(times).toFixed(0)} ms (max ${Math.max(...times).toFixed(0)})`;
});
console.log(`import cost, ${samples} fresh processes each, Node ${process.version}: ${figures.join(', ')}`);
