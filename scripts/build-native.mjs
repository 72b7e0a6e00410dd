#!/usr/bin/env node
// Builds the optional native kernels (packages/kernels/native) with node-gyp. Runs from
// `npm ci` / `npm run build`, so it never fails the install: when OpenBLAS, a compiler or
// node-gyp is missing, or compilation fails, it prints one line saying why and exits 0, and
// @spinmesh/kernels falls back to the portable kernels.
//
// Usage: node scripts/build-native.mjs [--verbose]
//   --verbose               show the compiler output
//   SPINMESH_SKIP_NATIVE=1  do not try
//   SPINMESH_NATIVE_MARCH   -march value (default: native)
//   CFLAGS / LDFLAGS        extra flags, e.g. where OpenBLAS lives outside the default paths

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'packages', 'kernels', 'native');
const addon = join(nativeDir, 'build', 'Release', 'spinmesh_kernels.node');
const verbose = process.argv.includes('--verbose');

function skip(reason) {
  console.log(`spinmesh: native kernels not built (${reason}); the portable kernels will be used`);
  process.exit(0);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    stdio: verbose ? 'inherit' : 'pipe',
    ...opts,
  });
  return {
    ok: r.status === 0 && !r.error,
    out: `${r.stdout ?? ''}${r.stderr ?? ''}`,
    error: r.error,
  };
}

/** Last meaningful line of a tool's output, for the one-line reason. */
function lastError(out) {
  const lines = out
    .split('\n')
    .map((l) => l.trim())
    .filter(
      (l) => l && !/^gyp (info|ERR! (cwd|node -v|node-gyp -v|not ok|command|System))/.test(l),
    );
  const err = lines.find((l) => /error/i.test(l));
  return (err ?? lines.at(-1) ?? 'no output').slice(0, 200);
}

function findNodeGyp() {
  const candidates = [];
  try {
    candidates.push(createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a devDependency: try the copy bundled with npm
  }
  const npmDir = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  candidates.push(join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => existsSync(p));
}

/** Headers matching this node, so node-gyp does not try to download them. */
function findNodeDir() {
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

if (process.env.SPINMESH_SKIP_NATIVE === '1') skip('SPINMESH_SKIP_NATIVE=1');

/** Why OpenBLAS cannot be compiled against and linked here, or undefined when it can. */
function probeOpenBlas() {
  const cc = process.env.CC || 'cc';
  const probeDir = mkdtempSync(join(tmpdir(), 'spinmesh-probe-'));
  try {
    const src = join(probeDir, 'probe.c');
    writeFileSync(
      src,
      '#include <cblas.h>\nint main(void) { return openblas_get_num_threads() < 0; }\n',
    );
    const flags = [
      ...(process.env.CFLAGS ?? '').split(/\s+/).filter(Boolean),
      src,
      '-o',
      join(probeDir, 'probe'),
      ...(process.env.LDFLAGS ?? '').split(/\s+/).filter(Boolean),
      '-lopenblas',
    ];
    const probe = spawnSync(cc, flags, { encoding: 'utf8' });
    if (probe.error) return `no C compiler: ${cc} not found`;
    if (probe.status === 0) return undefined;
    const out = `${probe.stdout}${probe.stderr}`;
    if (verbose) process.stderr.write(out);
    if (/cblas\.h/.test(out)) return 'OpenBLAS headers not found: install libopenblas-dev';
    if (/openblas/.test(out)) return 'OpenBLAS library not found: install libopenblas-dev';
    return `OpenBLAS probe failed: ${lastError(out)}`;
  } finally {
    rmSync(probeDir, { recursive: true, force: true });
  }
}

const missing = probeOpenBlas();
if (missing) skip(missing);

const nodeGyp = findNodeGyp();
if (!nodeGyp) skip('node-gyp not found: run npm install');

const gypArgs = [nodeGyp, 'rebuild', '--release'];
const nodedir = findNodeDir();
if (nodedir) gypArgs.push(`--nodedir=${nodedir}`);
if (verbose) gypArgs.push('--verbose');
const built = run(process.execPath, gypArgs, { cwd: nativeDir });
if (!built.ok) {
  skip(`compilation failed: ${built.error ? built.error.message : lastError(built.out)}`);
}
if (!existsSync(addon)) skip(`node-gyp finished but ${addon} is missing`);

// A build can succeed and still not load (e.g. libopenblas.so.0 absent at run time).
const check = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)})`], {
  encoding: 'utf8',
});
if (check.status !== 0) {
  skip(`built but does not load: ${lastError(`${check.stdout}${check.stderr}`)}`);
}
console.log(`spinmesh: native kernels built (${addon})`);
