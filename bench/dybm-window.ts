// `npm run bench -- dybm-window [--out=out/dybm/stdp-window.png] [--delay=3] [--seed=1]`: the STDP
// window of the DyBM, as a PNG of two panels sharing no scale (captions in packages/model/DYBM.md).
// Top: the pairing experiment (stdpWindow): the change of a synapse's efficacy (the weight of an
// arriving spike, sum_l u_l) after one pre spike and one post spike dt = t_post - t_pre steps
// apart, dt = -12..12, delay 3; red potentiation, blue depression; dashed lines at dt = 0 (grey)
// and dt = delay (green). Bottom: the weight the SCIENCE network learned (bench dybm-science's
// network, trained to exact recall) as a function of dt, averaged over its 49 ordered pairs of
// units, dt = -12..20; dashed lines at dt = 0 and at the delays 3, 7, 11.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DyBM,
  SCIENCE_CUE_STEPS,
  SCIENCE_OPTIONS,
  encodePng,
  memorizeSequences,
  plot,
  reverseFrames,
  scienceSpec,
  stackImages,
  stdpWindow,
  wordFrames,
} from '@spinmesh/model';
import { log, numArg, parseArgs } from './_common.js';

const RED = [200, 40, 40] as const;
const BLUE = [40, 80, 200] as const;
const GREY = [150, 150, 150] as const;
const GREEN = [40, 160, 60] as const;

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('dybm-window', argv, ['out', 'delay', 'seed']);
  const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
  const out = args.has('out')
    ? resolve(String(args.get('out')))
    : resolve(repoRoot, 'out', 'dybm', 'stdp-window.png');
  const delay = numArg(args, 'delay', 3);
  const seed = numArg(args, 'seed', 1);

  const w = stdpWindow({ delay });
  log(
    `pairing window (delay ${delay}): ${w.dt.map((t, i) => `${t}:${w.dw[i]!.toFixed(3)}`).join(' ')}`,
  );
  const top = plot([{ x: w.dt, y: w.dw, style: 'bars', color: RED, negativeColor: BLUE }], {
    width: 640,
    height: 300,
    margin: 16,
    xTicks: w.dt,
    markers: [
      { x: 0, color: GREY },
      { x: delay, color: GREEN },
    ],
  });

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
  const bottom = plot([{ x: dts, y: mean, style: 'bars', color: RED, negativeColor: BLUE }], {
    width: 640,
    height: 300,
    margin: 16,
    xTicks: dts,
    markers: [{ x: 0, color: GREY }, ...[3, 7, 11].map((x) => ({ x, color: GREEN }))],
  });
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, encodePng(stackImages([top, bottom], 8, [255, 255, 255])));
  log(`wrote ${out}`);
  const round = (v: number): number => Number(v.toFixed(5));
  return {
    out,
    pairing: {
      delay: w.delay,
      dt: w.dt,
      dw: w.dw.map(round),
      unpaired: round(w.unpaired),
      ltp_peak: round(Math.max(...w.dw)),
      dw_before_arrival_min: round(Math.min(...w.dw.filter((_, i) => w.dt[i]! < delay))),
      dw_before_arrival_max: round(Math.max(...w.dw.filter((_, i) => w.dt[i]! < delay))),
    },
    learned: {
      seed,
      recalled: res.recalled,
      rounds: res.rounds,
      dt: dts,
      mean_weight: Array.from(mean, round),
    },
  };
}
