// The SCIENCE task (Osogami & Otsuka 2015): seven visible units learn the word's bitmap, read
// column by column, and its reverse, and recall either exactly from a 12-frame cue.
import { describe, expect, it } from 'vitest';
import {
  DyBM,
  SCIENCE_CUE_STEPS,
  SCIENCE_OPTIONS,
  framesToText,
  memorizeSequences,
  recallErrors,
  reverseFrames,
  scienceSpec,
  wordFrames,
} from '../src/index.js';

describe('SCIENCE', () => {
  const fwd = wordFrames('SCIENCE');
  const rev = reverseFrames(fwd);

  it('reads the bitmap column by column, one blank column after each letter', () => {
    expect([fwd.steps, fwd.units]).toEqual([40, 7]);
    const text = framesToText(fwd.data, fwd.steps, fwd.units).split('\n');
    expect(text[0]).toBe('.###...###..###.#####.#...#..###..#####.');
    expect(text[3]).toBe('.###..#......#..####..#.#.#.#.....####..');
    expect(framesToText(rev.data, rev.steps, 7).split('\n')[0]).toBe(
      [...text[0]!].reverse().join(''),
    );
    // The task needs memory: the shortest context that determines the next frame in both
    // sequences is 8 frames (the two C's and the two E's look alike for 6 frames and more).
    const col = (s: typeof fwd, t: number): string =>
      Array.from(s.data.subarray(((t + 40) % 40) * 7, (((t + 40) % 40) + 1) * 7)).join('');
    const determines = (k: number): boolean => {
      const next = new Map<string, string>();
      for (const s of [fwd, rev])
        for (let t = 0; t < 40; t++) {
          const ctx = Array.from({ length: k }, (_, i) => col(s, t - 1 - i)).join('|');
          if ((next.get(ctx) ?? col(s, t)) !== col(s, t)) return false;
          next.set(ctx, col(s, t));
        }
      return true;
    };
    expect(determines(7)).toBe(false);
    expect(determines(8)).toBe(true);
  });

  it('seven units learn the word and its reverse and recall each exactly from a cue', () => {
    const m = new DyBM(scienceSpec(), { ...SCIENCE_OPTIONS, seed: 1 });
    expect(recallErrors(m, fwd, SCIENCE_CUE_STEPS).wrongFrames).toBeGreaterThan(0);
    const res = memorizeSequences(m, [fwd, rev], { cueSteps: SCIENCE_CUE_STEPS, maxRounds: 400 });
    expect(res.recalled).toBe(true);
    for (const seq of [fwd, rev]) {
      const { wrongFrames, generated } = recallErrors(m, seq, SCIENCE_CUE_STEPS);
      expect(wrongFrames).toBe(0);
      // the recalled period is the rest of the sequence and then the cue again
      const expected = new Float64Array(seq.data.length);
      for (let s = 0; s < seq.steps; s++)
        expected.set(
          seq.data.subarray(
            ((s + SCIENCE_CUE_STEPS) % seq.steps) * 7,
            ((s + SCIENCE_CUE_STEPS) % seq.steps) * 7 + 7,
          ),
          s * 7,
        );
      expect(framesToText(generated, seq.steps, 7)).toBe(framesToText(expected, seq.steps, 7));
    }
    // each sequence was first recalled no later than the round that recalled both
    expect(res.firstRecalled.every((r) => r !== null && r <= res.rounds)).toBe(true);
  });
});
