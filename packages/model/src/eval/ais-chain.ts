// The chain that annealed importance sampling moves along its schedule (see ais.ts for the
// method): states, the base model, and one Gibbs sweep at each temperature.
import { UnitType } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Network, State } from '../network.js';
import { addField, neighbours, offValue, seedSite, unitLogZ } from './common.js';

/** Added to a run's stream for the uniforms of sequential (lateral) updates. */
const STREAM_LATERAL = 0x100;

/** The AIS chain machinery for one network and one set of runs. */
export class AisChain {
  readonly net: Network;
  readonly runs: number;
  readonly summed: number[];
  readonly rest: number[];
  /** rest layers in update order (colour groups). */
  readonly order: number[];
  readonly logZBase: number;
  private readonly b0: Float32Array[];
  private readonly b0Host: Float64Array[];
  private readonly bHost: Float64Array[];
  /** states of every layer (S layers: last sample). */
  readonly X: Float32Array[];
  private readonly F: Float32Array[]; // raw fields into S layers (runs x n_s), by layer
  private readonly scratch: Float32Array;
  private readonly biasBuf: Float32Array[];
  private readonly B2: (Float32Array | null)[];
  private readonly D: (Float32Array | null)[];
  private readonly q: (Float64Array | null)[];
  private readonly P: Float64Array;
  private readonly pairConns: { f: number; t: number; c: number }[];
  private readonly lp: Float32Array;
  private readonly field: Float32Array;
  private readonly tmp: Float32Array | null;
  private readonly uni: Float32Array | null;

  constructor(net: Network, runs: number, baseVisible: Float32Array | null, visible: number) {
    this.net = net;
    this.runs = runs;
    const k = net.kernels;
    const layers = net.layers;
    for (const p of net.parameters()) k.download(p.data);

    // S: the lateral-free layers of one colour group, preferring groups without the visible layer
    const groups = net.colouring();
    let best: number[] = [];
    let bestKey = -1;
    for (const g of groups) {
      const cand = g.filter((l) => !layers[l]!.lateral);
      const size = cand.reduce((s, l) => s + layers[l]!.size, 0);
      const key = (g.includes(visible) && groups.length > 1 ? 0 : 1) * 2 ** 40 + size;
      if (cand.length > 0 && key > bestKey) {
        bestKey = key;
        best = cand;
      }
    }
    this.summed = best;
    this.rest = layers.map((l) => l.index).filter((l) => !best.includes(l));
    this.order = groups.flat().filter((l) => !best.includes(l));

    this.b0 = layers.map((l) => {
      const b = k.alloc(l.size);
      if (l.index === visible && baseVisible) b.set(baseVisible);
      k.upload(b);
      return b;
    });
    this.b0Host = this.b0.map((b) => Float64Array.from(b));
    this.bHost = net.biases.map((b) => Float64Array.from(b));
    let lz = 0;
    for (const l of layers)
      for (let j = 0; j < l.size; j++) lz += unitLogZ(l.type, this.b0Host[l.index]![j]!);
    this.logZBase = lz;

    const maxN = layers.reduce((m, l) => Math.max(m, l.size), 1);
    this.X = layers.map((l) => k.alloc(runs * l.size));
    this.F = layers.map((l) => (best.includes(l.index) ? k.alloc(runs * l.size) : k.alloc(0)));
    this.scratch = k.alloc(runs * maxN);
    this.field = k.alloc(runs * maxN);
    this.biasBuf = layers.map((l) => k.alloc(l.size));
    this.B2 = layers.map((l) => {
      if (best.includes(l.index)) return null;
      const m = k.alloc(l.size * 2);
      for (let j = 0; j < l.size; j++) {
        m[2 * j] = this.b0Host[l.index]![j]!;
        m[2 * j + 1] = this.bHost[l.index]![j]!;
      }
      k.upload(m);
      return m;
    });
    this.D = layers.map((l) => (best.includes(l.index) ? null : k.alloc(runs * 2)));
    this.q = layers.map((l) =>
      !best.includes(l.index) && l.type === UnitType.Gaussian ? new Float64Array(runs) : null,
    );
    this.P = new Float64Array(runs);
    this.pairConns = [];
    for (const c of net.connections) {
      if (!best.includes(c.from) && !best.includes(c.to))
        this.pairConns.push({ f: c.from, t: c.to, c: c.index });
    }
    const needTmp = this.pairConns.length > 0 || this.rest.some((l) => layers[l]!.lateral);
    this.tmp = needTmp ? k.alloc(runs * maxN) : null;
    this.uni = this.rest.some((l) => layers[l]!.lateral) ? k.alloc(runs * maxN) : null;
    this.lp = k.alloc(runs);
  }

