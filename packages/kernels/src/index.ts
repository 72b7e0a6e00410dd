import { availableParallelism } from 'node:os';

import { CudaKernels } from './cuda.js';
import { cudaAvailable } from './cuda-addon.js';
import type { Kernels } from './kernels.js';
import { NativeKernels, nativeAvailable } from './native.js';
import { PortableKernels } from './portable.js';

export { UnitType, UNIT_TYPE_NAMES, type Kernels, type RngSite } from './kernels.js';
export { PortableKernels } from './portable.js';
export { bitWords } from './checks.js';
export {
  NativeKernels,
  nativeAvailable,
  nativePhilox4x32,
  NATIVE_ADDON_PATH,
  type NativeKernelsOptions,
} from './native.js';
export { CudaKernels, type CudaKernelsOptions } from './cuda.js';
export {
  cudaAvailable,
  cudaAddonLoads,
  cudaProbe,
  cudaPhilox4x32,
  CUDA_ADDON_PATH,
} from './cuda-addon.js';
export { philox4x32, philoxW0, wordToUniform, seedHalves, UNIFORM_SCALE } from './philox.js';

export type KernelsChoice = 'cuda' | 'native' | 'portable' | 'auto';

const CHOICES: readonly KernelsChoice[] = ['cuda', 'native', 'portable', 'auto'];

export interface LoadKernelsOptions {
  /** sgemm threads (native only). Default: OPENBLAS_NUM_THREADS, else all available cores. */
  threads?: number;
}

function defaultThreads(): number {
  const env = process.env.OPENBLAS_NUM_THREADS;
  if (env !== undefined && env.trim() !== '') {
    const t = Number(env);
    if (!Number.isInteger(t) || t < 1) {
      throw new Error(`OPENBLAS_NUM_THREADS must be a positive integer, got '${env}'`);
    }
    return t;
  }
  return availableParallelism();
}

/**
 * The kernels to use. `choice` defaults to the SPINMESH_KERNELS environment variable, else
 * 'auto': cuda when its addon is built and a device answers, else native when its addon is
 * built and loads, else portable. 'cuda' and 'native' throw when they are not available, with
 * why and what to do about it. cuda uses device 0 of those CUDA_VISIBLE_DEVICES leaves visible,
 * so a machine with several GPUs runs one worker per GPU, each given its own.
 */
export function loadKernels(choice?: KernelsChoice, opts: LoadKernelsOptions = {}): Kernels {
  let c: string | undefined = choice;
  let from = 'loadKernels';
  if (c === undefined) {
    const env = process.env.SPINMESH_KERNELS;
    if (env !== undefined && env.trim() !== '') {
      c = env.trim();
      from = 'SPINMESH_KERNELS';
    } else {
      c = 'auto';
    }
  }
  if (!(CHOICES as readonly string[]).includes(c)) {
    throw new Error(`${from}: invalid kernels choice '${c}' (allowed: ${CHOICES.join(', ')})`);
  }
  if (c === 'portable') return new PortableKernels();
  if (c === 'cuda' || c === 'auto') {
    const gpu = cudaAvailable();
    if (gpu.ok) return new CudaKernels();
    if (c === 'cuda') {
      throw new Error(
        `spinmesh: cuda kernels requested${from === 'SPINMESH_KERNELS' ? ' (SPINMESH_KERNELS=cuda)' : ''} ` +
          `but not available: ${gpu.reason}. Use SPINMESH_KERNELS=native or portable, or run ` +
          'where an NVIDIA GPU, its driver and CUDA with cuBLAS are installed (docs/gpu.md).',
      );
    }
  }
  const avail = nativeAvailable();
  if (!avail.ok) {
    if (c === 'auto') return new PortableKernels();
    throw new Error(
      `spinmesh: native kernels requested${from === 'SPINMESH_KERNELS' ? ' (SPINMESH_KERNELS=native)' : ''} ` +
        `but not available: ${avail.reason}. Build them with \`npm run build:native\` ` +
        '(needs a C compiler and libopenblas-dev), or use SPINMESH_KERNELS=portable.',
    );
  }
  return new NativeKernels({ threads: opts.threads ?? defaultThreads() });
}
