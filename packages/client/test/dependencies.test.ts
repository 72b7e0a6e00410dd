// The client is a library of the public API: a program that imports it loads the generated API
// and grpc-js, and none of the model, kernels (and their native addon), bus, Redis or services.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = fileURLToPath(new URL('../package.json', import.meta.url));
const built = fileURLToPath(new URL('../dist/index.js', import.meta.url));

// A module hook that reports every module the import resolves, one URL a line on stderr.
const hooks = `export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  process.stderr.write('RESOLVED ' + r.url + '\\n');
  return r;
}`;
const program = `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
await import('@spinmesh/client');`;

describe('@spinmesh/client', () => {
  it('declares only the generated API and grpc-js as dependencies', () => {
    const manifest = JSON.parse(readFileSync(pkg, 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    expect(Object.keys(manifest.dependencies ?? {}).sort()).toEqual([
      '@grpc/grpc-js',
      '@spinmesh/proto',
    ]);
  });

  it('loads no other spinmesh package, no Redis client and no native addon', () => {
    if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build first`);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', program], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const urls = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('RESOLVED '))
      .map((l) => l.slice('RESOLVED '.length));
    const files = urls.filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u));
    // The hook saw the import itself, so an empty list would mean it saw nothing.
    expect(files).toContain(built);
    const workspace = files.filter((f) => f.startsWith(root) && !f.includes('/node_modules/'));
    for (const f of workspace) expect(f.slice(root.length)).toMatch(/^packages\/(client|proto)\//);
    const external = files.filter((f) => f.includes('/node_modules/'));
    for (const f of external) expect(f).not.toMatch(/\/node_modules\/(ioredis|@redis)\/|\.node$/);
  });
});
