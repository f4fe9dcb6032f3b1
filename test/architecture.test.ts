// The layout is the architecture: these tests keep dependencies pointing downwards and keep
// the reference apps on Meridian's public API, so a shortcut cannot creep in unnoticed.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageEntries } from './package-entries.ts';

const root = resolve(import.meta.dirname, '..');

/** Lower ranks are lower layers; a file may import from its own rank or below. */
const layerRank: Record<string, number> = {
  '': 0, // src/errors.ts, src/assert.ts, src/time.ts: primitives every layer uses
  telemetry: 1,
  store: 2,
  log: 3, // the SQLite log shares the store's database file and transaction
  cluster: 4,
  stream: 5,
  resilience: 5,
  cache: 5,
  runtime: 6,
  chaos: 7,
  http: 8,
  dashboard: 8,
  app: 9, // an app module's shape and its hosts: runtime + gateway
  testing: 10,
  cli: 10,
};

function sourceFiles(directory: string, options: { tests?: boolean } = {}): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    if (statSync(path).isDirectory()) return sourceFiles(path, options);
    return path.endsWith('.ts') && (options.tests === true || !path.endsWith('.test.ts')) ? [path] : [];
  });
}

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const pattern = /(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  return [...text.matchAll(pattern)].map((match) => resolve(dirname(file), (match[1] ?? match[2]) as string));
}

function layerOf(file: string): string {
  const parts = relative(join(root, 'src'), file).split(sep);
  return parts.length === 1 ? '' : (parts[0] as string);
}

describe('architecture', () => {
  it('every folder under src/ is a known layer', () => {
    const folders = readdirSync(join(root, 'src')).filter((name) =>
      statSync(join(root, 'src', name)).isDirectory(),
    );
    expect(folders.filter((folder) => !(folder in layerRank))).toEqual([]);
  });

  it('src/ files import only from their own layer or lower ones', () => {
    const violations: string[] = [];
    // src/index.ts is the public surface: it gathers every layer, so it sits above them all.
    for (const file of sourceFiles(join(root, 'src')).filter(
      (path) => path !== join(root, 'src', 'index.ts'),
    )) {
      const from = layerOf(file);
      for (const target of relativeImports(file)) {
        const to = layerOf(target);
        if ((layerRank[to] ?? Number.POSITIVE_INFINITY) > (layerRank[from] ?? -1)) {
          violations.push(
            `${relative(root, file)} (${from || 'root'}) imports ${relative(root, target)} (${to})`,
          );
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('nothing under src/ (tests included) imports from apps/: the platform builds and ships without them', () => {
    const violations: string[] = [];
    for (const file of sourceFiles(join(root, 'src'), { tests: true })) {
      for (const target of relativeImports(file)) {
        if (relative(root, target).startsWith(`apps${sep}`))
          violations.push(`${relative(root, file)} imports ${relative(root, target)}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("apps/ use only the package's entry points (what package.json exports)", () => {
    const entries = new Set(packageEntries.map((entry) => entry.source));
    const violations: string[] = [];
    for (const file of sourceFiles(join(root, 'apps'))) {
      for (const target of relativeImports(file)) {
        const path = relative(root, target);
        if (path.startsWith(`src${sep}`) && !entries.has(target)) {
          violations.push(`${relative(root, file)} imports ${path}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });
});
