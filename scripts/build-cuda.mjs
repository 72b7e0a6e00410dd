#!/usr/bin/env node
// Builds the optional CUDA kernels (packages/kernels/cuda) with nvcc. Runs from `npm ci` /
// `npm run build` after the OpenBLAS addon, so it never fails the install: without nvcc, or when
// compilation fails, it prints one line saying why and exits 0, and @spinmesh/kernels uses the
// native or portable kernels. A GPU is not needed to build: the addon links the CUDA runtime
// statically and opens cuBLAS only when a device is used (docs/gpu.md).
//
// Usage: node scripts/build-cuda.mjs [--verbose] [--out=FILE]
//   --verbose                show nvcc's output
//   --out=FILE               where to write the addon (default: packages/kernels/cuda/build/)
//   SPINMESH_SKIP_CUDA=1     do not try
//   SPINMESH_CUDA_ARCH       the real architectures, comma-separated (default: 90, the H100);
//                            PTX for the newest of them is embedded too, so a newer GPU can JIT it
//   NVCC                     the compiler (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
//   SPINMESH_NODE_INCLUDE    a folder holding node_api.h (default: this node's include/node)

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cudaDir = join(root, 'packages', 'kernels', 'cuda');
const source = join(cudaDir, 'spinmesh_cuda.cu');
const outArg = process.argv.find((a) => a.startsWith('--out='));
const addon = outArg ? resolve(outArg.slice(6)) : join(cudaDir, 'build', 'spinmesh_cuda.node');
const verbose = process.argv.includes('--verbose');

function skip(reason) {
  console.log(`spinmesh: cuda kernels not built (${reason})`);
  process.exit(0);
}

if (process.env.SPINMESH_SKIP_CUDA === '1') skip('SPINMESH_SKIP_CUDA=1');

function findNvcc() {
  if (process.env.NVCC) return process.env.NVCC;
  const onPath = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  if (!onPath.error && onPath.status === 0) return 'nvcc';
  const home = process.env.CUDA_HOME || '/usr/local/cuda';
  const fixed = join(home, 'bin', 'nvcc');
  return existsSync(fixed) ? fixed : undefined;
}

function findNodeInclude() {
  const candidates = [
    process.env.SPINMESH_NODE_INCLUDE,
    join(dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
  ].filter(Boolean);
  return candidates.find((d) => existsSync(join(d, 'node_api.h')));
}

const nvcc = findNvcc();
if (!nvcc) skip('nvcc not found; set NVCC or CUDA_HOME to build them');
const include = findNodeInclude();
if (!include) skip('node_api.h not found; set SPINMESH_NODE_INCLUDE');

const archs = (process.env.SPINMESH_CUDA_ARCH || '90')
  .split(',')
  .map((a) => a.trim())
  .filter(Boolean);
if (archs.length === 0 || !archs.every((a) => /^\d+[af]?$/.test(a))) {
  skip(`SPINMESH_CUDA_ARCH must list architectures like 90 or 80,90`);
}
const gencode = archs.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
const newest = archs[archs.length - 1];
gencode.push('-gencode', `arch=compute_${newest},code=compute_${newest}`);

mkdirSync(dirname(addon), { recursive: true });
// No --use_fast_math: the draws compare against the CPU kernels' probabilities, so the device's
// expf/tanhf/logf must be the accurate ones (docs/gpu.md).
const args = [
  '-O3',
  '-std=c++17',
  '-shared',
  '-Xcompiler',
  '-fPIC',
  `-I${include}`,
  ...gencode,
  '--cudart=static',
  source,
  '-o',
  addon,
  '-ldl',
];
const built = spawnSync(nvcc, args, { encoding: 'utf8', stdio: verbose ? 'inherit' : 'pipe' });
if (built.error || built.status !== 0) {
  const out = `${built.stdout ?? ''}${built.stderr ?? ''}`;
  const line = out.split('\n').find((l) => /error/i.test(l)) ?? out.trim().split('\n').at(-1);
  skip(`nvcc failed: ${(built.error?.message ?? line ?? 'no output').slice(0, 200)}`);
}

// Loading needs no GPU (the runtime is static and cuBLAS is opened later); a failure here is a
// broken build, reported as one line like the others.
const check = spawnSync(
  process.execPath,
  ['-e', `const a = require(${JSON.stringify(addon)}); a.probe();`],
  { encoding: 'utf8' },
);
if (check.status !== 0) {
  skip(`built but does not load: ${`${check.stderr}`.trim().split('\n')[0]?.slice(0, 200)}`);
}
console.log(`spinmesh: cuda kernels built (${addon}; sm_${archs.join(', sm_')} + PTX)`);
