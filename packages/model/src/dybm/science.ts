// The SCIENCE task of Osogami & Otsuka (2015): the bitmap of a word, seven pixels high, read
// column by column, is a sequence of 7-bit frames; seven visible units learn it and its reverse,
// and recall either exactly from a partial cue. The font is ours: 7 rows, letters 3 to 5 columns
// wide, one blank column after each letter.
import { SpecError } from '../errors.js';
import type { DyBM } from './dybm.js';
import type { DyBMOptions, DyBMSpec } from './spec.js';

/** Rows of each glyph, top to bottom; '#' is a set pixel. */
export const FONT_7: Readonly<Record<string, readonly string[]>> = {
  S: ['.###.', '#...#', '#....', '.###.', '....#', '#...#', '.###.'],
  C: ['.###.', '#...#', '#....', '#....', '#....', '#...#', '.###.'],
  I: ['###', '.#.', '.#.', '.#.', '.#.', '.#.', '###'],
  E: ['#####', '#....', '#....', '####.', '#....', '#....', '#####'],
  N: ['#...#', '##..#', '##..#', '#.#.#', '#..##', '#..##', '#...#'],
};

/** Font height: one unit per pixel row. */
export const FONT_ROWS = 7;

/**
 * The network of the SCIENCE bench and test: 7 units, three synapses per ordered pair (delays 3,
 * 7 and 11), LTP decays 0, 0.5, 0.8 and LTD decays 0, 0.4, 0.8. DYBM.md says why (one synapse
 * per pair, as in the paper, learns too slowly here).
 */
export function scienceSpec(): DyBMSpec {
  return {
    units: FONT_ROWS,
    delays: Array.from({ length: FONT_ROWS * FONT_ROWS }, () => [3, 7, 11]),
    ltpDecays: [0, 0.5, 0.8],
    ltdDecays: [0, 0.4, 0.8],
  };
}

/** Learning options of the SCIENCE bench and test (add a seed). */
export const SCIENCE_OPTIONS: Readonly<DyBMOptions> = {
  optimizer: 'adagrad',
  learningRate: 5,
  initStd: 0.1,
  centring: true,
  centringRate: 0.01,
};

/** The cue: the first two letters with their blank columns (12 frames). */
export const SCIENCE_CUE_STEPS = 12;

/** A sequence of frames: steps x units values, row-major. */
export interface FrameSequence {
  data: Float64Array;
  steps: number;
  units: number;
}

/**
 * The word's bitmap read column by column: for each letter its columns, then one blank column.
 * Frame t, unit r is pixel (row r, column t). @throws SpecError for a letter the font lacks
 */
export function wordFrames(
  word: string,
  font: Readonly<Record<string, readonly string[]>> = FONT_7,
): FrameSequence {
  const cols: number[][] = [];
  for (const [pos, ch] of [...word].entries()) {
    const g = font[ch];
    if (!g) throw new SpecError(`word[${pos}]`, `'${ch}' is not in the font`);
    if (g.length !== FONT_ROWS || g.some((r) => r.length !== g[0]!.length))
      throw new SpecError(`font.${ch}`, `must be ${FONT_ROWS} rows of equal width`);
    for (let c = 0; c < g[0]!.length; c++) cols.push(g.map((r) => (r[c] === '#' ? 1 : 0)));
    cols.push(new Array<number>(FONT_ROWS).fill(0));
  }
  return { data: Float64Array.from(cols.flat()), steps: cols.length, units: FONT_ROWS };
}

/** The same frames in reverse time order. */
export function reverseFrames(seq: FrameSequence): FrameSequence {
  const { steps, units } = seq;
  const data = new Float64Array(seq.data.length);
  for (let t = 0; t < steps; t++)
    data.set(seq.data.subarray((steps - 1 - t) * units, (steps - t) * units), t * units);
  return { data, steps, units };
}

/** Text picture of frames (one line per unit, '#' for 1), for logs and test messages. */
export function framesToText(data: ArrayLike<number>, steps: number, units: number): string {
  const lines: string[] = [];
  for (let r = 0; r < units; r++) {
    let s = '';
    for (let t = 0; t < steps; t++) s += data[t * units + r]! > 0.5 ? '#' : '.';
    lines.push(s);
  }
  return lines.join('\n');
}

/**
 * Recall test of a periodic sequence: on a copy of the model (the original is untouched), forget
 * the past, read the first cueSteps frames, generate one period of most-likely frames, and compare
 * with what follows the cue (frames cueSteps, cueSteps + 1, ... wrapping around). Returns the
 * number of frames that differ (0: exact recall) and the generated frames.
 */
export function recallErrors(
  model: DyBM,
  seq: FrameSequence,
  cueSteps: number,
): { wrongFrames: number; generated: Float64Array } {
  const { steps, units } = seq;
  if (units !== model.units)
    throw new SpecError('sequence', `has ${units} units, the DyBM has ${model.units}`);
  if (!Number.isInteger(cueSteps) || cueSteps < 1 || cueSteps > steps)
    throw new SpecError('cueSteps', `must be an integer in [1, ${steps}], got ${cueSteps}`);
  const generated = model.clone().recall(seq.data, cueSteps, steps);
  let wrongFrames = 0;
  for (let s = 0; s < steps; s++) {
    const t = (cueSteps + s) % steps;
    for (let r = 0; r < units; r++) {
      if (generated[s * units + r] !== seq.data[t * units + r]) {
        wrongFrames++;
        break;
      }
    }
  }
  return { wrongFrames, generated };
}

export interface MemorizeOptions {
  /** Frames of each sequence given as the cue. */
  cueSteps: number;
  /** Give up after this many rounds. @defaultValue 2000 */
  maxRounds?: number;
}

export interface MemorizeResult {
  /** Every sequence is recalled exactly by the final parameters. */
  recalled: boolean;
  /** Rounds run (each learns one episode of every sequence). */
  rounds: number;
  /** For each sequence, the first round after which it was recalled exactly (null: never). */
  firstRecalled: (number | null)[];
  /** Frames learned of each sequence: rounds x (its period + cueSteps). */
  steps: number[];
}

/**
 * Teaches periodic sequences for recall from a cue. A round learns one episode of each sequence
 * in turn: forget the past (the state recall starts from), then learn one period followed by the
 * first cueSteps frames again (so the wrap-around is learned too). After each round every
 * sequence is tested (recallErrors); training stops when all are recalled exactly.
 */
export function memorizeSequences(
  model: DyBM,
  sequences: readonly FrameSequence[],
  opts: MemorizeOptions,
): MemorizeResult {
  const maxRounds = opts.maxRounds ?? 2000;
  const cue = opts.cueSteps;
  if (!Number.isInteger(maxRounds) || maxRounds < 0)
    throw new SpecError('maxRounds', `must be a non-negative integer, got ${maxRounds}`);
  for (const seq of sequences) recallErrors(model, seq, cue); // validates shapes and the cue
  const firstRecalled: (number | null)[] = sequences.map(() => null);
  let rounds = 0;
  let recalled = false;
  while (!recalled && rounds < maxRounds) {
    for (const seq of sequences) {
      model.reset();
      model.train(seq.data, seq.steps);
      model.train(seq.data, cue);
    }
    rounds++;
    recalled = true;
    sequences.forEach((seq, q) => {
      if (recallErrors(model, seq, cue).wrongFrames > 0) recalled = false;
      else firstRecalled[q] ??= rounds;
    });
  }
  return {
    recalled,
    rounds,
    firstRecalled,
    steps: sequences.map((seq) => rounds * (seq.steps + cue)),
  };
}
