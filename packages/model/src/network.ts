// Networks as layers and dense connections. An RBM, a deep BM, a semi-restricted BM and a
// fully-connected BM are all configurations of this one structure.
//
// Energy (inverse temperature beta multiplies all of it):
//   E(x) = - sum_{layers l, non-Gaussian} b_l . x_l + sum_{Gaussian l} |x_l - b_l|^2 / 2
//          - sum_{connections c: f->t} x_f^T W_c x_t - sum_{lateral l} 1/2 x_l^T L_l x_l
// W_c is stored row-major as from.size x to.size; L_l is symmetric with a zero diagonal.
import {
  type Kernels,
  type RngSite,
  UnitType,
  UNIT_TYPE_NAMES,
  seedHalves,
} from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import { isRecord } from './checks.js';
import { quote } from './quote.js';
import { unitsProduct } from './products.js';

export type UnitName = (typeof UNIT_TYPE_NAMES)[number];

export interface LayerSpec {
  name: string;
  size: number;
  /** @defaultValue 'bernoulli' */
  units?: UnitName;
  /** Lateral (intra-layer) connections: gives loops inside the layer. @defaultValue false */
  lateral?: boolean;
}

export interface ConnectionSpec {
  from: string;
  to: string;
}

export interface NetworkSpec {
  layers: LayerSpec[];
  connections: ConnectionSpec[];
}

export interface Layer {
  readonly index: number;
  readonly name: string;
  readonly size: number;
  readonly type: UnitType;
  readonly lateral: boolean;
  /** Global index of the layer's first unit: the `unit` of its random draws. */
  readonly offset: number;
}

export interface Connection {
  readonly index: number;
  readonly from: number;
  readonly to: number;
  /** from.size x to.size, row-major. */
  readonly weights: Float32Array;
}

/** States of all layers for a batch of chains: state[l] is rows x layers[l].size. */
export type State = Float32Array[];

const MAX_UNITS = 1 << 24;
/** 1 GiB of float32 parameters. */
const MAX_PARAMETERS = 1 << 28;

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k))
      throw new SpecError(
        `${path}.${quote(k)}`,
        `is not a known field (allowed: ${allowed.join(', ')})`,
      );
  }
}

