// The stages of one training step and where each stage reads its neighbours' states from: the
// schedule Trainer follows implicitly, written out so that workers holding different units can
// follow it independently and agree on what every spin message means.
import type { Network } from '../network.js';
import { Streams } from '../sampler.js';
import type { ResolvedTrainOptions } from '../train-options.js';

/** One block-Gibbs update of some layers inside a step (all of a colour group's free layers). */
export interface Stage {
  /** 'positive': the data-clamped chains of the batch; 'negative': the model's chains. */
  phase: 'positive' | 'negative';
  /** Sweep index within the phase. */
  sweep: number;
  /** Layers drawn at this stage (no connection joins two of them). */
  layers: readonly number[];
  /** Stream word of the draws (Trainer's: Streams.positive + sweep, Streams.negative + sweep). */
  stream: number;
  /**
   * The group of rows (chains) the stage draws, of `groups` (see stepPlan): rows
   * [floor(group rows / groups), floor((group + 1) rows / groups)) of the phase's rows.
   */
  group: number;
  groups: number;
}

/**
 * Where a stage reads a neighbour layer from:
 * - 'data': the batch's data (a visible layer);
 * - 'zero': zeros (the start of a sampled positive phase);
 * - 'stage': the states drawn at stage `stage` of the same step (`stepsBack` 0) or of the
 *   previous step (1: the persistent chains; before step 0 their initial state).
 */
export type Source =
  { kind: 'data' } | { kind: 'zero' } | { kind: 'stage'; stage: number; stepsBack: 0 | 1 };

export interface StepPlan {
  stages: Stage[];
  /** inputs[p][m]: the source of layer m for stage p, for every m next to a layer of stage p. */
  inputs: (Source | null)[][];
  /**
   * Per layer: the last positive stage that draws it, or -1 (a visible layer: data); with row
   * groups the last group's (finalPositive has every group's).
   */
  lastPositive: number[];
  /** Per layer: the last negative stage that draws it (every layer is drawn in each sweep). */
  lastNegative: number[];
  /** Per layer: the last positive stage of each row group that draws it (empty: none). */
  finalPositive: number[][];
  /** Per layer: the last negative stage of each row group that draws it. */
  finalNegative: number[][];
  /** Index of the first negative stage. */
  firstNegative: number;
  /** Per stage: whether it is the last of its sweep (its phase's sweep ends there). */
  sweepEnds: boolean[];
}

/** The neighbour layers of l (connected to it). */
export function neighbours(net: Network, l: number): number[] {
  const out: number[] = [];
  for (const c of net.connections) {
    if (c.from === l) out.push(c.to);
    else if (c.to === l) out.push(c.from);
  }
  return out;
}

/**
 * The step plan of Trainer with options `o` (positive 'exact' or 'sample'; 'meanfield' has no
 * stages of single draws and is not planned here).
 */
/** Trainer's stages of one step, one group of rows each: the positive phase, then k sweeps. */
function logicalStages(
  net: Network,
  o: ResolvedTrainOptions,
  visible: readonly number[],
  isVisible: boolean[],
): Stage[] {
  // Trainer's sweep order: the colour group holding the first visible layer first.
  const colours = net.colouring();
  const first = colours.findIndex((g) => g.includes(visible[0]!));
  const order = [colours[first]!, ...colours.filter((_, i) => i !== first)];
  const stages: Stage[] = [];
  const stage = (phase: Stage['phase'], sweep: number, layers: number[]): Stage => ({
    phase,
    sweep,
    layers,
    stream: (phase === 'positive' ? Streams.positive : Streams.negative) + sweep,
    group: 0,
    groups: 1,
  });
  if (o.positive === 'exact') {
    const hidden = net.layers.filter((l) => !isVisible[l.index]).map((l) => l.index);
    if (hidden.length > 0) stages.push(stage('positive', 0, hidden));
  } else {
    for (let s = 0; s < o.positiveIterations; s++) {
      for (const g of order) {
        const layers = g.filter((l) => !isVisible[l]);
        if (layers.length > 0) stages.push(stage('positive', s, layers));
      }
    }
  }
  for (let s = 0; s < o.k; s++) for (const g of order) stages.push(stage('negative', s, [...g]));
  return stages;
}

