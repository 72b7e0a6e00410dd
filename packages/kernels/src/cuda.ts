// Kernels on an NVIDIA GPU: the N-API addon in ../cuda (cuBLAS sgemm plus CUDA kernels) behind
// the same interface. The addon is optional and a device more so: cudaAvailable() says whether
// both are there and, if not, why.
//
// Buffers. `alloc` returns a host Float32Array and gives it a device mirror of the same size;
// kernels read and write only the mirror, and `upload`/`download` copy between the two, as the
// interface prescribes, so a training step moves no data between host and device. A typed array
// that `alloc` did not make (the model's Uint32Array column bits, a caller's own Float32Array) is
// staged instead: copied to a device scratch slot before the call and, when the kernel writes it,
// copied back after. That keeps every caller correct, at the price of a round trip per call.

import {
  checkBitCorrelation,
  checkColSums,
  checkCopyBlock,
  checkDim,
  checkLogPartitionRows,
  checkPackColumns,
  checkPackSpins,
  checkSampleUnits,
  checkSgemm,
  checkShiftScaleRows,
  checkUniform,
  checkUnpackSpins,
  checkVectors,
} from './checks.js';
import type { Kernels, RngSite, UnitType } from './kernels.js';
import { requireAddon, tf32FromEnv, type Addon, type Ptr, type Typed } from './cuda-addon.js';

export interface CudaKernelsOptions {
  /**
   * sgemm on TF32 tensor cores (10-bit mantissa inputs, fp32 accumulation): several times the
   * fp32 rate on large products, with rounding about 1e-3 relative per product
   * (docs/configuration.md). One setting per process: the last CudaKernels created wins.
   * @defaultValue SPINMESH_CUDA_TF32 === '1'
   */
  tf32?: boolean;
}

/**
 * The device mirror of each buffer any CudaKernels allocated, by its ArrayBuffer: module-wide,
 * since all instances share the process's one device context and a buffer from one may be
 * passed to another. Mirrors are freed when their buffer is collected.
 */
const mirrors = new WeakMap<ArrayBufferLike, Ptr>();
let reclaim: FinalizationRegistry<Ptr> | undefined;

interface Slot {
  ptr: Ptr;
  bytes: number;
}

export class CudaKernels implements Kernels {
  readonly name = 'cuda';
  /** Host threads: the work runs on the device, issued from the calling thread. */
  readonly threads = 1;
  readonly tf32: boolean;
  private readonly addon: Addon;
  private readonly description: string;
  /** Device mirror of each buffer `alloc` made, shared by every instance (one device context). */
  private readonly mirrors = mirrors;
  /** Scratch for staged arrays, one per argument position so one call's arrays never share. */
  private readonly slots: Slot[] = [];
  /**
   * Staged arrays the current call writes, with their slot: copied back by settle(). Each call
   * empties it first, since a call whose kernel threw leaves its own behind.
   */
  private readonly pending: [Typed, Ptr][] = [];

  constructor(opts: CudaKernelsOptions = {}) {
    this.addon = requireAddon();
    this.tf32 = opts.tf32 ?? tf32FromEnv();
    this.description = this.addon.init(this.tf32);
    const addon = this.addon;
    reclaim ??= new FinalizationRegistry((ptr: Ptr) => addon.free(ptr));
  }

  describe(): string {
    return `cuda (${this.description})`;
  }

  alloc(n: number): Float32Array {
    checkDim('alloc', 'n', n);
    const host = new Float32Array(n);
    const ptr = this.addon.malloc(4 * n);
    this.mirrors.set(host.buffer, ptr);
    reclaim!.register(host.buffer, ptr);
    return host;
  }

  /** Host to device, for an `alloc`ed buffer (or a view into one); others are staged per call. */
  upload(buf: Float32Array): void {
    const ptr = this.mirrors.get(buf.buffer);
    if (ptr !== undefined) this.addon.upload(ptr + buf.byteOffset, buf);
  }

  /** Device to host; waits for the work issued before it. */
  download(buf: Float32Array): void {
    const ptr = this.mirrors.get(buf.buffer);
    if (ptr !== undefined) this.addon.download(ptr + buf.byteOffset, buf);
  }

  /** Waits until the device has done all the work issued so far (benchmarks time with it). */
  synchronize(): void {
    this.addon.sync();
  }

  /** Whether buf (or the buffer it views) lives on the device, i.e. came from alloc. */
  isDeviceBuffer(buf: Typed): boolean {
    return this.mirrors.has(buf.buffer);
  }

