// Kernels backed by the N-API addon in ../native (OpenBLAS sgemm plus fused C loops). The
// addon is optional: nativeAvailable() says whether it loaded and, if not, why.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import {
  checkColSums,
  checkCopyBlock,
  checkLogPartitionRows,
  checkPackSpins,
  checkSampleUnits,
  checkSgemm,
  checkShiftScaleRows,
  checkUniform,
  checkUnpackSpins,
  checkPackColumns,
  checkBitCorrelation,
  checkVectors,
  HostBuffers,
} from './checks.js';
import type { Kernels, RngSite, UnitType } from './kernels.js';

/** Must match SPINMESH_ABI_VERSION in native/spinmesh_kernels.c. */
const ABI_VERSION = 3;

/** The functions the addon exports (argument order as in spinmesh_kernels.c). */
interface Addon {
  abiVersion: number;
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  sampleUnits(
    type: number,
    rows: number,
    n: number,
    field: Float32Array,
    ld: number,
    bias: Float32Array,
    beta: number,
    mean: Float32Array | null,
    out: Float32Array | null,
    seedLo: number,
    seedHi: number,
    unitOffset: number,
    chainOffset: number,
    step: number,
    stream: number,
  ): void;
  uniform(
    out: Float32Array,
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
    x: Float32Array,
    ld: number,
    bias: Float32Array | null,
    beta: number,
    out: Float32Array,
    accumulate: boolean,
  ): void;
  axpby(n: number, alpha: number, x: Float32Array, beta: number, y: Float32Array): void;
  colSums(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    alpha: number,
    beta: number,
    out: Float32Array,
  ): void;
  shiftScaleRows(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    offset: Float32Array | null,
    scale: number,
  ): void;
  copyBlock(
    rows: number,
    n: number,
    src: Float32Array,
    srcOff: number,
    srcLd: number,
    dst: Float32Array,
    dstOff: number,
    dstLd: number,
  ): void;
  sumSquares(n: number, x: Float32Array): number;
  dot(n: number, x: Float32Array, y: Float32Array): number;
  packSpins(n: number, x: Float32Array, out: Uint8Array): void;
  unpackSpins(n: number, packed: Uint8Array, off: number, x: Float32Array): void;
  packColumns(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    out: Uint32Array,
    odd: Uint8Array,
  ): boolean;
  bitCorrelation(
    m: number,
    w: number,
    R: number,
    C: number,
    xPos: Uint32Array,
    xNeg: Uint32Array,
    yPos: Uint32Array,
    yNeg: Uint32Array,
    mu: Float32Array | null,
    lam: Float32Array | null,
    oddX: Uint8Array | null,
    oddY: Uint8Array | null,
    out: Float32Array,
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
  blasConfig(): string;
  getThreads(): number;
  setThreads(n: number): void;
}

/**
 * Where the build (scripts/build-native.mjs) leaves the addon (the same from src/ and dist/), or
 * env SPINMESH_NATIVE_ADDON when set (an addon built elsewhere).
 */
export const NATIVE_ADDON_PATH =
  process.env['SPINMESH_NATIVE_ADDON'] ||
  fileURLToPath(new URL('../native/build/Release/spinmesh_kernels.node', import.meta.url));

let loaded: { ok: true; addon: Addon } | { ok: false; reason: string } | undefined;

function load(): { ok: true; addon: Addon } | { ok: false; reason: string } {
  if (loaded) return loaded;
  if (!existsSync(NATIVE_ADDON_PATH)) {
    loaded = { ok: false, reason: `addon not built (${NATIVE_ADDON_PATH} does not exist)` };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as Addon;
    if (addon.abiVersion !== ABI_VERSION) {
      loaded = {
        ok: false,
        reason: `addon is stale (ABI ${addon.abiVersion}, expected ${ABI_VERSION}); rebuild it`,
      };
    } else {
      loaded = { ok: true, addon };
    }
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    loaded = { ok: false, reason: `addon failed to load: ${msg.split('\n')[0]}` };
  }
  return loaded;
}

/** Whether the native addon can be used here, and if not, why. */
export function nativeAvailable(): { ok: true } | { ok: false; reason: string } {
  const l = load();
  return l.ok ? { ok: true } : { ok: false, reason: l.reason };
}

/**
 * Philox4x32-10 computed by the addon's C code (tests compare it with the TypeScript one).
 * Throws if the addon is not available.
 */
export function nativePhilox4x32(
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

function requireAddon(): Addon {
  const l = load();
  if (!l.ok) {
    throw new Error(
      `spinmesh: native kernels are not available: ${l.reason}. Build them with ` +
        '`npm run build:native` (needs a C compiler and libopenblas-dev), or set ' +
        'SPINMESH_KERNELS=portable.',
    );
  }
  return l.addon;
}

export interface NativeKernelsOptions {
  /**
   * OpenBLAS threads. OpenBLAS has one process-wide setting, so the last NativeKernels created
   * with this option wins. Left out, the current setting (OPENBLAS_NUM_THREADS or all cores)
   * stays.
   */
  threads?: number;
}

export class NativeKernels extends HostBuffers implements Kernels {
  readonly name = 'native';
  private readonly addon: Addon;

  constructor(opts: NativeKernelsOptions = {}) {
    super();
    this.addon = requireAddon();
    if (opts.threads !== undefined) {
      if (!Number.isInteger(opts.threads) || opts.threads < 1) {
        throw new RangeError(`threads must be a positive integer, got ${opts.threads}`);
      }
      this.addon.setThreads(opts.threads);
    }
  }

  /** OpenBLAS's current (process-wide) thread count. */
  get threads(): number {
    return this.addon.getThreads();
  }

  /** OpenBLAS's build configuration string (version, target, MAX_THREADS). */
  blasConfig(): string {
    return this.addon.blasConfig().trim();
  }

  describe(): string {
    const t = this.threads;
    return `native (${this.blasConfig()}, ${t} thread${t === 1 ? '' : 's'})`;
  }

  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void {
    const readsAB = alpha !== 0 && k > 0 && m > 0 && n > 0;
    checkSgemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, readsAB);
    this.addon.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  sampleUnits(
    type: UnitType,
    rows: number,
    n: number,
    field: Float32Array,
    ld: number,
    bias: Float32Array,
    beta: number,
    mean: Float32Array | null,
    out: Float32Array | null,
    site: RngSite,
  ): void {
    checkSampleUnits(type, rows, n, field, ld, bias, mean, out, site);
    // The addon wraps counters modulo 2^32 itself (napi_get_value_uint32), as >>> 0 would.
    this.addon.sampleUnits(
      type,
      rows,
      n,
      field,
      ld,
      bias,
      beta,
      mean,
      out,
      site.seedLo,
      site.seedHi,
      site.unitOffset,
      site.chainOffset,
      site.step,
      site.stream,
    );
  }

  uniform(out: Float32Array, count: number, n: number, site: RngSite): void {
    checkUniform(out, count, n, site);
    this.addon.uniform(
      out,
      count,
      n,
      site.seedLo,
      site.seedHi,
      site.unitOffset,
      site.chainOffset,
      site.step,
      site.stream,
    );
  }

  logPartitionRows(
    type: UnitType,
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    bias: Float32Array | null,
    beta: number,
    out: Float32Array,
    accumulate: boolean,
  ): void {
    checkLogPartitionRows(type, rows, n, x, ld, bias, out);
    this.addon.logPartitionRows(type, rows, n, x, ld, bias, beta, out, accumulate);
  }

  axpby(n: number, alpha: number, x: Float32Array, beta: number, y: Float32Array): void {
    checkVectors('axpby', n, x, y);
    this.addon.axpby(n, alpha, x, beta, y);
  }

  colSums(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    alpha: number,
    beta: number,
    out: Float32Array,
  ): void {
    checkColSums(rows, n, x, ld, out);
    this.addon.colSums(rows, n, x, ld, alpha, beta, out);
  }

  shiftScaleRows(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    offset: Float32Array | null,
    scale: number,
  ): void {
    checkShiftScaleRows(rows, n, x, ld, offset);
    this.addon.shiftScaleRows(rows, n, x, ld, offset, scale);
  }

  copyBlock(
    rows: number,
    n: number,
    src: Float32Array,
    srcOff: number,
    srcLd: number,
    dst: Float32Array,
    dstOff: number,
    dstLd: number,
  ): void {
    checkCopyBlock(rows, n, src, srcOff, srcLd, dst, dstOff, dstLd);
    if (rows === 0 || n === 0) return;
    this.addon.copyBlock(rows, n, src, srcOff, srcLd, dst, dstOff, dstLd);
  }

  sumSquares(n: number, x: Float32Array): number {
    checkVectors('sumSquares', n, x, null);
    return this.addon.sumSquares(n, x);
  }

  dot(n: number, x: Float32Array, y: Float32Array): number {
    checkVectors('dot', n, x, y);
    return this.addon.dot(n, x, y);
  }

  packSpins(n: number, x: Float32Array, out: Uint8Array): void {
    checkPackSpins(n, x, out);
    this.addon.packSpins(n, x, out);
  }

  unpackSpins(n: number, packed: Uint8Array, off: number, x: Float32Array): void {
    checkUnpackSpins(n, packed, x);
    this.addon.unpackSpins(n, packed, off, x);
  }

  packColumns(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    out: Uint32Array,
    odd: Uint8Array,
  ): boolean {
    checkPackColumns(rows, n, x, ld, out, odd);
    return this.addon.packColumns(rows, n, x, ld, out, odd);
  }

  bitCorrelation(
    m: number,
    w: number,
    R: number,
    C: number,
    xPos: Uint32Array,
    xNeg: Uint32Array,
    yPos: Uint32Array,
    yNeg: Uint32Array,
    mu: Float32Array | null,
    lam: Float32Array | null,
    oddX: Uint8Array | null,
    oddY: Uint8Array | null,
    out: Float32Array,
    ld: number,
  ): void {
    checkBitCorrelation(m, w, R, C, [xPos, xNeg, yPos, yNeg], mu, lam, [oddX, oddY], out, ld);
    this.addon.bitCorrelation(m, w, R, C, xPos, xNeg, yPos, yNeg, mu, lam, oddX, oddY, out, ld);
  }
}
