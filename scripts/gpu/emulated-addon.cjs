// An emulated device for checking the host side of the cuda kernels where there is no GPU:
// the cuda addon's functions (src/cuda.ts's Addon), computed by the native addon on a heap that
// stands in for device memory, whose addresses are byte offsets. It checks what src/cuda.ts and
// the models do with device buffers (address mapping, views, staging, upload/download), not the
// CUDA code; it is not used by any test. docs/gpu.md says how it was used:
//   SPINMESH_CUDA_ADDON=scripts/gpu/emulated-addon.cjs SPINMESH_KERNELS=cuda npm run bench -- ...
// CommonJS because src/cuda.ts loads the addon with require().
/* eslint-disable @typescript-eslint/no-require-imports */
const { join } = require('node:path');

const N = require(
  process.env['SPINMESH_NATIVE_ADDON'] ||
    join(__dirname, '..', '..', 'packages/kernels/native/build/Release/spinmesh_kernels.node'),
);
const BYTES = 1 << 30;
const heap = new ArrayBuffer(BYTES);
let top = 4096; // 0 stays the null address
const f32 = (p) => (p === 0 ? null : new Float32Array(heap, p, (BYTES - p) >> 2));
const u32 = (p) => (p === 0 ? null : new Uint32Array(heap, p, (BYTES - p) >> 2));
const u8 = (p) => (p === 0 ? null : new Uint8Array(heap, p, BYTES - p));
const bytesOf = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

module.exports = {
  abiVersion: 1,
  probe: () => ({
    ok: true,
    devices: 1,
    name: 'emulated device',
    reason: '',
    runtimeVersion: 0,
    driverVersion: 0,
  }),
  init: (tf32) =>
    `emulated device; native kernels; ${tf32 ? 'TF32 tensor-core sgemm' : 'fp32 sgemm'}`,
  // A bump allocator: the heap is never reused, which is fine for a benchmark or a test run.
  malloc: (bytes) => {
    const p = top;
    top += Math.ceil(Math.max(bytes, 4) / 256) * 256;
    if (top > BYTES) throw new Error('emulated device: out of memory');
    return p;
  },
  free: () => {},
  upload: (p, a) => new Uint8Array(heap, p, a.byteLength).set(bytesOf(a)),
  download: (p, a) => bytesOf(a).set(new Uint8Array(heap, p, a.byteLength)),
  sync: () => {},
  sgemm: (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
    N.sgemm(
      ta,
      tb,
      m,
      n,
      k,
      alpha,
      f32(a) ?? new Float32Array(0),
      lda,
      f32(b) ?? new Float32Array(0),
      ldb,
      beta,
      f32(c),
      ldc,
    ),
  sampleUnits: (t, rows, n, f, ld, b, beta, m, o, ...site) =>
    N.sampleUnits(t, rows, n, f32(f), ld, f32(b), beta, f32(m), f32(o), ...site),
  uniform: (o, count, n, ...site) => N.uniform(new Float32Array(heap, o, count), count, n, ...site),
  logPartitionRows: (t, rows, n, x, ld, b, beta, o, acc) =>
    N.logPartitionRows(t, rows, n, f32(x), ld, f32(b), beta, f32(o), acc),
  axpby: (n, alpha, x, beta, y) => N.axpby(n, alpha, f32(x), beta, f32(y)),
  colSums: (rows, n, x, ld, alpha, beta, o) => N.colSums(rows, n, f32(x), ld, alpha, beta, f32(o)),
  shiftScaleRows: (rows, n, x, ld, off, s) => N.shiftScaleRows(rows, n, f32(x), ld, f32(off), s),
  copyBlock: (rows, n, s, sld, d, dld) => N.copyBlock(rows, n, f32(s), 0, sld, f32(d), 0, dld),
  sumSquares: (n, x) => N.sumSquares(n, f32(x)),
  dot: (n, x, y) => N.dot(n, f32(x), f32(y)),
  packSpins: (n, x, o) => N.packSpins(n, f32(x), u8(o)),
  unpackSpins: (n, p, off, x) => N.unpackSpins(n, u8(p), off, f32(x)),
  packColumns: (rows, n, x, ld, o, odd) => N.packColumns(rows, n, f32(x), ld, u32(o), u8(odd)),
  bitCorrelation: (m, w, R, C, xp, xn, yp, yn, mu, lam, ox, oy, o, ld) =>
    N.bitCorrelation(
      m,
      w,
      R,
      C,
      u32(xp),
      u32(xn),
      u32(yp),
      u32(yn),
      f32(mu),
      f32(lam),
      u8(ox),
      u8(oy),
      f32(o),
      ld,
    ),
  philox: (...a) => N.philox(...a),
};
