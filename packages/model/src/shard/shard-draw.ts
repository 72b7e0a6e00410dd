// Drawing a stage on a shard: its own units of the stage's layers, from fields of the weights it
// holds, with the counter-based draws of the single-process Trainer; the spins go out as
// messages, and each step's own final states are kept for its update.
import type { Kernels, RngSite } from '@spinmesh/kernels';
import { sweepLateral } from '../sampler.js';
import { unitsProduct } from '../products.js';
import type { ShardGeometry } from './shard-geometry.js';
import type { ShardParameters } from './shard-holdings.js';
import type { SpinInbox } from './shard-inbox.js';
import type { PairingBook } from './shard-pairing.js';
import type { ShardStates } from './shard-states.js';
import type { ShardTally } from './shard-tally.js';
import type { SpinMessage } from './shard-types.js';
import type { OwnStates } from './shard-update.js';

const EMPTY = new Uint8Array(0);

export class StageDrawer {
  /** Spins drawn and not yet collected by outgoing(). */
  outbox: SpinMessage[] = [];
  /** Own final states per step drawn whose update is not applied. */
  readonly pending = new Map<number, OwnStates>();
  private pool: OwnStates[] = [];
  /** Partial-field arrays given back by the caller (recycle), for the next messages. */
  private readonly fieldPool: Float32Array[] = [];
  /** Owned tiles: per stage of the step being drawn, whether its partial fields went out. */
  private readonly fieldsSent: Uint8Array;
  /**
   * Owned tiles: per phase (positive, model) and layer with connections into it whose row band
   * this shard holds, rows x every unit of the layer: this shard's contributions to all its
   * fields (else null). A row group's go in its own rows, so a later group's (or the next
   * phase's) may be computed before this group is drawn.
   */
  private readonly partials: { positive: (Float32Array | null)[]; model: (Float32Array | null)[] };

  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly states: ShardStates,
    private readonly params: ShardParameters,
    private readonly pairing: PairingBook,
    private readonly tally: ShardTally,
    private readonly site: RngSite,
    private readonly inbox: SpinInbox,
  ) {
    const g = geometry;
    const buffers = (rows: number): (Float32Array | null)[] =>
      g.net.layers.map((l) =>
        g.owned &&
        g.net.connections.some((c) => c.to === l.index && params.connections[c.index]?.fromView)
          ? kernels.alloc(rows * l.size)
          : null,
      );
    this.partials = { positive: buffers(g.batchSize), model: buffers(g.chainRows) };
    this.fieldsSent = new Uint8Array(g.stagesPerStep);
  }

  private partialsOf(p: number): (Float32Array | null)[] {
    const positive = this.geometry.plan.stages[p]!.phase === 'positive';
    return positive ? this.partials.positive : this.partials.model;
  }

  /** An array of n values for a partial field: a recycled one when there is one of that size. */
  private fieldBuffer(n: number): Float32Array {
    const pool = this.fieldPool;
    for (let i = pool.length - 1; i >= 0; i--)
      if (pool[i]!.length === n) return pool.splice(i, 1)[0]!;
    return new Float32Array(n);
  }

  /** Messages the caller is done with: their partial-field arrays are used again. */
  recycle(msgs: readonly SpinMessage[]): void {
    for (const m of msgs) if (m.values && this.fieldPool.length < 64) this.fieldPool.push(m.values);
  }

  /** Start of step t: the batch into the visible layers; zeros for a sampled positive phase. */
  beginStep(t: number, appliedSteps: number): void {
    const g = this.geometry;
    const s = this.states;
    this.fieldsSent.fill(0);
    for (const v of g.visible)
      if (g.tracksLayer[v]) s.gatherData(t, v, s.positive[v]!, appliedSteps);
    s.positiveStep = t;
    if (g.options.positive !== 'sample') return;
    const R = g.batchRowsOf(t);
    for (const l of g.net.layers) {
      const r = g.ownRange[l.index];
      if (!r || g.isVisible[l.index]) continue;
      const X = s.positive[l.index]!;
      for (let i = 0; i < R; i++) X.fill(0, i * l.size + r[0], i * l.size + r[1]);
      this.kernels.upload(X);
    }
  }

  /** CD chains start from the batch's positive states: copies this shard's own regions. */
  startChainsFromBatch(t: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const R = g.batchRowsOf(t);
    for (const l of g.net.layers) {
      const r = g.ownRange[l.index];
      if (!r) continue;
      const n = l.size;
      const X = this.states.positive[l.index]!;
      const Y = this.states.model[l.index]!;
      k.download(X);
      k.copyBlock(R, r[1] - r[0], X, r[0], n, Y, r[0], n);
      k.upload(Y);
    }
  }

  /** Draws this shard's units of every own layer of stage p of step t (inputs in place). */
  drawStage(t: number, p: number): void {
    const g = this.geometry;
    const stage = g.plan.stages[p]!;
    const [r0, r1] = g.stageRows(t, p);
    const X = this.stageStates(p, r0);
    const chainOffset = this.site.chainOffset;
    this.site.step = t;
    this.site.stream = stage.stream;
    this.site.chainOffset = chainOffset + r0; // a draw's randomness is its chain's
    try {
      for (const l of stage.layers) if (g.ownRange[l]) this.drawLayer(l, X, r1 - r0, t, p);
    } finally {
      this.site.chainOffset = chainOffset;
    }
  }

  /** The state buffers stage p reads and writes, from row r0 (its row group's first) on. */
  private stageStates(p: number, r0: number): Float32Array[] {
    const g = this.geometry;
    const X = g.plan.stages[p]!.phase === 'positive' ? this.states.positive : this.states.model;
    if (r0 === 0) return X;
    return X.map((x, l) => x.subarray(r0 * g.net.layers[l]!.size));
  }

  /**
   * Owned tiles: this shard's contributions to every unit's field of the layers drawn at stage
   * p of step t, X[:, F_s] W[F_s, :] summed over the connections into the layer whose row band
   * it holds, by one product per layer (one wide product runs faster than one per shard); each
   * peer owning units of the layer is sent its columns, and this shard's own stay in
   * `partials` for its draw. Reads only this shard's own units' states.
   */
  sendFields(t: number, p: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const stage = g.plan.stages[p]!;
    const [r0, r1] = g.stageRows(t, p);
    const rows = r1 - r0;
    const X = this.stageStates(p, r0);
    for (const l of stage.layers) {
      const nt = g.net.layers[l]!.size;
      const P = this.partialsOf(p)[l]?.subarray(r0 * nt);
      if (!P) continue;
      let beta = 0;
      for (const c of g.net.connections) {
        const v = c.to === l ? this.params.connections[c.index]?.fromView : null;
        if (!v) continue;
        const [f0, f1] = g.ownRange[c.from]!;
        const nf = g.net.layers[c.from]!.size;
        k.sgemm(
          false,
          false,
          rows,
          nt,
          f1 - f0,
          1,
          X[c.from]!.subarray(f0),
          nf,
          v.data,
          v.ld,
          beta,
          P,
          nt,
        );
        beta = 1;
      }
      k.download(P);
      for (const rb of g.owners[l]!) {
        if (rb.shard === g.shard) continue;
        const w = rb.end - rb.start;
        const out = this.fieldBuffer(rows * w);
        k.copyBlock(rows, w, P, rb.start, nt, out, 0, w);
        this.outbox.push({
          from: g.shard,
          to: [rb.shard],
          step: t,
          stage: p,
          layer: l,
          rows,
          packed: EMPTY,
          values: out,
        });
        this.tally.counters.messagesSent++;
        this.tally.counters.bytesSent += out.byteLength;
      }
    }
  }

  /**
   * Owned tiles: sends the partial fields of every stage of step t from stage `next` (the first
   * not drawn) on whose inputs are drawn (its own units' states are in place) and that no stage
   * in between would overwrite, so that with row groups a later group's go out before this one
   * is drawn.
   */
  sendReadyFields(t: number, next: number): void {
    const plan = this.geometry.plan;
    const G = this.geometry.rowGroups;
    const between = new Set<number>();
    for (let q = next; q < plan.stages.length; q++) {
      const st = plan.stages[q]!;
      // CD chains start from the batch when the model phase opens: not before
      if (this.geometry.contrastive && st.phase !== plan.stages[next]!.phase) break;
      // a stage's partials are kept by phase, layer and row group until it is drawn
      const phase = st.phase === 'positive' ? 0 : 1;
      const keys = st.layers.map((l) => (l * G + st.group) * 2 + phase);
      if (
        !this.fieldsSent[q] &&
        keys.every((x) => !between.has(x)) &&
        this.fieldInputsDrawn(q, next)
      ) {
        this.sendFields(t, q);
        this.fieldsSent[q] = 1;
      }
      for (const x of keys) between.add(x);
    }
  }

  /** Whether every same-step state stage q's partial fields read is drawn (below `next`). */
  private fieldInputsDrawn(q: number, next: number): boolean {
    const g = this.geometry;
    for (const l of g.plan.stages[q]!.layers)
      for (const c of g.net.connections) {
        if (c.to !== l || !g.ownRange[c.from]) continue;
        const src = g.plan.inputs[q]![c.from]!;
        if (src.kind === 'stage' && src.stepsBack === 0 && src.stage >= next) return false;
      }
    return true;
  }

  /** The local fields of this shard's units of layer l, rows x own width, into fields[l]. */
  private fields(
    l: number,
    X: Float32Array[],
    rows: number,
    w: number,
    t: number,
    p: number,
  ): Float32Array {
    const g = this.geometry;
    const net = g.net;
    const k = this.kernels;
    const f = this.states.fields[l]!;
    const a = g.ownRange[l]![0];
    const block = g.options.productBlock;
    let beta = 0;
    for (const c of net.connections) {
      const h = this.params.connections[c.index];
      if (c.from === l) {
        const v = h!.fromView!;
        const nt = net.layers[c.to]!.size;
        unitsProduct(k, true, rows, a, a + w, nt, X[c.to]!, nt, v.data, v.ld, beta, f, w, block);
        beta = 1;
      } else if (c.to === l && g.owned) {
        continue; // in `partials` (sendFields), added below
      } else if (c.to === l) {
        const v = h!.toView!;
        const nf = net.layers[c.from]!.size;
        unitsProduct(k, false, rows, a, a + w, nf, X[c.from]!, nf, v.data, v.ld, beta, f, w, block);
        beta = 1;
      }
    }
    const nl = net.layers[l]!.size;
    const stamp = g.stamp(t, p);
    const P = this.partialsOf(p)[l]?.subarray(g.stageRows(t, p)[0] * nl);
    if (P && beta === 0) {
      // owned tiles: this shard's own part first (its columns of sendFields' product)
      k.copyBlock(rows, w, P, a, nl, f, 0, w);
      k.upload(f);
    } else if (P) {
      const buf = this.states.scratch;
      k.copyBlock(rows, w, P, a, nl, buf, 0, w);
      k.upload(buf);
      k.axpby(rows * w, 1, buf, 1, f);
    } else if (beta === 0) {
      f.fill(0, 0, rows * w);
      k.upload(f);
    }
    // owned tiles: the peers' partial fields, in shard order (consumed)
    for (const from of g.fieldSenders[l]!) {
      const box = this.inbox.fieldBoxes[g.region(l, from)]!;
      const part = box.get(stamp)!;
      box.delete(stamp);
      const buf = this.states.scratch;
      buf.set(part);
      k.upload(buf);
      k.axpby(rows * w, 1, buf, 1, f);
    }
    return f;
  }

  /** Draws this shard's units of layer l into X and queues their spins for the peers. */
  private drawLayer(l: number, X: Float32Array[], rows: number, t: number, p: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const layer = g.net.layers[l]!;
    const n = layer.size;
    const [a, b] = g.ownRange[l]!;
    const w = b - a;
    this.tally.counters.spinUpdates += rows * w;
    const f = this.fields(l, X, rows, w, t, p);
    const site = this.site;
    const x = X[l]!;
    const bias = this.params.bias[l]!;
    const lateral = this.params.lateral[l];
    let spins: Float32Array;
    if (lateral) {
      // the whole layer is here (w = n): GibbsSampler's unit-by-unit sweep, in place
      sweepLateral(k, layer, rows, f, x, lateral, bias, 1, null, site, null, null);
      spins = x;
    } else {
      site.unitOffset = layer.offset + a;
      k.sampleUnits(layer.type, rows, w, f, w, bias, 1, null, f, site);
      k.download(f);
      k.download(x);
      k.copyBlock(rows, w, f, 0, w, x, a, n);
      k.upload(x);
      spins = f;
    }
    this.send(l, spins, rows * w, t, p);
  }

  /** Packs `count` spins of layer l drawn at stage p of step t and queues them for the peers. */
  private send(l: number, spins: Float32Array, count: number, t: number, p: number): void {
    const g = this.geometry;
    const final = g.plan.finalNegative[l]!.includes(p) || g.plan.finalPositive[l]!.includes(p);
    const stat = final ? g.statRecipients[l]! : [];
    const to =
      stat.length > 0 ? [...g.recipients[l]!, ...stat].sort((a, b) => a - b) : g.recipients[l]!;
    if (to.length === 0) return;
    const packed = new Uint8Array(Math.ceil(count / 8));
    this.kernels.packSpins(count, spins, packed);
    const negative = g.plan.stages[p]!.phase === 'negative';
    if (negative) this.pairing.noteOwnDraw(l, g.stamp(t, p), packed);
    const reads =
      negative && p === g.plan.lastNegative[l] ? this.pairing.recordReads(l, t) : undefined;
    const [r0, r1] = g.stageRows(t, p);
    this.outbox.push({
      from: g.shard,
      to,
      step: t,
      stage: p,
      layer: l,
      rows: r1 - r0,
      packed,
      reads,
    });
    this.tally.counters.messagesSent++;
    this.tally.counters.bytesSent += packed.length * to.length;
  }

  /** Keeps this shard's own final states of step t until its update is applied. */
  keepOwnStates(t: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const R = g.batchRowsOf(t);
    const C = g.modelRowsOf(t);
    const own =
      this.pool.pop() ??
      ({
        step: t,
        positive: g.net.layers.map((l) => new Float32Array(g.batchSize * g.ownWidth(l.index))),
        model: g.net.layers.map((l) => new Float32Array(g.chainRows * g.ownWidth(l.index))),
      } satisfies OwnStates);
    own.step = t;
    for (const l of g.net.layers) {
      const r = g.ownRange[l.index];
      if (!r) continue;
      const w = r[1] - r[0];
      const n = l.size;
      const X = this.states.positive[l.index]!;
      const Y = this.states.model[l.index]!;
      k.download(X);
      k.download(Y);
      k.copyBlock(R, w, X, r[0], n, own.positive[l.index]!, 0, w);
      k.copyBlock(C, w, Y, r[0], n, own.model[l.index]!, 0, w);
    }
    this.pending.set(t, own);
  }

  /** The update of step u is applied: its own states go back to the pool. */
  release(u: number): void {
    const own = this.pending.get(u);
    this.pending.delete(u);
    if (own) this.pool.push(own);
  }

  /** After a restore: nothing pending, nothing to send. */
  reset(): void {
    for (const own of this.pending.values()) this.pool.push(own);
    this.pending.clear();
    this.outbox = [];
  }
}