/** Rows [r0, r1) of group g of `groups` over a phase of `rows` rows. */
export function groupRows(rows: number, group: number, groups: number): [number, number] {
  return [Math.floor((group * rows) / groups), Math.floor(((group + 1) * rows) / groups)];
}

/**
 * With `interleave` (persistent chains only, whose model phase never reads the batch's states
 * and the other way round), the positive phase is drawn after the model phase's first stage:
 * an RBM's step becomes [model visible, positive hidden, model hidden], so what the positive
 * stage's draw needs from peers can travel while the model visible layer is drawn, and the
 * model hidden layer's while the positive one is. Nothing drawn changes (a draw's randomness is
 * its unit's, chain's, step's and stream's, whatever the order).
 *
 * With `groups` > 1 every stage is drawn in that many groups of rows, one after the other
 * (chains are independent, and a draw's randomness is its chain's, so this changes nothing
 * drawn): a group's messages travel while the next group computes. A group reads its
 * neighbours' states of the same group.
 */
export function stepPlan(
  net: Network,
  o: ResolvedTrainOptions,
  visible: readonly number[],
  groups = 1,
  interleave = false,
): StepPlan {
  const isVisible = net.layers.map((l) => visible.includes(l.index));
  const logical = logicalStages(net, o, visible, isVisible);
  const negativeAt = logical.findIndex((st) => st.phase === 'negative');
  if (interleave && o.negative === 'pcd' && negativeAt > 0)
    // the positive phase after the model phase's first stage (see the doc comment)
    logical.splice(1, 0, ...logical.splice(0, negativeAt));
  const firstNegative = logical.findIndex((st) => st.phase === 'negative') * groups;
  // every logical stage in `groups` consecutive stages, one per group of rows
  const stages: Stage[] = [];
  for (const st of logical)
    for (let group = 0; group < groups; group++) stages.push({ ...st, group, groups });
  const L = net.layers.length;
  const lastPositive = new Array<number>(L).fill(-1);
  const lastNegative = new Array<number>(L).fill(-1);
  const finalPositive = net.layers.map(() => new Array<number>(groups).fill(-1));
  const finalNegative = net.layers.map(() => new Array<number>(groups).fill(-1));
  stages.forEach((st, p) => {
    for (const l of st.layers) {
      (st.phase === 'positive' ? lastPositive : lastNegative)[l] = p;
      (st.phase === 'positive' ? finalPositive : finalNegative)[l]![st.group] = p;
    }
  });
  const pcd = o.negative === 'pcd';
  const inputs = stages.map((st, p) => {
    const row: (Source | null)[] = new Array<Source | null>(L).fill(null);
    const lastBefore = (m: number, phase: Stage['phase']): number => {
      for (let q = p - 1; q >= 0; q--) {
        const sq = stages[q]!;
        if (sq.phase === phase && sq.group === st.group && sq.layers.includes(m)) return q;
      }
      return -1;
    };
    for (const l of st.layers) {
      for (const m of neighbours(net, l)) {
        let src: Source;
        const q = lastBefore(m, st.phase);
        if (q >= 0) src = { kind: 'stage', stage: q, stepsBack: 0 };
        else if (st.phase === 'positive') src = isVisible[m] ? { kind: 'data' } : { kind: 'zero' };
        else if (pcd) src = { kind: 'stage', stage: finalNegative[m]![st.group]!, stepsBack: 1 };
        else if (isVisible[m]) src = { kind: 'data' };
        else src = { kind: 'stage', stage: finalPositive[m]![st.group]!, stepsBack: 0 };
        row[m] = src;
      }
    }
    return row;
  });
  for (const f of finalPositive) if (f[0] === -1) f.length = 0;
  const sweepEnds = stages.map(
    (st, p) => !stages.some((x, q) => q > p && x.phase === st.phase && x.sweep === st.sweep),
  );
  return {
    stages,
    inputs,
    lastPositive,
    lastNegative,
    finalPositive,
    finalNegative,
    firstNegative,
    sweepEnds,
  };
}
