// `meridian new <name>`: scaffolds an app that passes its own tests.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { isMeridianError, ValidationError } from '../errors.ts';
import { type CommandOutput, consoleOutput, parseCommand } from './args.ts';

export const NEW_USAGE = `Usage: meridian new <name> [options]

Creates ./<name>: an app with an entity, a saga with compensations, a subscription, HTTP
routes, tests and a README. Then: cd <name> && npm install && npm test && npm run dev.

Options:
  --dir <path>        where to create it (default ./<name>); must not exist or be empty
  --meridian <spec>   the 'meridian' dependency in its package.json: a version range, or a
                      tarball path or URL for a local build [MERIDIAN_PACKAGE] (default ^<this version>)`;

/** The package this command ships in: its own root (dist/cli or src/cli, two levels down). */
const packageRoot = resolve(import.meta.dirname, '../..');
const templateRoot = join(packageRoot, 'templates', 'app');
const namePattern = /^[a-z][a-z0-9-]{0,62}$/;

export interface NewOptions {
  name: string;
  directory: string;
  meridian: string;
}

/** Parses and validates `meridian new`'s arguments; 'help' when the usage was asked for. */
export function parseNewOptions(argv: string[], env: NodeJS.ProcessEnv, cwd: string): NewOptions | 'help' {
  const parsed = parseCommand(
    'meridian new',
    argv,
    { dir: { type: 'string' }, meridian: { type: 'string' } },
    ['name'],
  );
  if (parsed === 'help') return 'help';
  const name = parsed.positionals[0];
  if (name === undefined) throw new ValidationError('meridian new needs a name: meridian new shop');
  if (!namePattern.test(name)) {
    throw new ValidationError(
      `an app name must be 1-63 lower-case letters, digits or '-', starting with a letter: current value is '${name}'`,
    );
  }
  const meridian = parsed.values.meridian ?? (env.MERIDIAN_PACKAGE || `^${packageJson().version}`);
  return {
    name,
    directory: resolve(cwd, parsed.values.dir ?? name),
    meridian: dependencySpec(meridian, cwd),
  };
}

/** A tarball or directory path becomes a `file:` spec with an absolute path, so npm finds it from the app's directory. */
function dependencySpec(spec: string, cwd: string): string {
  const looksLikePath = spec.startsWith('.') || spec.startsWith('/') || spec.endsWith('.tgz');
  return looksLikePath && !spec.includes(':') ? `file:${resolve(cwd, spec)}` : spec;
}

interface PackageJson {
  version: string;
  devDependencies: Record<string, string>;
}

function packageJson(): PackageJson {
  return JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as PackageJson;
}

function templateFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? templateFiles(path) : [path];
  });
}

function appPackageJson(options: NewOptions): string {
  const own = packageJson();
  const manifest = {
    name: options.name,
    version: '0.1.0',
    private: true,
    type: 'module',
    engines: { node: '>=24' },
    scripts: {
      dev: 'meridian dev --watch src/app.ts',
      test: "node --test 'test/**/*.test.ts'",
      typecheck: 'tsc -p .',
    },
    dependencies: { meridian: options.meridian },
    devDependencies: {
      '@types/node': own.devDependencies['@types/node'] ?? '^24',
      typescript: own.devDependencies.typescript ?? '^7',
    },
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/**
 * Writes the app into a temporary sibling directory, then renames it into place, so a failure
 * halfway leaves nothing behind. Returns the files written, relative to the app's directory.
 */
export function scaffold(options: NewOptions): string[] {
  if (existsSync(options.directory) && readdirSync(options.directory).length > 0) {
    throw new ValidationError(
      `'${options.directory}' already exists and is not empty: pick another name or --dir`,
    );
  }
  const staging = `${options.directory}.meridian-new-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  const written: string[] = [];
  try {
    for (const template of templateFiles(templateRoot)) {
      // npm drops files named .gitignore from packages, so the template ships it as 'gitignore'.
      const path = relative(templateRoot, template).replace(/^gitignore$/, '.gitignore');
      mkdirSync(dirname(join(staging, path)), { recursive: true });
      writeFileSync(join(staging, path), readFileSync(template, 'utf8').replaceAll('{{name}}', options.name));
      written.push(path);
    }
    writeFileSync(join(staging, 'package.json'), appPackageJson(options));
    written.push('package.json');
    mkdirSync(dirname(options.directory), { recursive: true });
    if (existsSync(options.directory)) rmSync(options.directory, { recursive: true });
    renameSync(staging, options.directory);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return written.sort();
}

/** Runs `meridian new`. Exit codes: 0 when the app was written, 1 when it could not be, 2 for invalid options. */
export async function run(argv: string[], output: CommandOutput = consoleOutput): Promise<number> {
  let options: NewOptions | 'help';
  try {
    options = parseNewOptions(argv, process.env, process.cwd());
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`${error.message}\n\n${NEW_USAGE}`);
    return 2;
  }
  if (options === 'help') {
    output.out(NEW_USAGE);
    return 0;
  }
  let files: string[];
  try {
    files = scaffold(options);
  } catch (error) {
    if (!isMeridianError(error)) throw error;
    output.err(`meridian new: ${error.message}`);
    return 1;
  }
  const shown = relative(process.cwd(), options.directory) || '.';
  output.out(`Created app '${options.name}' in ${shown}:`);
  for (const file of files) output.out(`  ${file}`);
  output.out('');
  output.out('Next:');
  output.out(`  cd ${shown}`);
  output.out('  npm install');
  output.out('  npm test        # the app end to end');
  output.out('  npm run dev     # serves it on http://127.0.0.1:7070');
  return 0;
}