/** Checks a network spec from untrusted input and returns it normalised (defaults filled in). */
export function validateNetworkSpec(input: unknown, path = 'spec.network'): NetworkSpec {
  // Long by design (exempt in test/shape.test.ts): a validator, one check per field.
  if (!isRecord(input)) throw new SpecError(path, 'must be an object with layers and connections');
  checkKeys(input, ['layers', 'connections'], path);
  const layersIn = input['layers'];
  if (!Array.isArray(layersIn) || layersIn.length === 0) {
    throw new SpecError(`${path}.layers`, 'must be a non-empty array');
  }
  const layers: LayerSpec[] = [];
  const names = new Set<string>();
  let total = 0;
  layersIn.forEach((l: unknown, i) => {
    const p = `${path}.layers[${i}]`;
    if (!isRecord(l)) throw new SpecError(p, 'must be an object');
    checkKeys(l, ['name', 'size', 'units', 'lateral'], p);
    const name = l['name'];
    if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) {
      throw new SpecError(`${p}.name`, 'must be an identifier (letters, digits, _; at most 64)');
    }
    if (names.has(name)) throw new SpecError(`${p}.name`, `duplicates layer '${name}'`);
    names.add(name);
    const size = l['size'];
    if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) {
      throw new SpecError(`${p}.size`, 'must be a positive integer');
    }
    total += size;
    if (total > MAX_UNITS)
      throw new SpecError(`${p}.size`, `makes the network exceed ${MAX_UNITS} units`);
    const units = l['units'] ?? 'bernoulli';
    if (typeof units !== 'string' || !(UNIT_TYPE_NAMES as readonly string[]).includes(units)) {
      throw new SpecError(`${p}.units`, `must be one of ${UNIT_TYPE_NAMES.join(', ')}`);
    }
    const lateral = l['lateral'] ?? false;
    if (typeof lateral !== 'boolean') throw new SpecError(`${p}.lateral`, 'must be a boolean');
    if (lateral && units === 'gaussian') {
      throw new SpecError(
        `${p}.lateral`,
        'is not supported for gaussian units (the model could be improper)',
      );
    }
    layers.push({ name, size, units: units as UnitName, lateral });
  });
  const connIn = input['connections'] ?? [];
  if (!Array.isArray(connIn)) throw new SpecError(`${path}.connections`, 'must be an array');
  const connections: ConnectionSpec[] = [];
  const seen = new Set<string>();
  connIn.forEach((c: unknown, i) => {
    const p = `${path}.connections[${i}]`;
    if (!isRecord(c)) throw new SpecError(p, 'must be an object with from and to');
    checkKeys(c, ['from', 'to'], p);
    const from = c['from'];
    const to = c['to'];
    for (const [k, v] of [
      ['from', from],
      ['to', to],
    ] as const) {
      if (typeof v !== 'string' || !names.has(v)) {
        throw new SpecError(`${p}.${k}`, `must name a layer (one of ${[...names].join(', ')})`);
      }
    }
    if (from === to)
      throw new SpecError(
        `${p}.to`,
        'must differ from from (use lateral: true for connections inside a layer)',
      );
    const key = [from, to].sort().join('\u0000');
    if (seen.has(key)) throw new SpecError(p, `connects ${quote(from)} and ${quote(to)} twice`);
    seen.add(key);
    const lf = layers.find((l) => l.name === from)!;
    const lt = layers.find((l) => l.name === to)!;
    if (lf.units === 'gaussian' && lt.units === 'gaussian') {
      throw new SpecError(
        p,
        'connects two gaussian layers, which is not supported (the model could be improper)',
      );
    }
    connections.push({ from: from as string, to: to as string });
  });
  let params = 0;
  for (const l of layers) params += l.size + (l.lateral ? l.size * l.size : 0);
  for (const c of connections) {
    params +=
      layers.find((l) => l.name === c.from)!.size * layers.find((l) => l.name === c.to)!.size;
  }
  if (params > MAX_PARAMETERS) {
    throw new SpecError(path, `has ${params} parameters; at most ${MAX_PARAMETERS} are supported`);
  }
  return { layers, connections };
}

/** A restricted Boltzmann machine: visible layer `v`, hidden layer `h`. */
export function rbmSpec(
  visible: number,
  hidden: number,
  units: UnitName = 'bernoulli',
): NetworkSpec {
  return {
    layers: [
      { name: 'v', size: visible, units, lateral: false },
      { name: 'h', size: hidden, units: 'bernoulli', lateral: false },
    ],
    connections: [{ from: 'v', to: 'h' }],
  };
}

export interface InitOptions {
  /** @defaultValue 0 */
  seed?: number;
  /** Standard deviation of the initial weights. @defaultValue 0.01 */
  weightStd?: number;
}

/** Stream numbers at or above this are reserved for initialisation draws. */
export const INIT_STREAM = 0xfff00000;

/** The generator site of initialisation draws: stream INIT_STREAM (+ the parameter), step 0. */
function initSite(opts: InitOptions): RngSite {
  return {
    ...seedHalves(opts.seed ?? 0),
    unitOffset: 0,
    chainOffset: 0,
    step: 0,
    stream: INIT_STREAM,
  };
}

/**
 * Initial weights of connection `conn`, rows [r0, r1) x columns [c0, c1), into `out` (host
 * memory, row-major): weight (i, j) is the Gaussian draw at counter (unit j, chain i, step 0,
 * stream INIT_STREAM + conn) times weightStd, so a slice drawn alone equals the same slice of
 * the whole matrix. Network.create and the shards' initSource both draw through here.
 */
export function drawInitialWeights(
  kernels: Kernels,
  opts: InitOptions,
  conn: number,
  r0: number,
  r1: number,
  c0: number,
  c1: number,
  out: Float32Array,
): void {
  const h = r1 - r0;
  const w = c1 - c0;
  if (h <= 0 || w <= 0) return;
  const buf = kernels.alloc(h * w);
  const zeros = kernels.alloc(h * w);
  kernels.sampleUnits(UnitType.Gaussian, h, w, zeros, w, zeros.subarray(0, w), 1, null, buf, {
    ...initSite(opts),
    unitOffset: c0,
    chainOffset: r0,
    stream: INIT_STREAM + conn,
  });
  kernels.axpby(h * w, 0, buf, opts.weightStd ?? 0.01, buf);
  kernels.download(buf);
  out.set(buf);
}