  /** The device address of arr: its mirror, or a scratch slot it is staged into. */
  private dev(arr: Typed | null, slot: number, written = false): Ptr {
    if (arr === null) return 0;
    const mirror = this.mirrors.get(arr.buffer);
    if (mirror !== undefined) return mirror + arr.byteOffset;
    let s = this.slots[slot];
    if (s === undefined || s.bytes < arr.byteLength) {
      if (s !== undefined) this.addon.free(s.ptr);
      const bytes = Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(1, arr.byteLength))));
      s = { ptr: this.addon.malloc(bytes), bytes };
      this.slots[slot] = s;
    }
    // Uploaded even when only written, so what the kernel leaves alone (the gaps of a strided
    // block) comes back unchanged.
    this.addon.upload(s.ptr, arr);
    if (written) this.pending.push([arr, s.ptr]);
    return s.ptr;
  }

  /** Copies the staged arrays the call wrote back to the host. */
  private settle(): void {
    for (const [arr, ptr] of this.pending) this.addon.download(ptr, arr);
    this.pending.length = 0;
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
    this.pending.length = 0;
    if (m === 0 || n === 0) return;
    const pa = readsAB ? this.dev(a, 0) : 0;
    const pb = readsAB ? this.dev(b, 1) : 0;
    const pc = this.dev(c, 2, true);
    this.addon.sgemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    this.settle();
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
    this.pending.length = 0;
    const pf = this.dev(field, 0);
    const pb = this.dev(bias, 1);
    const pm = this.dev(mean, 2, true);
    const po = this.dev(out, 3, true);
    this.addon.sampleUnits(
      type,
      rows,
      n,
      pf,
      ld,
      pb,
      beta,
      pm,
      po,
      site.seedLo >>> 0,
      site.seedHi >>> 0,
      site.unitOffset >>> 0,
      site.chainOffset >>> 0,
      site.step >>> 0,
      site.stream >>> 0,
    );
    this.settle();
  }

  uniform(out: Float32Array, count: number, n: number, site: RngSite): void {
    checkUniform(out, count, n, site);
    this.pending.length = 0;
    if (count === 0) return;
    this.addon.uniform(
      this.dev(out, 0, true),
      count,
      n,
      site.seedLo >>> 0,
      site.seedHi >>> 0,
      site.unitOffset >>> 0,
      site.chainOffset >>> 0,
      site.step >>> 0,
      site.stream >>> 0,
    );
    this.settle();
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
    this.pending.length = 0;
    if (rows === 0) return;
    const px = this.dev(x, 0);
    const pb = this.dev(bias, 1);
    const po = this.dev(out, 2, true);
    this.addon.logPartitionRows(type, rows, n, px, ld, pb, beta, po, accumulate);
    this.settle();
  }

  axpby(n: number, alpha: number, x: Float32Array, beta: number, y: Float32Array): void {
    checkVectors('axpby', n, x, y);
    this.pending.length = 0;
    if (n === 0) return;
    this.addon.axpby(n, alpha, this.dev(x, 0), beta, this.dev(y, 1, true));
    this.settle();
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
    this.pending.length = 0;
    if (n === 0) return;
    this.addon.colSums(rows, n, this.dev(x, 0), ld, alpha, beta, this.dev(out, 1, true));
    this.settle();
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
    this.pending.length = 0;
    if (rows === 0 || n === 0) return;
    this.addon.shiftScaleRows(rows, n, this.dev(x, 0, true), ld, this.dev(offset, 1), scale);
    this.settle();
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
    this.pending.length = 0;
    if (rows === 0 || n === 0) return;
    // Both copies: the host arrays', because the models use copyBlock as a host operation
    // between a download and an upload (the sharded trainer gathers a shard's columns so), and
    // the mirrors', because a kernel may read dst next without an upload.
    for (let r = 0; r < rows; r++) {
      const s0 = srcOff + r * srcLd;
      dst.set(src.subarray(s0, s0 + n), dstOff + r * dstLd);
    }
    const mirror = this.mirrors.get(dst.buffer);
    if (mirror === undefined) return;
    const ps = this.dev(src, 0) + 4 * srcOff;
    this.addon.copyBlock(rows, n, ps, srcLd, mirror + dst.byteOffset + 4 * dstOff, dstLd);
  }

  sumSquares(n: number, x: Float32Array): number {
    checkVectors('sumSquares', n, x, null);
    this.pending.length = 0;
    return n === 0 ? 0 : this.addon.sumSquares(n, this.dev(x, 0));
  }

  dot(n: number, x: Float32Array, y: Float32Array): number {
    checkVectors('dot', n, x, y);
    this.pending.length = 0;
    return n === 0 ? 0 : this.addon.dot(n, this.dev(x, 0), this.dev(y, 1));
  }

  packSpins(n: number, x: Float32Array, out: Uint8Array): void {
    checkPackSpins(n, x, out);
    this.pending.length = 0;
    if (n === 0) return;
    this.addon.packSpins(n, this.dev(x, 0), this.dev(out, 1, true));
    this.settle();
  }

  unpackSpins(n: number, packed: Uint8Array, off: number, x: Float32Array): void {
    checkUnpackSpins(n, packed, x);
    this.pending.length = 0;
    if (n === 0) return;
    this.addon.unpackSpins(n, this.dev(packed, 0), off, this.dev(x, 1, true));
    this.settle();
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
    this.pending.length = 0;
    if (rows === 0 || n === 0) return true;
    const px = this.dev(x, 0);
    const po = this.dev(out, 1, true);
    const pd = this.dev(odd, 2, true);
    const ok = this.addon.packColumns(rows, n, px, ld, po, pd);
    this.settle();
    return ok;
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
    this.pending.length = 0;
    if (m === 0 || w === 0) return;
    this.addon.bitCorrelation(
      m,
      w,
      R,
      C,
      this.dev(xPos, 0),
      this.dev(xNeg, 1),
      this.dev(yPos, 2),
      this.dev(yNeg, 3),
      this.dev(mu, 4),
      this.dev(lam, 5),
      this.dev(oddX, 6),
      this.dev(oddY, 7),
      this.dev(out, 8, true),
      ld,
    );
    this.settle();
  }
}
