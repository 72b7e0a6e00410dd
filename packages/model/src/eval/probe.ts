// Linear probe: how linearly decodable labels are from features (e.g. an RBM's hidden
// probabilities).
//
// Model: multinomial logistic regression p(y = c | x) = softmax(x~ W + b)_c on standardised
// features x~_j = (x_j - mean_j) / std_j (train-set statistics; std floored at 1e-6 relative to
// constant columns, whose x~ is then 0), loss = mean cross-entropy + l2/2 |W|^2 (bias not
// penalised). Trained by minibatch Adam with a cosine-decayed learning rate, minibatch order a
// pure function of the seed (counter-based generator via kernels.uniform). The standardisation
// is folded into the weights (W_raw = W / std, b_raw = b - mean . W_raw) so minibatches use the
// raw features directly: forward Z = X W_raw + b_raw and backward X^T G are kernels.sgemm calls;
// the per-class bookkeeping (softmax, Adam on dims x classes numbers) is host work.
import { type Kernels, type RngSite, loadKernels } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Network } from '../network.js';
import { addField, blockRowsFor, checkData, resolveVisible } from './common.js';

let defaultKernels: Kernels | null = null;
function kernelsOr(k: Kernels | undefined): Kernels {
  if (k) return k;
  defaultKernels ??= loadKernels();
  return defaultKernels;
}

export interface HiddenFeatureOptions {
  /** The visible layer. @defaultValue 'v', else the first layer */
  visible?: string;
  /** The layer whose probabilities are the features. @defaultValue the first layer connected to the visible one */
  layer?: string;
  blockRows?: number;
  /** Output (rows x layer size); allocated when omitted. */
  out?: Float32Array;
}

/**
 * Features E[h | v] of a layer connected to the visible one, from the visible input only (for a
 * deep network this is the bottom-up pass, ignoring the layers above): one sgemm per block plus
 * sampleUnits' mean (sigmoid, tanh, or the Gaussian mean).
 */
export function hiddenFeatures(
  network: Network,
  data: Float32Array,
  rows: number,
  opts: HiddenFeatureOptions = {},
): Float32Array {
  const k = network.kernels;
  const vis = resolveVisible(network, opts.visible);
  checkData(network, vis, data, rows);
  let conn = network.connections.find((c) => c.from === vis || c.to === vis);
  if (opts.layer !== undefined) {
    const h = network.layerIndex(opts.layer);
    conn = network.connections.find(
      (c) => (c.from === vis && c.to === h) || (c.to === vis && c.from === h),
    );
    if (!conn)
      throw new SpecError('layer', `'${opts.layer}' is not connected to the visible layer`);
  }
  if (!conn) throw new SpecError('network', 'has no layer connected to the visible layer');
  const h = conn.from === vis ? conn.to : conn.from;
  const nv = network.layers[vis]!.size;
  const layer = network.layers[h]!;
  const nh = layer.size;
  const out = opts.out ?? new Float32Array(rows * nh);
  if (out.length < rows * nh) throw new SpecError('out', `must hold ${rows * nh} values`);
  const B = blockRowsFor(Math.max(nv, nh), rows, opts.blockRows);
  const V = k.alloc(B * nv);
  const M = k.alloc(B * nh);
  const site: RngSite = { seedLo: 0, seedHi: 0, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
  for (let r0 = 0; r0 < rows; r0 += B) {
    const nr = Math.min(B, rows - r0);
    V.set(data.subarray(r0 * nv, (r0 + nr) * nv));
    k.upload(V);
    addField(network, conn, h, V, nr, 1, 0, M);
    k.sampleUnits(layer.type, nr, nh, M, nh, network.biases[h]!, 1, M, null, site);
    k.download(M);
    out.set(M.subarray(0, nr * nh), r0 * nh);
  }
  return out;
}

export interface ProbeOptions {
  /**
   * Passes over the data. @defaultValue 20, or more on small data sets so that there are at
   * least 3000 minibatch updates
   */
  epochs?: number;
  /** @defaultValue 256 */
  batchSize?: number;
  /** Adam's initial learning rate (cosine-decayed to 0). @defaultValue 0.002 */
  learningRate?: number;
  /** L2 penalty on the standardised weights. @defaultValue 1e-4 */
  l2?: number;
  /** @defaultValue 0 */
  seed?: number;
  /** Kernels for the GEMMs. @defaultValue loadKernels() */
  kernels?: Kernels;
}

export interface LinearProbe {
  dims: number;
  classes: number;
  /** dims x classes weights on the raw (unstandardised) features. */
  weights: Float32Array;
  /** classes biases on the raw features. */
  bias: Float32Array;
  /** Train-set standardisation (already folded into weights and bias). */
  mean: Float64Array;
  std: Float64Array;
  /** Mean training loss (cross-entropy, nats, without the penalty) over the last epoch. */
  trainLoss: number;
  /** Accuracy on the minibatches of the last epoch (before each update). */
  trainAccuracy: number;
  epochs: number;
  kernels: Kernels;
}

const STREAM_PROBE = 0x50524f42; // 'PROB'

function checkLabels(labels: ArrayLike<number>, rows: number, classes: number): void {
  if (labels.length < rows) throw new SpecError('labels', `must hold ${rows} values`);
  for (let i = 0; i < rows; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= classes)
      throw new SpecError('labels', `label ${i} is ${y}, expected an integer in [0, ${classes})`);
  }
}