  /** biasBuf[l] = (1-beta) b0 + beta b. */
  private interpBias(l: number, beta: number): Float32Array {
    const k = this.net.kernels;
    const n = this.net.layers[l]!.size;
    const out = this.biasBuf[l]!;
    k.axpby(n, 1 - beta, this.b0[l]!, 0, out);
    k.axpby(n, beta, this.net.biases[l]!, 1, out);
    return out;
  }

  private biasSq(l: number, beta: number): number {
    const b0 = this.b0Host[l]!;
    const b = this.bHost[l]!;
    let s = 0;
    for (let j = 0; j < b.length; j++) {
      const v = (1 - beta) * b0[j]! + beta * b[j]!;
      s += v * v;
    }
    return s;
  }

  /** Exact draw from the base model for the rest layers (step 0). */
  sampleBase(seed: number, stream: number): void {
    const k = this.net.kernels;
    this.field.fill(0);
    k.upload(this.field);
    for (const l of this.rest) {
      const layer = this.net.layers[l]!;
      const site = { ...seedSite(seed, stream), unitOffset: layer.offset, step: 0 };
      k.sampleUnits(
        layer.type,
        this.runs,
        layer.size,
        this.field,
        layer.size,
        this.b0[l]!,
        1,
        null,
        this.X[l]!,
        site,
      );
    }
  }

  /** Sets the rest layers from rows [0, runs) of a State. */
  setState(start: State): void {
    const k = this.net.kernels;
    for (const l of this.rest) {
      const n = this.net.layers[l]!.size;
      const src = start[l];
      if (!src || src.length < this.runs * n) {
        throw new SpecError(
          `startStates[${l}]`,
          `must hold ${this.runs} rows of layer '${this.net.layers[l]!.name}'`,
        );
      }
      k.download(src);
      this.X[l]!.set(src.subarray(0, this.runs * n));
      k.upload(this.X[l]!);
    }
  }

  /** Recomputes the beta-independent statistics of the current rest state. */
  computeStats(): void {
    const net = this.net;
    const k = net.kernels;
    const runs = this.runs;
    for (const s of this.summed) {
      let first = true;
      for (const { conn, other } of neighbours(net, s)) {
        addField(net, conn, s, this.X[other]!, runs, 1, first ? 0 : 1, this.F[s]!);
        first = false;
      }
      if (first) this.F[s]!.fill(0);
    }
    for (const l of this.rest) {
      const n = net.layers[l]!.size;
      const x = this.X[l]!;
      k.sgemm(false, false, runs, 2, n, 1, x, n, this.B2[l]!, 2, 0, this.D[l]!, 2);
      k.download(this.D[l]!);
      const q = this.q[l];
      if (q) for (let r = 0; r < runs; r++) q[r] = k.sumSquares(n, x.subarray(r * n, (r + 1) * n));
    }
    this.P.fill(0);
    const tmp = this.tmp;
    if (tmp) {
      for (const pc of this.pairConns) {
        const c = net.connections[pc.c]!;
        const nt = net.layers[pc.t]!.size;
        addField(net, c, pc.t, this.X[pc.f]!, runs, 1, 0, tmp);
        this.addRowDots(tmp, this.X[pc.t]!, nt, 1);
      }
      for (const l of this.rest) {
        const L = net.laterals[l];
        if (!L) continue;
        const n = net.layers[l]!.size;
        k.sgemm(false, false, runs, n, n, 1, this.X[l]!, n, L, n, 0, tmp, n);
        this.addRowDots(tmp, this.X[l]!, n, 0.5);
      }
    }
  }

  private addRowDots(a: Float32Array, b: Float32Array, n: number, scale: number): void {
    const k = this.net.kernels;
    k.download(a);
    k.download(b);
    for (let r = 0; r < this.runs; r++) {
      let s = 0;
      const o = r * n;
      for (let j = 0; j < n; j++) s += a[o + j]! * b[o + j]!;
      this.P[r] = this.P[r]! + scale * s;
    }
  }