/**
 * The initial lateral weights of a layer of n units into `out` (host memory, n x n): the upper
 * triangle's Gaussian draws (stream INIT_STREAM + 0x8000 + layer) times weightStd, mirrored,
 * with a zero diagonal.
 */
export function drawInitialLateral(
  kernels: Kernels,
  opts: InitOptions,
  layer: number,
  n: number,
  out: Float32Array,
): void {
  const L = kernels.alloc(n * n);
  const zeros = kernels.alloc(n * n);
  kernels.sampleUnits(UnitType.Gaussian, n, n, zeros, n, zeros.subarray(0, n), 1, null, L, {
    ...initSite(opts),
    stream: INIT_STREAM + 0x8000 + layer,
  });
  kernels.download(L);
  const std = opts.weightStd ?? 0.01;
  for (let i = 0; i < n; i++) {
    L[i * n + i] = 0;
    for (let j = i + 1; j < n; j++) L[j * n + i] = L[i * n + j] = L[i * n + j]! * std;
  }
  out.set(L);
}

export class Network {
  readonly spec: NetworkSpec;
  readonly layers: readonly Layer[];
  readonly connections: readonly Connection[];
  readonly biases: readonly Float32Array[];
  /** laterals[l] is size x size (symmetric, zero diagonal) when layer l is lateral, else null. */
  readonly laterals: readonly (Float32Array | null)[];
  readonly numUnits: number;

  /** A network with all parameters zero. */
  constructor(
    spec: NetworkSpec,
    readonly kernels: Kernels,
  ) {
    this.spec = validateNetworkSpec(spec);
    let offset = 0;
    this.layers = this.spec.layers.map((l, index) => {
      const layer: Layer = {
        index,
        name: l.name,
        size: l.size,
        type: UnitType[capitalise(l.units ?? 'bernoulli')],
        lateral: l.lateral ?? false,
        offset,
      };
      offset += l.size;
      return layer;
    });
    this.numUnits = offset;
    this.connections = this.spec.connections.map((c, index) => {
      const from = this.layerIndex(c.from);
      const to = this.layerIndex(c.to);
      return {
        index,
        from,
        to,
        weights: kernels.alloc(this.layers[from]!.size * this.layers[to]!.size),
      };
    });
    this.biases = this.layers.map((l) => kernels.alloc(l.size));
    this.laterals = this.layers.map((l) => (l.lateral ? kernels.alloc(l.size * l.size) : null));
  }

  /** A network with weights drawn from N(0, weightStd^2) by the counter-based generator. */
  static create(spec: NetworkSpec, kernels: Kernels, opts: InitOptions = {}): Network {
    const net = new Network(spec, kernels);
    for (const c of net.connections) {
      const nf = net.layers[c.from]!.size;
      const nt = net.layers[c.to]!.size;
      drawInitialWeights(kernels, opts, c.index, 0, nf, 0, nt, c.weights);
      kernels.upload(c.weights);
    }
    for (const l of net.layers) {
      const L = net.laterals[l.index];
      if (!L) continue;
      drawInitialLateral(kernels, opts, l.index, l.size, L);
      kernels.upload(L);
    }
    return net;
  }

  layerIndex(name: string): number {
    const i = this.spec.layers.findIndex((l) => l.name === name);
    if (i < 0) throw new SpecError('layer', `'${quote(name)}' is not a layer of this network`);
    return i;
  }

  /** Layers in groups that can be sampled at once: no connection joins two layers of a group. */
  colouring(): number[][] {
    const colour = new Array<number>(this.layers.length).fill(-1);
    for (const l of this.layers) {
      const used = new Set<number>();
      for (const c of this.connections) {
        if (c.from === l.index && colour[c.to]! >= 0) used.add(colour[c.to]!);
        if (c.to === l.index && colour[c.from]! >= 0) used.add(colour[c.from]!);
      }
      let k = 0;
      while (used.has(k)) k++;
      colour[l.index] = k;
    }
    const groups: number[][] = [];
    colour.forEach((k, l) => (groups[k] ??= []).push(l));
    return groups;
  }

