// `npm run bench -- dybm-window [--out-dir=out/dybm] [--delays=1,3,7] [--seed=1]`: the STDP window
// of the DyBM, and the weights it learns, as plots (PNG and SVG; captions in
// packages/model/DYBM.md):
//  - stdp-window: the pairing experiment (stdpWindow), one panel per conduction delay: the change
//    of a synapse's efficacy (the weight of an arriving spike, sum_l u_l) after one pre spike and
//    one post spike dt = t_post - t_pre steps apart, dt = -12..12;
//  - science-kernel: the weight the SCIENCE network learned (bench dybm-science's network, trained
//    to exact recall) as a function of dt, averaged over its 49 ordered pairs of units,
//    dt = -12..20, its delays 3, 7, 11 marked.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DyBM,
  SCIENCE_CUE_STEPS,
  SCIENCE_OPTIONS,
  memorizeSequences,
  reverseFrames,
  scienceSpec,
  stdpWindow,
  wordFrames,
} from '@spinmesh/model';
import { kernelSpec, stdpWindowSpec, writePlot } from '@spinmesh/plot';
import { log, numArg, parseArgs } from './_common.js';

/** The delays of every pair of units in scienceSpec. */
const SCIENCE_DELAYS = [3, 7, 11];

function delaysArg(v: string | true | undefined): number[] {
  if (v === undefined) return [1, 3, 7];
  const ds = v === true ? [] : v.split(',').map(Number);
  if (ds.length === 0 || ds.some((d) => !Number.isInteger(d) || d < 1 || d > 12))
    throw new Error('--delays: a comma-separated list of integers in 1..12');
  return ds;
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('dybm-window', argv, ['out-dir', 'delays', 'seed']);
  const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
  const dir = args.has('out-dir')
    ? resolve(String(args.get('out-dir')))
    : resolve(repoRoot, 'out', 'dybm');
  const delays = delaysArg(args.get('delays'));
  const seed = numArg(args, 'seed', 1);
  const round = (v: number): number => Number(v.toFixed(5));

  const windows = delays.map((delay) => stdpWindow({ delay }));
  for (const w of windows)
    log(
      `pairing window (delay ${w.delay}): ${w.dt.map((t, i) => `${t}:${w.dw[i]!.toFixed(3)}`).join(' ')}`,
    );
  const window = await writePlot(
    resolve(dir, 'stdp-window.png'),
    stdpWindowSpec(windows, {
      subtitle: [
        'A two-unit DyBM (one synapse, LTP decays 0.5 and 0.8, biases −3, SGD rate 0.1) sees one pre',
        'and one post spike Δt apart and learns online. Δw: the change of the spike’s weight, Σ_l u_l.',
      ],
    }),
  );
  log(`wrote ${window.png} and ${window.svg}`);

  const fwd = wordFrames('SCIENCE');
  const m = new DyBM(scienceSpec(), { ...SCIENCE_OPTIONS, seed });
  const res = memorizeSequences(m, [fwd, reverseFrames(fwd)], { cueSteps: SCIENCE_CUE_STEPS });
  const from = -12;
  const to = 20;
  const mean = new Float64Array(to - from + 1);
  for (let i = 0; i < 7; i++)
    for (let j = 0; j < 7; j++) m.kernel(i, j, from, to).forEach((v, q) => (mean[q]! += v / 49));
  const dts = Array.from(mean, (_, q) => q + from);
  log(
    `learned SCIENCE kernel, mean over pairs: ${dts.map((t, q) => `${t}:${mean[q]!.toFixed(2)}`).join(' ')}`,
  );
  const kernel = await writePlot(
    resolve(dir, 'science-kernel.png'),
    kernelSpec(
      {
        dt: dts,
        weight: Array.from(mean),
        delays: SCIENCE_DELAYS,
      },
      {
        title: 'Weights the SCIENCE network learned, against the spike-time difference',
        subtitle: [
          `Seven units trained to recall SCIENCE and its reverse (seed ${seed}, ${res.rounds} rounds); DyBM.kernel`,
          'averaged over the 49 ordered pairs of units.',
        ],
        yTitle: 'mean learned weight (log-odds)',
      },
    ),
  );
  log(`wrote ${kernel.png} and ${kernel.svg}`);
  return {
    out: [window.png, window.svg, kernel.png, kernel.svg],
    pairing: windows.map((w) => ({
      delay: w.delay,
      dt: w.dt,
      dw: w.dw.map(round),
      unpaired: round(w.unpaired),
      ltp_peak: round(Math.max(...w.dw)),
      dw_before_arrival_min: round(Math.min(...w.dw.filter((_, i) => w.dt[i]! < w.delay))),
      dw_before_arrival_max: round(Math.max(...w.dw.filter((_, i) => w.dt[i]! < w.delay))),
    })),
    learned: {
      seed,
      recalled: res.recalled,
      rounds: res.rounds,
      dt: dts,
      mean_weight: Array.from(mean, round),
    },
  };
}
