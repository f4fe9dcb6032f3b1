// `meridian new`: its options, what it writes, and that it never writes over an existing
// directory or leaves half an app behind. (That the app passes its own tests on a fresh
// install is test/package.test.ts, through docs/tutorial.md.)
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { parseNewOptions, scaffold } from './new.ts';

const directory = mkdtempSync(join(tmpdir(), 'meridian-new-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('meridian new options', () => {
  it('creates ./<name> depending on this version; --meridian or MERIDIAN_PACKAGE name another source', () => {
    expect(parseNewOptions(['shop'], {}, '/work')).toEqual({
      name: 'shop',
      directory: '/work/shop',
      meridian: '^0.1.0',
    });
    expect(
      parseNewOptions(['shop', '--dir', 'apps/x'], { MERIDIAN_PACKAGE: './meridian-0.1.0.tgz' }, '/work'),
    ).toEqual({
      name: 'shop',
      directory: '/work/apps/x',
      meridian: 'file:/work/meridian-0.1.0.tgz',
    });
    expect(
      parseNewOptions(['shop', '--meridian', '~0.1.0'], { MERIDIAN_PACKAGE: 'x.tgz' }, '/w'),
    ).toMatchObject({
      meridian: '~0.1.0',
    });
  });

  it.each([
    [[], 'meridian new needs a name: meridian new shop'],
    [
      ['Shop'],
      "an app name must be 1-63 lower-case letters, digits or '-', starting with a letter: current value is 'Shop'",
    ],
    [['../x'], "current value is '../x'"],
    [['a', 'b'], "meridian new takes <name> only: 'b' is one too many"],
  ])('%j is refused: %s', (argv, message) => {
    expect(() => parseNewOptions(argv, {}, '/work')).toThrow(ValidationError);
    expect(() => parseNewOptions(argv, {}, '/work')).toThrow(message);
  });
});

describe('scaffolding', () => {
  it('writes the app with its name, a package.json depending on meridian, and a .gitignore', () => {
    const target = join(directory, 'shop');
    const files = scaffold({ name: 'shop', directory: target, meridian: '^0.1.0' });
    expect(files).toEqual([
      '.gitignore',
      'README.md',
      'package.json',
      'src/app.ts',
      'src/checkout.ts',
      'src/payments.ts',
      'src/sales.ts',
      'src/stock.ts',
      'test/app.test.ts',
      'tsconfig.json',
    ]);
    const manifest = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ name: 'shop', type: 'module', dependencies: { meridian: '^0.1.0' } });
    expect(readFileSync(join(target, 'src/app.ts'), 'utf8')).toContain("name: 'shop'");
    expect(readFileSync(join(target, 'README.md'), 'utf8')).toMatch(/^# shop\n/);
  });

  it('refuses a directory that exists and is not empty, and changes nothing in it', () => {
    const target = join(directory, 'taken');
    mkdirSync(target);
    writeFileSync(join(target, 'notes.txt'), 'mine');
    expect(() => scaffold({ name: 'taken', directory: target, meridian: '^0.1.0' })).toThrow(
      'already exists and is not empty',
    );
    expect(readdirSync(target)).toEqual(['notes.txt']);
    expect(readdirSync(directory).filter((name) => name.includes('meridian-new'))).toEqual([]);
  });

  it('fills an empty directory that exists', () => {
    const target = join(directory, 'empty');
    mkdirSync(target);
    scaffold({ name: 'empty', directory: target, meridian: '^0.1.0' });
    expect(existsSync(join(target, 'src/app.ts'))).toBe(true);
  });
});