  allocState(rows: number): State {
    return this.layers.map((l) => this.kernels.alloc(rows * l.size));
  }

  /**
   * out (rows x size of layer l) = sum of the inputs from connected layers, excluding the bias
   * and lateral terms: x_t W^T for connections l->t, x_f W for f->l. With block > 0 the
   * products are cut at multiples of it (TrainOptions.productBlock).
   */
  field(l: number, state: State, rows: number, out: Float32Array, block = 0): void {
    const k = this.kernels;
    const n = this.layers[l]!.size;
    let beta = 0;
    for (const c of this.connections) {
      if (c.from === l) {
        const nt = this.layers[c.to]!.size;
        unitsProduct(k, true, rows, 0, n, nt, state[c.to]!, nt, c.weights, nt, beta, out, n, block);
        beta = 1;
      } else if (c.to === l) {
        const nf = this.layers[c.from]!.size;
        unitsProduct(
          k,
          false,
          rows,
          0,
          n,
          nf,
          state[c.from]!,
          nf,
          c.weights,
          n,
          beta,
          out,
          n,
          block,
        );
        beta = 1;
      }
    }
    if (beta === 0) out.fill(0, 0, rows * n);
  }

  /** Energy of each of `rows` states (float64, computed on the host; for evaluation and tests). */
  energy(state: State, rows: number): Float64Array {
    const k = this.kernels;
    const e = new Float64Array(rows);
    for (const l of this.layers) {
      const x = state[l.index]!;
      const b = this.biases[l.index]!;
      k.download(x);
      k.download(b);
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let j = 0; j < l.size; j++) {
          const xv = x[r * l.size + j]!;
          s += l.type === UnitType.Gaussian ? 0.5 * (xv - b[j]!) ** 2 : -b[j]! * xv;
        }
        e[r]! += s;
      }
      const L = this.laterals[l.index];
      if (L) {
        k.download(L);
        const n = l.size;
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let i = 0; i < n; i++) {
            const xi = x[r * n + i]!;
            if (xi === 0) continue;
            for (let j = i + 1; j < n; j++) s += xi * L[i * n + j]! * x[r * n + j]!;
          }
          e[r]! -= s;
        }
      }
    }
    for (const c of this.connections) {
      const nf = this.layers[c.from]!.size;
      const nt = this.layers[c.to]!.size;
      const xf = state[c.from]!;
      const xt = state[c.to]!;
      k.download(c.weights);
      const W = c.weights;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let i = 0; i < nf; i++) {
          const xi = xf[r * nf + i]!;
          if (xi === 0) continue;
          let t = 0;
          for (let j = 0; j < nt; j++) t += W[i * nt + j]! * xt[r * nt + j]!;
          s += xi * t;
        }
        e[r]! -= s;
      }
    }
    return e;
  }

  /** Every parameter array with a stable name and shape (for model files, .npy export, AIS). */
  parameters(): { name: string; data: Float32Array; shape: number[] }[] {
    const out: { name: string; data: Float32Array; shape: number[] }[] = [];
    for (const l of this.layers) {
      out.push({ name: `${l.name}.bias`, data: this.biases[l.index]!, shape: [l.size] });
      const L = this.laterals[l.index];
      if (L) out.push({ name: `${l.name}.lateral`, data: L, shape: [l.size, l.size] });
    }
    for (const c of this.connections) {
      const f = this.layers[c.from]!;
      const t = this.layers[c.to]!;
      out.push({ name: `${f.name}-${t.name}.weights`, data: c.weights, shape: [f.size, t.size] });
    }
    return out;
  }

  /** A copy with its own parameter buffers. */
  clone(): Network {
    const net = new Network(this.spec, this.kernels);
    net.copyFrom(this);
    return net;
  }

  /** this = other (same spec). */
  copyFrom(other: Network): void {
    const src = other.parameters();
    this.parameters().forEach((p, i) => {
      this.kernels.download(src[i]!.data);
      p.data.set(src[i]!.data);
      this.kernels.upload(p.data);
    });
  }
}

function capitalise(s: UnitName): 'Bernoulli' | 'Ising' | 'Gaussian' {
  return (s[0]!.toUpperCase() + s.slice(1)) as 'Bernoulli' | 'Ising' | 'Gaussian';
}