function checkFeatures(features: Float32Array, rows: number, dims: number): void {
  if (!Number.isInteger(rows) || rows < 1)
    throw new SpecError('rows', 'must be a positive integer');
  if (!Number.isInteger(dims) || dims < 1)
    throw new SpecError('dims', 'must be a positive integer');
  if (features.length < rows * dims)
    throw new SpecError('features', `holds ${features.length} values; ${rows} x ${dims} needed`);
}

/** Trains a softmax linear probe (see the file header). Deterministic for a seed and kernels. */
export function trainProbe(
  features: Float32Array,
  rows: number,
  dims: number,
  labels: ArrayLike<number>,
  classes: number,
  opts: ProbeOptions = {},
): LinearProbe {
  const k = kernelsOr(opts.kernels);
  checkFeatures(features, rows, dims);
  if (!Number.isInteger(classes) || classes < 2)
    throw new SpecError('classes', 'must be an integer >= 2');
  checkLabels(labels, rows, classes);
  const { batch, epochs, lr0, l2 } = probeSettings(opts, rows);
  const C = classes;
  const d = dims;
  const { mean, std } = standardisation(features, rows, d);

  const adam = new Adam(d * C, C);
  const Weff = k.alloc(d * C);
  const Xb = k.alloc(batch * d);
  const Z = k.alloc(batch * C);
  const gW = k.alloc(d * C);
  const beff = new Float64Array(C);
  const gsum = new Float64Array(C);
  const perm = new Int32Array(rows);
  const u = k.alloc(rows);
  const site: RngSite = {
    seedLo: (opts.seed ?? 0) >>> 0,
    seedHi: Math.floor((opts.seed ?? 0) / 2 ** 32) >>> 0,
    unitOffset: 0,
    chainOffset: 0,
    step: 0,
    stream: STREAM_PROBE,
  };
  const batchesPerEpoch = Math.ceil(rows / batch);
  const totalSteps = epochs * batchesPerEpoch;
  let t = 0;
  const tally = { loss: 0, correct: 0 };

  for (let ep = 0; ep < epochs; ep++) {
    for (let i = 0; i < rows; i++) perm[i] = i;
    k.uniform(u, rows, rows, { ...site, step: ep });
    k.download(u);
    for (let i = rows - 1; i > 0; i--) {
      const j = Math.min(i, Math.floor(u[i]! * (i + 1)));
      const tmp = perm[i]!;
      perm[i] = perm[j]!;
      perm[j] = tmp;
    }
    tally.loss = 0;
    tally.correct = 0;
    for (let s0 = 0; s0 < rows; s0 += batch) {
      const nb = Math.min(batch, rows - s0);
      for (let r = 0; r < nb; r++) {
        const src = perm[s0 + r]! * d;
        Xb.set(features.subarray(src, src + d), r * d);
      }
      k.upload(Xb);
      foldStandardisation(adam, mean, std, C, Weff, beff);
      k.upload(Weff);
      k.sgemm(false, false, nb, C, d, 1, Xb, d, Weff, C, 0, Z, C);
      k.download(Z);
      softmaxGradient(Z, beff, labels, perm.subarray(s0, s0 + nb), C, gsum, tally);
      k.upload(Z);
      k.sgemm(true, false, d, C, nb, 1, Xb, d, Z, C, 0, gW, C);
      k.download(gW);
      t++;
      const lr = 0.5 * lr0 * (1 + Math.cos((Math.PI * (t - 1)) / totalSteps));
      adam.step(t, lr, l2, gW, gsum, mean, std, C);
    }
  }
  foldStandardisation(adam, mean, std, C, Weff, beff);
  k.upload(Weff);
  k.download(Weff);
  return {
    dims: d,
    classes: C,
    weights: Float32Array.from(Weff),
    bias: Float32Array.from(beff),
    mean,
    std,
    trainLoss: tally.loss / rows,
    trainAccuracy: tally.correct / rows,
    epochs,
    kernels: k,
  };
}

