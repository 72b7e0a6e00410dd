// Loading the CUDA addon (../cuda): where it is, whether it and a device answer, and the shape
// of what it exports. CudaKernels (cuda.ts) calls it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Must match SPINMESH_CUDA_ABI_VERSION in cuda/spinmesh_cuda.cu. */
export const ABI_VERSION = 1;

/** A device address as the addon passes it (a byte address below 2^53; 0 means none). */
export type Ptr = number;

export type Typed = Float32Array | Uint32Array | Uint8Array;

export interface Probe {
  ok: boolean;
  devices: number;
  name: string;
  reason: string;
  runtimeVersion: number;
  driverVersion: number;
}

/** The functions the addon exports (argument order as in spinmesh_cuda.cu). */
export interface Addon {
  abiVersion: number;
  probe(): Probe;
  init(tf32: boolean): string;
  malloc(bytes: number): Ptr;
  free(ptr: Ptr): void;
  upload(ptr: Ptr, src: Typed): void;
  download(ptr: Ptr, dst: Typed): void;
  sync(): void;
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Ptr,
    lda: number,
    b: Ptr,
    ldb: number,
    beta: number,
    c: Ptr,
    ldc: number,
  ): void;
  sampleUnits(
    type: number,
    rows: number,
    n: number,
    field: Ptr,
    ld: number,
    bias: Ptr,
    beta: number,
    mean: Ptr,
    out: Ptr,
    seedLo: number,
    seedHi: number,
    unitOffset: number,
    chainOffset: number,
    step: number,
    stream: number,
  ): void;
  uniform(
    out: Ptr,
    count: number,
    n: number,
    seedLo: number,
    seedHi: number,
    unitOffset: number,
    chainOffset: number,
    step: number,
    stream: number,
  ): void;
  logPartitionRows(
    type: number,
    rows: number,
    n: number,
    x: Ptr,
    ld: number,
    bias: Ptr,
    beta: number,
    out: Ptr,
    accumulate: boolean,
  ): void;
  axpby(n: number, alpha: number, x: Ptr, beta: number, y: Ptr): void;
  colSums(rows: number, n: number, x: Ptr, ld: number, alpha: number, beta: number, out: Ptr): void;
  shiftScaleRows(rows: number, n: number, x: Ptr, ld: number, offset: Ptr, scale: number): void;
  copyBlock(rows: number, n: number, src: Ptr, srcLd: number, dst: Ptr, dstLd: number): void;
  sumSquares(n: number, x: Ptr): number;
  dot(n: number, x: Ptr, y: Ptr): number;
  packSpins(n: number, x: Ptr, out: Ptr): void;
  unpackSpins(n: number, packed: Ptr, off: number, x: Ptr): void;
  packColumns(rows: number, n: number, x: Ptr, ld: number, out: Ptr, odd: Ptr): boolean;
  bitCorrelation(
    m: number,
    w: number,
    R: number,
    C: number,
    xPos: Ptr,
    xNeg: Ptr,
    yPos: Ptr,
    yNeg: Ptr,
    mu: Ptr,
    lam: Ptr,
    oddX: Ptr,
    oddY: Ptr,
    out: Ptr,
    ld: number,
  ): void;
  philox(
    c0: number,
    c1: number,
    c2: number,
    c3: number,
    k0: number,
    k1: number,
    out: Uint32Array,
  ): void;
}

/**
 * Where scripts/build-cuda.mjs leaves the addon (the same from src/ and dist/), or env
 * SPINMESH_CUDA_ADDON when set (an addon built elsewhere).
 */
export const CUDA_ADDON_PATH = process.env['SPINMESH_CUDA_ADDON']
  ? resolve(process.env['SPINMESH_CUDA_ADDON'])
  : fileURLToPath(new URL('../cuda/build/spinmesh_cuda.node', import.meta.url));

export type Loaded = { ok: true; addon: Addon } | { ok: false; reason: string };
let loaded: Loaded | undefined;
let usable: { ok: true; device: string } | { ok: false; reason: string } | undefined;

/** Whether the addon itself loads here (no device needed), and if not, why. */
export function cudaAddonLoads(): { ok: true } | { ok: false; reason: string } {
  const l = loadAddon();
  return l.ok ? { ok: true } : { ok: false, reason: l.reason };
}

export function loadAddon(): Loaded {
  if (loaded) return loaded;
  if (!existsSync(CUDA_ADDON_PATH)) {
    loaded = {
      ok: false,
      reason: `addon not built (${CUDA_ADDON_PATH} does not exist; \`npm run build:cuda\` needs nvcc)`,
    };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(CUDA_ADDON_PATH) as Addon;
    loaded =
      addon.abiVersion === ABI_VERSION
        ? { ok: true, addon }
        : {
            ok: false,
            reason: `addon is stale (ABI ${addon.abiVersion}, expected ${ABI_VERSION}); rebuild it`,
          };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    loaded = { ok: false, reason: `addon failed to load: ${msg.split('\n')[0]}` };
  }
  return loaded;
}

/**
 * Whether the cuda kernels can run here: the addon loads, a device answers and cuBLAS opens.
 * The first call that finds a device creates its CUDA context (on device 0 of those
 * CUDA_VISIBLE_DEVICES leaves visible), so the answer is cached for the process.
 */
export function cudaAvailable(): { ok: true; device: string } | { ok: false; reason: string } {
  if (usable) return usable;
  const l = loadAddon();
  if (!l.ok) return (usable = { ok: false, reason: l.reason });
  const p = l.addon.probe();
  if (!p.ok) {
    const why = p.driverVersion === 0 ? `no NVIDIA driver (${p.reason})` : p.reason;
    return (usable = { ok: false, reason: `no device: ${why}` });
  }
  try {
    // fp32 here: the constructor applies SPINMESH_CUDA_TF32, so a bad value is an error there
    // rather than a reason for `auto` to pass the GPU by.
    l.addon.init(false);
    usable = { ok: true, device: p.name };
  } catch (err) {
    usable = { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
  return usable;
}

/** The addon's own probe (device count, driver and runtime versions), for tests and logs. */
export function cudaProbe(): Probe | { ok: false; reason: string } {
  const l = loadAddon();
  return l.ok ? l.addon.probe() : { ok: false, reason: l.reason };
}

export function tf32FromEnv(): boolean {
  const v = process.env['SPINMESH_CUDA_TF32'];
  if (v === undefined || v.trim() === '' || v.trim() === '0') return false;
  if (v.trim() === '1') return true;
  throw new Error(`SPINMESH_CUDA_TF32 must be 0 or 1, got '${v.slice(0, 20)}'`);
}

export function requireAddon(): Addon {
  const a = cudaAvailable();
  if (!a.ok) {
    throw new Error(
      `spinmesh: cuda kernels are not available: ${a.reason}. Use SPINMESH_KERNELS=native or ` +
        'portable, or run where an NVIDIA GPU and CUDA are installed (docs/gpu.md).',
    );
  }
  return (loadAddon() as { ok: true; addon: Addon }).addon;
}

/**
 * Philox4x32-10 computed on the device (tests compare it with the TypeScript one). Throws when
 * the cuda kernels are not available.
 */
export function cudaPhilox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
): void {
  requireAddon().philox(c0 >>> 0, c1 >>> 0, c2 >>> 0, c3 >>> 0, k0 >>> 0, k1 >>> 0, out);
}
