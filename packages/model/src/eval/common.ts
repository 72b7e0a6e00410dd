// Helpers shared by the evaluation modules: structure checks, field GEMMs, block copies and
// float64 reductions. Not part of the public API.
import { type Kernels, type RngSite, UnitType, seedHalves } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Connection, Network } from '../network.js';

export const LOG_2PI = Math.log(2 * Math.PI);

/** Floats per scratch matrix that block sizes aim for (16 MiB). */
export const BLOCK_FLOATS = 1 << 22;

/** Rows per block so that a rows x width matrix stays within BLOCK_FLOATS (at least 1). */
export function blockRowsFor(width: number, rows: number, requested?: number): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1)
      throw new SpecError('blockRows', 'must be a positive integer');
    return Math.max(1, Math.min(requested, rows));
  }
  return Math.max(1, Math.min(rows, Math.floor(BLOCK_FLOATS / Math.max(1, width))));
}

/** The visible layer: by name, else the layer named 'v', else the first layer. */
export function resolveVisible(net: Network, name?: string): number {
  if (name !== undefined) return net.layerIndex(name);
  const i = net.layers.findIndex((l) => l.name === 'v');
  return i >= 0 ? i : 0;
}

export function softplus(a: number): number {
  return a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a));
}

export function log2cosh(a: number): number {
  const z = Math.abs(a);
  return z + Math.log1p(Math.exp(-2 * z));
}

/**
 * log of the partition function of one unit with energy -x*(bias) (Bernoulli, Ising) or
 * (x - bias)^2/2 (Gaussian, Lebesgue measure): softplus(b), log 2cosh(b), log sqrt(2 pi).
 */
export function unitLogZ(type: UnitType, bias: number): number {
  if (type === UnitType.Bernoulli) return softplus(bias);
  if (type === UnitType.Ising) return log2cosh(bias);
  return 0.5 * LOG_2PI;
}

/** The value a binary unit takes when "off": 0 for Bernoulli, -1 for Ising. */
export function offValue(type: UnitType): number {
  return type === UnitType.Ising ? -1 : 0;
}

/**
 * The per-row constant a Gaussian layer adds when it is integrated out with
 * logPartitionRows(Gaussian, ..., bias = b, beta = 1), which returns sum_j (a_j + b_j)^2 / 2:
 * int exp(-(x-b)^2/2 + x a) dx = sqrt(2 pi) exp(((a+b)^2 - b^2)/2), so the constant is
 * n/2 log(2 pi) - |b|^2/2.
 */
export function gaussianConst(bias: ArrayLike<number>, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s += bias[j]! * bias[j]!;
  return 0.5 * n * LOG_2PI - 0.5 * s;
}

/** 64-bit seed as the two halves of an RngSite. */
export function seedSite(seed: number, stream: number): RngSite {
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) {
    throw new SpecError('seed', 'must be a non-negative integer');
  }
  return { ...seedHalves(seed), unitOffset: 0, chainOffset: 0, step: 0, stream };
}

export interface Neighbour {
  conn: Connection;
  /** The other layer. */
  other: number;
}

/** Connections that touch layer l, with the layer at their other end. */
export function neighbours(net: Network, l: number): Neighbour[] {
  const out: Neighbour[] = [];
  for (const c of net.connections) {
    if (c.from === l) out.push({ conn: c, other: c.to });
    else if (c.to === l) out.push({ conn: c, other: c.from });
  }
  return out;
}

/**
 * out (rows x size(target)) = alpha * (contribution of layer `source` through connection c) +
 * beta * out. src is rows x size(source).
 */
export function addField(
  net: Network,
  c: Connection,
  target: number,
  src: Float32Array,
  rows: number,
  alpha: number,
  beta: number,
  out: Float32Array,
): void {
  const k = net.kernels;
  const nt = net.layers[target]!.size;
  if (c.to === target) {
    const ns = net.layers[c.from]!.size;
    k.sgemm(false, false, rows, nt, ns, alpha, src, ns, c.weights, nt, beta, out, nt);
  } else {
    const ns = net.layers[c.to]!.size;
    k.sgemm(false, true, rows, nt, ns, alpha, src, ns, c.weights, ns, beta, out, nt);
  }
}

/**
 * The layers other than the visible one, when given the visible layer they are independent of
 * each other and factorise over units: no laterals, connected only to the visible layer. Throws
 * SpecError naming `what` otherwise.
 */