/** trainProbe's options with their defaults, checked. */
function probeSettings(
  opts: ProbeOptions,
  rows: number,
): { batch: number; epochs: number; lr0: number; l2: number } {
  const batch = Math.min(rows, opts.batchSize ?? 256);
  const epochs = opts.epochs ?? Math.max(20, Math.ceil(3000 / Math.ceil(rows / batch)));
  const lr0 = opts.learningRate ?? 0.002;
  const l2 = opts.l2 ?? 1e-4;
  if (!Number.isInteger(epochs) || epochs < 1)
    throw new SpecError('epochs', 'must be a positive integer');
  if (!Number.isInteger(batch) || batch < 1)
    throw new SpecError('batchSize', 'must be a positive integer');
  if (!(lr0 > 0)) throw new SpecError('learningRate', 'must be positive');
  if (!(l2 >= 0)) throw new SpecError('l2', 'must be >= 0');
  return { batch, epochs, lr0, l2 };
}

/** Per-feature mean and standard deviation (float64, 1 where a feature is constant). */
function standardisation(
  features: Float32Array,
  rows: number,
  d: number,
): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(d);
  const m2 = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) mean[j] = mean[j]! + features[o + j]!;
  }
  for (let j = 0; j < d; j++) mean[j] = mean[j]! / rows;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const x = features[o + j]! - mean[j]!;
      m2[j] = m2[j]! + x * x;
    }
  }
  const std = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    const s = Math.sqrt(m2[j]! / rows);
    std[j] = s > 1e-6 ? s : 1;
  }
  return { mean, std };
}

/** The weights and biases on raw features (Weff, beff) of the standardised-space ones. */
function foldStandardisation(
  adam: Adam,
  mean: Float64Array,
  std: Float64Array,
  C: number,
  Weff: Float32Array,
  beff: Float64Array,
): void {
  const { W, b } = adam;
  const d = mean.length;
  for (let c = 0; c < C; c++) beff[c] = b[c]!;
  for (let j = 0; j < d; j++) {
    const is = 1 / std[j]!;
    const mj = mean[j]!;
    for (let c = 0; c < C; c++) {
      const w = W[j * C + c]! * is;
      Weff[j * C + c] = w;
      beff[c] = beff[c]! - mj * w;
    }
  }
}

/**
 * Softmax cross-entropy of a minibatch (the rows `batch` of the data): from the logits Z (nb x C,
 * without the biases beff) it leaves in Z the gradient with respect to them (divided by nb) and
 * their column sums in gsum, and adds each row's loss and whether it was classified right to
 * `tally`.
 */
function softmaxGradient(
  Z: Float32Array,
  beff: Float64Array,
  labels: ArrayLike<number>,
  batch: Int32Array,
  C: number,
  gsum: Float64Array,
  tally: { loss: number; correct: number },
): void {
  const nb = batch.length;
  gsum.fill(0);
  for (let r = 0; r < nb; r++) {
    const o = r * C;
    const y = labels[batch[r]!]!;
    let mx = -Infinity;
    let arg = 0;
    for (let c = 0; c < C; c++) {
      const z = Z[o + c]! + beff[c]!;
      if (z > mx) {
        mx = z;
        arg = c;
      }
    }
    if (arg === y) tally.correct++;
    let se = 0;
    for (let c = 0; c < C; c++) se += Math.exp(Z[o + c]! + beff[c]! - mx);
    const lse = mx + Math.log(se);
    tally.loss += lse - (Z[o + y]! + beff[y]!);
    for (let c = 0; c < C; c++) {
      const g = (Math.exp(Z[o + c]! + beff[c]! - lse) - (c === y ? 1 : 0)) / nb;
      Z[o + c] = g;
      gsum[c] = gsum[c]! + g;
    }
  }
}

