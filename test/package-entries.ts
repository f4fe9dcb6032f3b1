// The package's entry points, read from package.json's `exports`: each subpath (`meridian`,
// `meridian/http`, ...) with its built file and the source file it is built from. The
// architecture test and the doc tests use it, so the list lives in one place.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const repositoryRoot = resolve(import.meta.dirname, '..');

export interface PackageEntry {
  /** What an importer writes: `meridian`, `meridian/http`. */
  readonly specifier: string;
  /** The built file, relative to the package root: `dist/http/index.js`. */
  readonly built: string;
  /** The source file it is built from, absolute: `/…/src/http/index.ts`. */
  readonly source: string;
}

interface PackageJson {
  name: string;
  exports: Record<string, string | { types: string; default: string }>;
}

export const packageJson = JSON.parse(
  readFileSync(join(repositoryRoot, 'package.json'), 'utf8'),
) as PackageJson;

export const packageEntries: readonly PackageEntry[] = Object.entries(packageJson.exports).flatMap(
  ([subpath, target]) => {
    if (typeof target === 'string') return [];
    const built = target.default.replace(/^\.\//, '');
    const source = join(repositoryRoot, built.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'));
    const specifier = subpath === '.' ? packageJson.name : `${packageJson.name}/${subpath.slice(2)}`;
    return [{ specifier, built, source }];
  },
);

/** Rewrites `from 'meridian…'` in a doc example to the source files of this checkout. */
export function importsFromSource(code: string): string {
  return code.replace(/from '(meridian(?:\/[a-z-]+)*)'/g, (_whole, specifier: string) => {
    const entry = packageEntries.find((candidate) => candidate.specifier === specifier);
    if (entry === undefined)
      throw new Error(`a doc example imports '${specifier}', which package.json does not export`);
    return `from '${entry.source}'`;
  });
}