export function factorisingHidden(net: Network, vis: number, what: string): number[] {
  const hidden: number[] = [];
  for (const l of net.layers) {
    if (l.index === vis) continue;
    if (l.lateral) {
      throw new SpecError(
        'network',
        `${what} needs the layers other than '${net.layers[vis]!.name}' to have no lateral connections ('${l.name}' has)`,
      );
    }
    hidden.push(l.index);
  }
  for (const c of net.connections) {
    if (c.from !== vis && c.to !== vis) {
      throw new SpecError(
        'network',
        `${what} needs every connection to touch the visible layer '${net.layers[vis]!.name}' (given it, the other layers must factorise); ` +
          `'${net.layers[c.from]!.name}'-'${net.layers[c.to]!.name}' does not`,
      );
    }
  }
  return hidden;
}

export function checkData(
  net: Network,
  vis: number,
  data: Float32Array,
  rows: number,
  name = 'data',
): void {
  if (!Number.isInteger(rows) || rows < 0)
    throw new SpecError('rows', 'must be a non-negative integer');
  const n = net.layers[vis]!.size;
  if (data.length < rows * n) {
    throw new SpecError(
      name,
      `holds ${data.length} values; ${rows} rows of layer '${net.layers[vis]!.name}' need ${rows * n}`,
    );
  }
}

/** Copies rows [r0, r0 + nr) of a rows x n matrix into dst (a kernels buffer) and uploads it. */
export function loadRows(
  k: Kernels,
  src: Float32Array,
  r0: number,
  nr: number,
  n: number,
  dst: Float32Array,
): void {
  dst.set(src.subarray(r0 * n, (r0 + nr) * n));
  k.upload(dst);
}

/** dst[0..n) = src[0..n) through the kernels (device-safe copy). */
export function copyBuf(k: Kernels, n: number, src: Float32Array, dst: Float32Array): void {
  k.axpby(n, 1, src, 0, dst);
}

/**
 * Per-row visible energy terms of the rows x n block x of layer l (host, float64 result added
 * to out): -b.x - 1/2 x^T L x (non-Gaussian) or |x - b|^2/2 (Gaussian). `lx` is a rows x n
 * scratch buffer (used only when the layer has laterals).
 */
export function addLayerEnergy(
  net: Network,
  l: number,
  x: Float32Array,
  rows: number,
  out: Float64Array,
  lx: Float32Array | null,
): void {
  const k = net.kernels;
  const layer = net.layers[l]!;
  const n = layer.size;
  const b = net.biases[l]!;
  k.download(b);
  k.download(x);
  const L = net.laterals[l];
  if (L) {
    if (!lx) throw new Error('addLayerEnergy: lateral scratch missing');
    k.sgemm(false, false, rows, n, n, 1, x, n, L, n, 0, lx, n);
    k.download(lx);
  }
  const gauss = layer.type === UnitType.Gaussian;
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let s = 0;
    if (gauss) {
      for (let j = 0; j < n; j++) {
        const d = x[o + j]! - b[j]!;
        s += 0.5 * d * d;
      }
    } else {
      for (let j = 0; j < n; j++) s -= b[j]! * x[o + j]!;
      if (L) {
        let q = 0;
        for (let j = 0; j < n; j++) q += x[o + j]! * lx![o + j]!;
        s -= 0.5 * q;
      }
    }
    out[r] = out[r]! + s;
  }
}

/** log sum_i exp(x_i) in float64, stable. */
export function logSumExp(x: ArrayLike<number>, n = x.length): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (x[i]! > m) m = x[i]!;
  if (m === -Infinity || !Number.isFinite(m)) return m;
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[i]! - m);
  return m + Math.log(s);
}

/** Running log-sum-exp accumulator. */
export class LogSumExp {
  private m = -Infinity;
  private s = 0;
  add(x: number): void {
    if (x === -Infinity) return;
    if (x <= this.m) {
      this.s += Math.exp(x - this.m);
    } else if (x === Infinity || Number.isNaN(x)) {
      this.m = x;
      this.s = 1;
    } else {
      this.s = this.s * Math.exp(this.m - x) + 1;
      this.m = x;
    }
  }
  /** Adds a whole array (float64 values). */
  addAll(x: ArrayLike<number>, n: number): void {
    let m = -Infinity;
    for (let i = 0; i < n; i++) if (x[i]! > m) m = x[i]!;
    if (m === -Infinity) return;
    if (!Number.isFinite(m)) {
      this.add(m);
      return;
    }
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp(x[i]! - m);
    this.add(m + Math.log(s));
  }
  value(): number {
    return this.s === 0 ? -Infinity : this.m + Math.log(this.s);
  }
}