  /** out[r] = log p*_beta(rest state of run r) (hidden layers S summed out). */
  logp(beta: number, out: Float64Array): void {
    const net = this.net;
    const k = net.kernels;
    const runs = this.runs;
    for (let r = 0; r < runs; r++) out[r] = beta * this.P[r]!;
    for (const l of this.rest) {
      const D = this.D[l]!;
      const q = this.q[l];
      let c = 0;
      if (q) c = -0.5 * this.biasSq(l, beta);
      for (let r = 0; r < runs; r++) {
        out[r] =
          out[r]! + (1 - beta) * D[2 * r]! + beta * D[2 * r + 1]! + c - (q ? 0.5 * q[r]! : 0);
      }
    }
    for (const s of this.summed) {
      const layer = net.layers[s]!;
      const n = layer.size;
      k.axpby(runs * n, beta, this.F[s]!, 0, this.scratch);
      const bb = this.interpBias(s, beta);
      k.logPartitionRows(layer.type, runs, n, this.scratch, n, bb, 1, this.lp, false);
      k.download(this.lp);
      let c = 0;
      if (layer.type === UnitType.Gaussian)
        c = 0.5 * n * Math.log(2 * Math.PI) - 0.5 * this.biasSq(s, beta);
      for (let r = 0; r < runs; r++) out[r] = out[r]! + this.lp[r]! + c;
    }
  }

  /** One Gibbs sweep at beta (S, then the rest layers in colour order); then computeStats. */
  transition(beta: number, seed: number, stream: number, step: number): void {
    const net = this.net;
    const k = net.kernels;
    const runs = this.runs;
    const base = seedSite(seed, stream);
    for (const s of this.summed) {
      const layer = net.layers[s]!;
      const n = layer.size;
      k.axpby(runs * n, beta, this.F[s]!, 0, this.scratch);
      const bb = this.interpBias(s, beta);
      k.sampleUnits(layer.type, runs, n, this.scratch, n, bb, 1, null, this.X[s]!, {
        ...base,
        unitOffset: layer.offset,
        step,
      });
    }
    for (const l of this.order) {
      const layer = net.layers[l]!;
      const n = layer.size;
      let first = true;
      for (const { conn, other } of neighbours(net, l)) {
        addField(net, conn, l, this.X[other]!, runs, beta, first ? 0 : 1, this.field);
        first = false;
      }
      if (first) this.field.fill(0, 0, runs * n);
      const bb = this.interpBias(l, beta);
      const site = { ...base, unitOffset: layer.offset, step };
      if (!layer.lateral) {
        k.sampleUnits(layer.type, runs, n, this.field, n, bb, 1, null, this.X[l]!, site);
      } else {
        this.sequential(l, beta, bb, { ...site, stream: (stream + STREAM_LATERAL) >>> 0 });
      }
    }
    this.computeStats();
  }

  /** Unit-by-unit Gibbs update of a lateral layer at beta (fields from neighbours in `field`). */
  private sequential(
    l: number,
    beta: number,
    bb: Float32Array,
    site: ReturnType<typeof seedSite>,
  ): void {
    const net = this.net;
    const k = net.kernels;
    const runs = this.runs;
    const layer = net.layers[l]!;
    const n = layer.size;
    const L = net.laterals[l]!;
    const x = this.X[l]!;
    const la = this.tmp!;
    const u = this.uni!;
    k.sgemm(false, false, runs, n, n, beta, x, n, L, n, 0, la, n);
    k.uniform(u, runs * n, n, site);
    k.download(la);
    k.download(u);
    k.download(x);
    k.download(this.field);
    k.download(bb);
    const off = offValue(layer.type);
    const ising = layer.type === UnitType.Ising;
    for (let r = 0; r < runs; r++) {
      const o = r * n;
      for (let i = 0; i < n; i++) {
        const a = this.field[o + i]! + bb[i]! + la[o + i]!;
        const z = ising ? 2 * a : a;
        const p = z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
        const nv = u[o + i]! < p ? 1 : off;
        const d = nv - x[o + i]!;
        if (d !== 0) {
          x[o + i] = nv;
          const bd = beta * d;
          const row = i * n;
          for (let j = 0; j < n; j++) la[o + j] = la[o + j]! + bd * L[row + j]!;
        }
      }
    }
    k.upload(x);
  }
}
