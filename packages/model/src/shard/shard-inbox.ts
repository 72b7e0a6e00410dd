// The spins a shard has received, by peer region and stamp, and which of them are in its state
// buffers now: whether a stage or an update has all it reads, and copying those states in.
import type { Kernels } from '@spinmesh/kernels';
import { FormatError, SpecError } from '../errors.js';
import type { OwnerRange, ShardGeometry } from './shard-geometry.js';
import type { ShardStates } from './shard-states.js';
import type { ShardTally } from './shard-tally.js';
import type { SpinKey } from './shard-types.js';
import type { Source } from './plan.js';

/** How far a shard has come: drawing step `step`; updates of steps < `applied` applied. */
export interface Progress {
  step: number;
  applied: number;
}

export class SpinInbox {
  /** Per region (layer, peer shard) read here: received packed spins by stamp, else null. */
  readonly boxes: (Map<number, Uint8Array> | null)[];
  /**
   * Per region and row group (region * groups + group): the stamp of the peer states now in the
   * `positive` buffers (NaN: data, zeros or none) and in the `model` buffers (-1: the initial
   * chains; NaN with CD).
   */
  readonly positiveStamp: Float64Array;
  readonly modelStamp: Float64Array;
  /**
   * Owned tiles: per region (layer, peer shard) that sends partial fields of a layer this
   * shard draws, the received fields by stamp, else null. Read once, then dropped.
   */
  readonly fieldBoxes: (Map<number, Float32Array> | null)[];
  private readonly layersSeen: Uint8Array;

  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly states: ShardStates,
    private readonly tally: ShardTally,
  ) {
    const g = geometry;
    const regions = g.layerCount * g.shards;
    this.positiveStamp = new Float64Array(regions * g.rowGroups).fill(NaN);
    this.modelStamp = new Float64Array(regions * g.rowGroups).fill(g.contrastive ? NaN : -1);
    this.boxes = new Array<Map<number, Uint8Array> | null>(regions).fill(null);
    for (const l of g.net.layers) {
      if (!g.readsLayer[l.index]) continue;
      for (const r of g.owners[l.index]!)
        if (r.shard !== g.shard) this.boxes[g.region(l.index, r.shard)] = new Map();
    }
    this.fieldBoxes = new Array<Map<number, Float32Array> | null>(regions).fill(null);
    g.fieldSenders.forEach((senders, l) => {
      for (const s of senders) this.fieldBoxes[g.region(l, s)] = new Map();
    });
    this.layersSeen = new Uint8Array(g.layerCount);
  }

  /**
   * The box a peer's partial field goes to (owned tiles). @throws SpecError when it cannot be
   * meant for this shard (wrong sender, layer, stage or size)
   */
  fieldBoxFor(
    from: number,
    step: number,
    stage: number,
    layer: number,
    values: Float32Array,
    totalSteps: number,
  ): Map<number, Float32Array> {
    const g = this.geometry;
    this.checkKey(from, step, stage, layer, totalSteps);
    const box = this.fieldBoxes[g.region(layer, from)];
    if (!box || !g.plan.stages[stage]!.layers.includes(layer))
      throw new SpecError(
        'receive.layer',
        `shard ${g.shard} reads no partial fields of layer ${layer} from shard ${from} at stage ${stage}`,
      );
    const [r0, r1] = g.stageRows(step, stage);
    const want = (r1 - r0) * g.ownWidth(layer);
    if (values.length !== want)
      throw new SpecError('receive.values', `must hold ${want} values, got ${values.length}`);
    return box;
  }

  /** The common checks of a message's key. @throws SpecError naming the field at fault */
  private checkKey(
    from: number,
    step: number,
    stage: number,
    layer: number,
    totalSteps: number,
  ): void {
    const g = this.geometry;
    if (!Number.isInteger(from) || from < 0 || from >= g.shards || from === g.shard)
      throw new SpecError('receive.from', `must be a peer shard index, got ${from}`);
    if (!Number.isInteger(stage) || stage < 0 || stage >= g.stagesPerStep)
      throw new SpecError('receive.stage', `must be in 0..${g.stagesPerStep - 1}, got ${stage}`);
    if (!Number.isInteger(layer) || layer < 0 || layer >= g.layerCount)
      throw new SpecError('receive.layer', `must be a layer index, got ${layer}`);
    if (!Number.isInteger(step) || step < 0 || step >= totalSteps)
      throw new SpecError('receive.step', `must be an integer in 0..${totalSteps - 1}`);
  }

  /**
   * The box a peer's message goes to. @throws SpecError when the message cannot be meant for
   * this shard (wrong sender, layer, stage, size, or reads where the final draw needs them)
   */
  boxFor(
    from: number,
    step: number,
    stage: number,
    layer: number,
    packed: Uint8Array,
    totalSteps: number,
  ): Map<number, Uint8Array> {
    const g = this.geometry;
    this.checkKey(from, step, stage, layer, totalSteps);
    const box = this.boxes[g.region(layer, from)];
    if (!box || !g.plan.stages[stage]!.layers.includes(layer))
      throw new SpecError(
        'receive.layer',
        `shard ${g.shard} reads no spins of layer ${layer} from shard ${from} at stage ${stage}`,
      );
    const r = g.owners[layer]!.find((x) => x.shard === from)!;
    const [r0, r1] = g.stageRows(step, stage);
    const bytes = Math.ceil(((r1 - r0) * (r.end - r.start)) / 8);
    if (packed.length !== bytes)
      throw new SpecError('receive.packed', `must hold ${bytes} bytes, got ${packed.length}`);
    return box;
  }

  /**
   * Whether a message (region, stamp) can never be read again. `keepFrom`: per region, the
   * oldest stamp pairing may still read (Infinity: none).
   */
  obsolete(region: number, stamp: number, at: Progress, keepFrom: Float64Array): boolean {
    const g = this.geometry;
    const step = Math.floor(stamp / g.stagesPerStep);
    if (step >= at.applied) return false;
    if (!g.drawReads[Math.floor(region / g.shards)]!) return true; // read by its update only
    if (stamp < 0) return !(stamp >= keepFrom[region]!); // the initial chains (pairing only)
    const batch = g.contrastive || g.plan.stages[stamp % g.stagesPerStep]!.phase === 'positive';
    if (batch) return step < at.step;
    const slot = region * g.rowGroups + g.plan.stages[stamp % g.stagesPerStep]!.group;
    return stamp <= this.modelStamp[slot]! && !(stamp >= keepFrom[region]!);
  }

  /** Drops every message that can never be read again. */
  prune(at: Progress, keepFrom: Float64Array): void {
    const drawn = at.step * this.geometry.stagesPerStep;
    for (const box of this.fieldBoxes)
      if (box) for (const stamp of box.keys()) if (stamp < drawn) box.delete(stamp);
    this.boxes.forEach((box, region) => {
      if (!box) return;
      for (const stamp of box.keys())
        if (this.obsolete(region, stamp, at, keepFrom)) box.delete(stamp);
    });
  }

  /**
   * Whether every peer region that stage p of step t reads is available (apply: also copy it
   * into the state buffers and count its staleness; missing: collect what is not there).
   */
  inputsReady(t: number, p: number, apply: boolean, missing: SpinKey[] | null): boolean {
    const g = this.geometry;
    const stage = g.plan.stages[p]!;
    const seen = this.layersSeen;
    seen.fill(0);
    let ok = true;
    const stamp = g.stamp(t, p);
    for (const l of stage.layers) {
      if (!g.ownRange[l]) continue;
      for (const from of g.fieldSenders[l]!) {
        if (this.fieldBoxes[g.region(l, from)]!.has(stamp)) continue;
        ok = false;
        if (!missing) return false;
        missing.push({ from, step: t, stage: p, layer: l });
      }
      for (const m of g.spinInputs[l]!) {
        if (seen[m]) continue;
        seen[m] = 1;
        const src = g.plan.inputs[p]![m]!;
        for (const r of g.owners[m]!) {
          if (r.shard === g.shard) continue;
          if (!this.peerRegion(p, m, r, src, t, apply, missing)) {
            ok = false;
            if (!missing) return false;
          }
        }
      }
    }
    return ok;
  }

  /** inputsReady for one peer region of neighbour layer m, read from `src`. */
  private peerRegion(
    p: number,
    m: number,
    r: OwnerRange,
    src: Source,
    t: number,
    apply: boolean,
    missing: SpinKey[] | null,
  ): boolean {
    const g = this.geometry;
    const stage = g.plan.stages[p]!;
    const positive = stage.phase === 'positive';
    const region = g.region(m, r.shard);
    const idx = region * g.rowGroups + stage.group;
    const stamps = positive ? this.positiveStamp : this.modelStamp;
    const [r0, r1] = g.stageRows(t, p);
    if (src.kind === 'data' || src.kind === 'zero') {
      if (apply) this.fillFixed(positive, m, r, src.kind, r0, r1);
      if (apply) stamps[idx] = NaN;
      return true;
    }
    const P = g.stagesPerStep;
    const wanted = Math.max((t - src.stepsBack) * P + src.stage, -1);
    if (stamps[idx] === wanted) {
      if (apply) this.tally.countSpinRead(0);
      return true;
    }
    const box = this.boxes[region]!;
    // the exact stamp, else (persistent chains only) the newest older state within the bound
    let best = box.has(wanted) ? wanted : NaN;
    if (Number.isNaN(best) && !positive && !g.contrastive && g.staleness > 0) {
      best = stamps[idx]!;
      for (const s of box.keys())
        if (s <= wanted && s > best && g.plan.stages[s % P]!.phase === 'negative') best = s;
      if (Math.ceil((wanted - best) / P) > g.staleness) best = NaN;
    }
    if (Number.isNaN(best)) {
      const key = { from: r.shard, step: Math.floor(wanted / P), stage: wanted % P, layer: m };
      missing?.push(key);
      return false;
    }
    if (apply) {
      if (best !== stamps[idx]) {
        const X = positive ? this.states.positive[m]! : this.states.model[m]!;
        this.unpackTo(box.get(best)!, m, r, r1 - r0, X, r0);
        stamps[idx] = best;
      }
      this.tally.countSpinRead(Math.ceil((wanted - best) / P));
    }
    return true;
  }

  /** A peer region read from the data or zeros: zeros written, or the batch copied to the model side. */
  private fillFixed(
    positive: boolean,
    m: number,
    r: OwnerRange,
    kind: 'data' | 'zero',
    r0: number,
    r1: number,
  ): void {
    const g = this.geometry;
    const n = g.net.layers[m]!.size;
    const X = positive ? this.states.positive[m]! : this.states.model[m]!;
    if (kind === 'zero') {
      for (let i = r0; i < r1; i++) X.fill(0, i * n + r.start, i * n + r.end);
    } else if (!positive) {
      const Y = this.states.positive[m]!;
      const at = r0 * n + r.start;
      this.kernels.copyBlock(r1 - r0, r.end - r.start, Y, at, n, X, at, n);
    }
    this.kernels.upload(X);
  }

  /** Unpacks a peer's rows x (r.end - r.start) spins into columns [r.start, r.end) of X from row row0. */
  unpackTo(
    packed: Uint8Array,
    m: number,
    r: OwnerRange,
    rows: number,
    X: Float32Array,
    row0: number,
  ): void {
    const k = this.kernels;
    const n = this.geometry.net.layers[m]!.size;
    const w = r.end - r.start;
    const buf = this.states.scratch;
    k.unpackSpins(rows * w, packed, this.geometry.offValue[m]!, buf);
    k.download(buf);
    k.download(X);
    k.copyBlock(rows, w, buf, 0, w, X, row0 * n + r.start, n);
    k.upload(X);
  }

  /** Whether every peer state the update of step u reads has arrived (else collect them). */
  updateReady(u: number, missing: SpinKey[] | null): boolean {
    const g = this.geometry;
    let ok = true;
    for (let x = 0; x < g.layerCount; x++) {
      if (!g.readsLayer[x]) continue;
      for (const r of g.owners[x]!) {
        if (r.shard === g.shard) continue;
        const box = this.boxes[g.region(x, r.shard)]!;
        const finals = g.isVisible[x]
          ? g.plan.finalNegative[x]!
          : [...g.plan.finalPositive[x]!, ...g.plan.finalNegative[x]!];
        for (const stage of finals) {
          if (box.has(g.stamp(u, stage))) continue;
          ok = false;
          if (!missing) return false;
          missing.push({ from: r.shard, step: u, stage, layer: x });
        }
      }
    }
    return ok;
  }

  /** The received spins of steps before `step` as (region, stamp, length) triples and bytes. */
  entriesBefore(step: number): { index: number[]; parts: Uint8Array[] } {
    const index: number[] = [];
    const parts: Uint8Array[] = [];
    this.boxes.forEach((box, region) => {
      if (!box) return;
      for (const [stamp, bytes] of box) {
        if (Math.floor(stamp / this.geometry.stagesPerStep) >= step) continue; // resent after a rollback
        index.push(region, stamp, bytes.length);
        parts.push(bytes);
      }
    });
    return { index, parts };
  }

  /** Back to checkpointed contents (entriesBefore's) and model-state stamps. */
  restore(modelStamps: Float64Array, index: Float64Array, all: Uint8Array): void {
    this.modelStamp.set(modelStamps);
    this.positiveStamp.fill(NaN);
    for (const box of this.boxes) box?.clear();
    for (const box of this.fieldBoxes) box?.clear();
    let off = 0;
    for (let i = 0; i < index.length; i += 3) {
      const box = this.boxes[index[i]!];
      const len = index[i + 2]!;
      if (!box || off + len > all.length)
        throw new FormatError('checkpoint', 'has a damaged inbox');
      box.set(index[i + 1]!, all.slice(off, off + len));
      off += len;
    }
  }
}