/** Adam over the standardised-space weights W (d x C) and biases b, with an L2 penalty on W. */
class Adam {
  readonly W: Float64Array;
  readonly b: Float64Array;
  private readonly mW: Float64Array;
  private readonly vW: Float64Array;
  private readonly mb: Float64Array;
  private readonly vb: Float64Array;

  constructor(weights: number, classes: number) {
    this.W = new Float64Array(weights);
    this.b = new Float64Array(classes);
    this.mW = new Float64Array(weights);
    this.vW = new Float64Array(weights);
    this.mb = new Float64Array(classes);
    this.vb = new Float64Array(classes);
  }

  /**
   * Step t (from 1) at rate lr. gW is the gradient on the raw-feature weights and gsum on the
   * biases; mean and std map it into the standardised space.
   */
  step(
    t: number,
    lr: number,
    l2: number,
    gW: Float32Array,
    gsum: Float64Array,
    mean: Float64Array,
    std: Float64Array,
    C: number,
  ): void {
    const { W, b, mW, vW, mb, vb } = this;
    const b1 = 0.9;
    const b2 = 0.999;
    const eps = 1e-8;
    const c1 = 1 / (1 - b1 ** t);
    const c2 = 1 / (1 - b2 ** t);
    for (let j = 0; j < mean.length; j++) {
      const is = 1 / std[j]!;
      const mj = mean[j]!;
      for (let c = 0; c < C; c++) {
        const i = j * C + c;
        const g = (gW[i]! - mj * gsum[c]!) * is + l2 * W[i]!;
        const m = (mW[i] = b1 * mW[i]! + (1 - b1) * g);
        const v = (vW[i] = b2 * vW[i]! + (1 - b2) * g * g);
        W[i] = W[i]! - (lr * m * c1) / (Math.sqrt(v * c2) + eps);
      }
    }
    for (let c = 0; c < C; c++) {
      const g = gsum[c]!;
      const m = (mb[c] = b1 * mb[c]! + (1 - b1) * g);
      const v = (vb[c] = b2 * vb[c]! + (1 - b2) * g * g);
      b[c] = b[c]! - (lr * m * c1) / (Math.sqrt(v * c2) + eps);
    }
  }
}

/** Predicted class of each row of features (rows x probe.dims). */
export function probePredict(
  probe: LinearProbe,
  features: Float32Array,
  rows: number,
  out?: Int32Array,
): Int32Array {
  const k = probe.kernels;
  const d = probe.dims;
  const C = probe.classes;
  checkFeatures(features, rows, d);
  const res = out ?? new Int32Array(rows);
  if (res.length < rows) throw new SpecError('out', `must hold ${rows} values`);
  const B = blockRowsFor(Math.max(d, C), rows);
  const X = k.alloc(B * d);
  const Z = k.alloc(B * C);
  const W = k.alloc(d * C);
  W.set(probe.weights);
  k.upload(W);
  for (let r0 = 0; r0 < rows; r0 += B) {
    const nr = Math.min(B, rows - r0);
    X.set(features.subarray(r0 * d, (r0 + nr) * d));
    k.upload(X);
    k.sgemm(false, false, nr, C, d, 1, X, d, W, C, 0, Z, C);
    k.download(Z);
    for (let r = 0; r < nr; r++) {
      let mx = -Infinity;
      let arg = 0;
      for (let c = 0; c < C; c++) {
        const z = Z[r * C + c]! + probe.bias[c]!;
        if (z > mx) {
          mx = z;
          arg = c;
        }
      }
      res[r0 + r] = arg;
    }
  }
  return res;
}

/** Fraction of rows whose predicted class equals the label. */
export function probeAccuracy(
  probe: LinearProbe,
  features: Float32Array,
  rows: number,
  labels: ArrayLike<number>,
): number {
  checkLabels(labels, rows, probe.classes);
  const pred = probePredict(probe, features, rows);
  let ok = 0;
  for (let i = 0; i < rows; i++) if (pred[i] === labels[i]) ok++;
  return ok / rows;
}
