// `npm run bench -- kernels [--threads=N] [--quick]`: sgemm GFLOP/s and sampleUnits ns/element
// for every kernels implementation available here. Figures only; nothing is asserted.
//
// Shapes: 256x784x500 is an RBM 784-500 layer over a batch of 256 (M=256, N=500, K=784);
// 2048^3 shows the peak. sampleUnits runs on a 100x500 block (one hidden layer, batch 100).
// The weight correlation of a 784-500 RBM over 100 positive and 100 negative rows of 0s and 1s
// (a PCD-1 step with sampled statistics) two ways: the GEMM of the centred rows, and packing
// both layers' column bits and counting (packColumns + bitCorrelation), in ms per correlation.

import {
  NativeKernels,
  PortableKernels,
  UnitType,
  bitWords,
  loadKernels,
  nativeAvailable,
  type Kernels,
} from '@spinmesh/kernels';

interface Options {
  threads?: number;
  quick: boolean;
}

function parseArgs(args: string[]): Options {
  const opts: Options = { quick: false };
  for (const a of args) {
    const t = /^--threads=(\d+)$/.exec(a);
    if (t) opts.threads = Number(t[1]);
    else if (a === '--quick') opts.quick = true;
    else throw new Error(`bench kernels: unknown argument '${a}' (use --threads=N, --quick)`);
  }
  return opts;
}

function randomArray(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Mean seconds per call of fn: one warm-up call, then repeats until minSeconds or maxReps. */
function timeIt(fn: () => void, minSeconds: number, maxReps = Infinity, minReps = 1): number {
  fn();
  let reps = 0;
  const start = performance.now();
  let elapsed = 0;
  while (reps < minReps || (elapsed < minSeconds * 1000 && reps < maxReps)) {
    fn();
    reps++;
    elapsed = performance.now() - start;
  }
  return elapsed / 1000 / reps;
}

export function gemmGflops(
  K: Kernels,
  m: number,
  n: number,
  k: number,
  minSeconds: number,
  maxReps: number,
): number {
  const a = randomArray(m * k, 1);
  const b = randomArray(k * n, 2);
  const c = new Float32Array(m * n);
  const s = timeIt(
    () => K.sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n),
    minSeconds,
    maxReps,
  );
  return (2 * m * n * k) / s / 1e9;
}

function sampleNs(K: Kernels, type: UnitType, minSeconds: number): number {
  const rows = 100;
  const n = 500;
  const field = randomArray(rows * n, 3).map((x) => 4 * x);
  const bias = randomArray(n, 4);
  const mean = new Float32Array(rows * n);
  const out = new Float32Array(rows * n);
  const site = { seedLo: 1, seedHi: 2, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
  const s = timeIt(() => {
    site.step++;
    K.sampleUnits(type, rows, n, field, n, bias, 1, mean, out, site);
  }, minSeconds);
  return (s / (rows * n)) * 1e9;
}

/** ms per 784-500 weight correlation over 100 + 100 rows of 0s and 1s: GEMM, and from bits. */
function correlationMs(K: Kernels, minSeconds: number): { gemm: number; bits: number } {
  const [m, w, R, C] = [784, 500, 100, 100];
  const X = randomArray((R + C) * m, 5).map((v) => (v > 0.2 ? 1 : 0));
  const Y = randomArray((R + C) * w, 6).map((v) => (v > 0.4 ? 1 : 0));
  const mu = new Float32Array(m).fill(0.4);
  const lam = new Float32Array(w).fill(0.3);
  const out = new Float32Array(m * w);
  const gemm = timeIt(
    () => K.sgemm(true, false, m, w, R + C, 1, X, m, Y, w, 0, out, w),
    minSeconds,
  );
  const words = (rows: number, n: number): Uint32Array => new Uint32Array(n * bitWords(rows));
  const [xp, xn, yp, yn] = [words(R, m), words(C, m), words(R, w), words(C, w)];
  const [ox, oy] = [new Uint8Array(m), new Uint8Array(w)];
  const bits = timeIt(() => {
    K.packColumns(R, m, X, m, xp, ox);
    K.packColumns(C, m, X.subarray(R * m), m, xn, ox);
    K.packColumns(R, w, Y, w, yp, oy);
    K.packColumns(C, w, Y.subarray(R * w), w, yn, oy);
    K.bitCorrelation(m, w, R, C, xp, xn, yp, yn, mu, lam, null, null, out, w);
  }, minSeconds);
  return { gemm: gemm * 1e3, bits: bits * 1e3 };
}

const round = (x: number, digits = 3): number => Number(x.toPrecision(digits));

function measure(K: Kernels, quick: boolean): Record<string, unknown> {
  const native = K.name === 'native';
  const log = (msg: string): boolean => process.stderr.write(`kernels[${K.name}]: ${msg}\n`);
  const small = gemmGflops(K, 256, 500, 784, quick ? 0.3 : 1, Infinity);
  log(`sgemm 256x784x500 ${small.toFixed(2)} GFLOP/s`);
  // The portable kernels take seconds per 2048^3 product: one rep is enough to rank them.
  const big = gemmGflops(K, 2048, 2048, 2048, native ? (quick ? 0.5 : 2) : 0, native ? 10 : 1);
  log(`sgemm 2048^3 ${big.toFixed(2)} GFLOP/s`);
  const sample: Record<string, number> = {};
  for (const [name, type] of [
    ['bernoulli', UnitType.Bernoulli],
    ['ising', UnitType.Ising],
    ['gaussian', UnitType.Gaussian],
  ] as const) {
    sample[name] = round(sampleNs(K, type, quick ? 0.1 : 0.3));
    log(`sampleUnits ${name} 100x500 ${sample[name]} ns/element (mean + draw)`);
  }
  const corr = correlationMs(K, quick ? 0.2 : 1);
  log(
    `784-500 weight correlation over 100+100 rows of 0/1: GEMM ${corr.gemm.toFixed(3)} ms, ` +
      `from bits ${corr.bits.toFixed(3)} ms`,
  );
  return {
    describe: K.describe(),
    threads: K.threads,
    sgemm_gflops: { '256x784x500': round(small), '2048x2048x2048': round(big) },
    sample_ns_per_element: sample,
    correlation_784x500_ms: { gemm: round(corr.gemm), bits: round(corr.bits) },
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const opts = parseArgs(args);
  const result: Record<string, unknown> = { bench: 'kernels' };
  const avail = nativeAvailable();
  if (avail.ok) {
    const nk = loadKernels('native', opts.threads ? { threads: opts.threads } : {});
    result.threads = nk.threads;
    result.blas = nk instanceof NativeKernels ? nk.blasConfig() : undefined;
    result.native = measure(nk, opts.quick);
  } else {
    result.native = { unavailable: avail.reason };
  }
  result.portable = measure(new PortableKernels(), opts.quick);
  return result;
}
