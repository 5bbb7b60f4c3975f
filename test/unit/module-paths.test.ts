import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModulePathError, resolveModulePath, type ModulePathErrorCode } from '../../src/modules/paths.js';

let sandbox: string;
let root: string;
let outside: string;

beforeAll(() => {
  sandbox = mkdtempSync(path.join(tmpdir(), 'helios-paths-'));
  root = path.join(sandbox, 'modules');
  outside = path.join(sandbox, 'outside');
  mkdirSync(path.join(root, 'ml'), { recursive: true });
  mkdirSync(path.join(root, 'src', 'trading', 'services'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(path.join(root, 'ml', 'predictor_v2.js'), 'export default {};');
  writeFileSync(path.join(root, 'ml', 'esm_only.mjs'), 'export default {};');
  writeFileSync(path.join(root, 'ml', 'legacy.cjs'), 'module.exports = {};');
  writeFileSync(path.join(root, 'ml', 'weights.json'), '{}');
  writeFileSync(path.join(root, 'top.js'), 'export default {};');
  writeFileSync(path.join(root, 'src', 'trading', 'services', 'paper_trading_v2.js'), 'export default {};');
  mkdirSync(path.join(root, 'folder.js'));
  writeFileSync(path.join(outside, 'secret.js'), 'export default {};');
  // Symlinks: one staying inside the root, three leading out (file, folder, relative).
  symlinkSync(path.join(root, 'ml', 'predictor_v2.js'), path.join(root, 'alias.js'));
  symlinkSync(path.join(outside, 'secret.js'), path.join(root, 'escape.js'));
  symlinkSync(outside, path.join(root, 'linked_dir'));
  symlinkSync('../outside/secret.js', path.join(root, 'relative_escape.js'));
  symlinkSync(path.join(root, 'missing.js'), path.join(root, 'dangling.js'));
});

afterAll(() => {
  rmSync(sandbox, { recursive: true, force: true });
});

function failure(modulePath: string, base: string = root): ModulePathError {
  try {
    resolveModulePath(base, modulePath);
  } catch (error) {
    expect(error).toBeInstanceOf(ModulePathError);
    return error as ModulePathError;
  }
  throw new Error(`"${modulePath}" was accepted`);
}

function expectRefused(modulePath: string, code: ModulePathErrorCode, why: RegExp): void {
  const error = failure(modulePath);
  expect(error.code).toBe(code);
  expect(error.message).toMatch(why);
  expect(error.modulePath).toBe(modulePath);
}

describe('resolveModulePath: accepted forms', () => {
  it('resolves the file form', () => {
    expect(resolveModulePath(root, 'ml/predictor_v2.js')).toEqual({
      absolutePath: path.join(root, 'ml', 'predictor_v2.js'),
      relativePath: 'ml/predictor_v2.js',
    });
    expect(resolveModulePath(root, 'top.js').relativePath).toBe('top.js');
    expect(resolveModulePath(root, 'ml/legacy.cjs').relativePath).toBe('ml/legacy.cjs');
  });

  it("resolves the seed's dotted form to .js, then .mjs", () => {
    expect(resolveModulePath(root, 'ml.predictor_v2')).toEqual({
      absolutePath: path.join(root, 'ml', 'predictor_v2.js'),
      relativePath: 'ml/predictor_v2.js',
    });
    expect(resolveModulePath(root, 'ml.esm_only').relativePath).toBe('ml/esm_only.mjs');
    expect(resolveModulePath(root, 'src.trading.services.paper_trading_v2').relativePath).toBe(
      'src/trading/services/paper_trading_v2.js',
    );
    expect(resolveModulePath(root, 'top').relativePath).toBe('top.js');
  });

  it('tries the extensions for a slashed path without one', () => {
    expect(resolveModulePath(root, 'ml/predictor_v2').relativePath).toBe('ml/predictor_v2.js');
    expect(resolveModulePath(root, 'ml/esm_only').relativePath).toBe('ml/esm_only.mjs');
  });

  it('follows a symlink that stays inside the root, to its real file', () => {
    expect(resolveModulePath(root, 'alias.js')).toEqual({
      absolutePath: path.join(root, 'ml', 'predictor_v2.js'),
      relativePath: 'alias.js',
    });
  });

  it('accepts a root given through a relative path or a trailing slash', () => {
    const relativeRoot = path.relative(process.cwd(), root) + path.sep;
    expect(resolveModulePath(relativeRoot, 'ml/predictor_v2.js').absolutePath).toBe(path.join(root, 'ml', 'predictor_v2.js'));
  });
});

describe('resolveModulePath: attacks and mistakes', () => {
  it.each([
    ['/etc/passwd'],
    ['/tmp/elsewhere/secret.js'],
    ['//server/share/x.js'],
  ])('refuses the absolute path %s', (p) => {
    expectRefused(p, 'INVALID_MODULE_PATH', /absolute/);
  });

  it.each([['../outside/secret.js'], ['ml/../../outside/secret.js'], ['ml/..'], ['..'], ['ml/../top.js']])(
    'refuses the ".." segments of %s',
    (p) => {
      expectRefused(p, 'INVALID_MODULE_PATH', /"\.\." segments/);
    },
  );

  it.each([['ml..predictor_v2'], ['..outside.secret'], ['.ml.predictor_v2'], ['ml.predictor_v2.']])(
    'refuses the empty name parts of the dotted form %s',
    (p) => {
      expectRefused(p, 'INVALID_MODULE_PATH', /empty name parts/);
    },
  );

  it.each([
    ['%2e%2e/outside/secret.js'],
    ['%2E%2E%2Foutside%2Fsecret.js'],
    ['ml%2fpredictor_v2.js'],
    ['..%5coutside%5csecret.js'],
    ['%252e%252e/outside/secret.js'],
    ['ml/predictor%5fv2.js'],
  ])('refuses the percent-encoded %s', (p) => {
    expectRefused(p, 'INVALID_MODULE_PATH', /percent-encoding/);
  });

  it.each([['ml\\predictor_v2.js'], ['..\\outside\\secret.js'], ['C:\\modules\\x.js']])('refuses the backslashes of %s', (p) => {
    expectRefused(p, 'INVALID_MODULE_PATH', /backslash/);
  });

  it('refuses NUL bytes', () => {
    expectRefused('ml/predictor_v2.js\0.png', 'INVALID_MODULE_PATH', /NUL/);
    expect(failure('top.js\0').message).toContain('\\u0000');
  });

  it.each([[''], ['   '], ['\t']])('refuses the empty path %j', (p) => {
    expectRefused(p, 'INVALID_MODULE_PATH', /empty/);
  });

  it.each([['file:///etc/passwd'], ['C:/modules/x.js'], ['node:fs']])('refuses URLs and drive letters: %s', (p) => {
    expectRefused(p, 'INVALID_MODULE_PATH', /":"/);
  });

  it.each([['./ml/predictor_v2.js', /"\." segments/], ['ml/./predictor_v2.js', /"\." segments/], ['ml//predictor_v2.js', /empty path segments/], ['ml/', /empty path segments/]])(
    'refuses the non-canonical %s',
    (p, why) => {
      expectRefused(p, 'INVALID_MODULE_PATH', why);
    },
  );

  it.each([['ml/predictor v2.js'], ['ml/ｐredictor.js'], ['ml/．．/x.js'], ['ml/predictor_v2.js\n'], ['~/x.js'], ['ml/$(id).js']])(
    'refuses characters outside the allowed set: %j',
    (p) => {
      expectRefused(p, 'INVALID_MODULE_PATH', /characters outside/);
    },
  );

  it('refuses files that are not modules', () => {
    expectRefused('ml/weights.json', 'INVALID_MODULE_PATH', /not "\.json"/);
    expectRefused('ml/predictor_v2.ts', 'INVALID_MODULE_PATH', /not "\.ts"/);
  });

  it('refuses over-long paths', () => {
    expectRefused(`${'a/'.repeat(300)}x.js`, 'INVALID_MODULE_PATH', /longer than/);
  });

  it.each([['escape.js'], ['relative_escape.js'], ['linked_dir/secret.js'], ['linked_dir.secret']])(
    'refuses the symlink %s leading outside the root',
    (p) => {
      expectRefused(p, 'INVALID_MODULE_PATH', /symbolic link/);
    },
  );

  it('reports missing files, folders and dangling links as MODULE_NOT_FOUND', () => {
    expectRefused('ml/nope.js', 'MODULE_NOT_FOUND', /No module file/);
    expectRefused('ml.nope', 'MODULE_NOT_FOUND', /tried ml\/nope\.js, ml\/nope\.mjs/);
    expectRefused('nowhere/deep/x.js', 'MODULE_NOT_FOUND', /No module file/);
    expectRefused('top.js/inside.js', 'MODULE_NOT_FOUND', /No module file/);
    expectRefused('folder.js', 'MODULE_NOT_FOUND', /not a file/);
    expectRefused('dangling.js', 'MODULE_NOT_FOUND', /No module file/);
  });

  it('reports a missing modules directory', () => {
    const error = failure('top.js', path.join(sandbox, 'no-such-dir'));
    expect(error.code).toBe('MODULE_NOT_FOUND');
    expect(error.message).toMatch(/modules directory .* does not exist/);
  });

  it('refuses a non-string path', () => {
    expect(() => resolveModulePath(root, 42 as unknown as string)).toThrow(ModulePathError);
  });
});
