// Every plot kind rendered from a small fixture through the real libraries (vega, resvg, the
// DejaVu fonts): the PNG decodes at the size the SVG asks for times the scale, is not blank,
// and the SVG keeps its title, axis titles and legend entries as text.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TopLevelSpec } from 'vega-lite';
import {
  PlotError,
  clusterSpec,
  kernelSpec,
  learningCurveSpec,
  renderPlot,
  stdpWindowSpec,
  stragglerSpec,
  writePlot,
  type ClusterBenchResult,
  type CurvePoint,
  type StragglerBenchResult,
} from '../src/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spinmesh-plot-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The text of every <text> element, entities decoded. */
function svgTexts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) =>
    m[1]!
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&amp;/g, '&'),
  );
}

/**
 * Renders, decodes the PNG and checks its size against the SVG's, that it is not blank, that
 * nothing was warned about, and that every string in `texts` is some <text> of the SVG.
 */
async function check(spec: TopLevelSpec, texts: string[]): Promise<string> {
  const r = await renderPlot(spec, { scale: 2 });
  expect(r.warnings).toEqual([]);
  const png = PNG.sync.read(r.png);
  const [, w, h] = /<svg[^>]* width="(\d+(?:\.\d+)?)" height="(\d+(?:\.\d+)?)"/.exec(r.svg)!;
  expect(png.width).toBe(Math.round(Number(w) * 2));
  expect(png.height).toBe(Math.round(Number(h) * 2));
  expect([r.width, r.height]).toEqual([png.width, png.height]);
  // Text and marks drawn: plenty of pixels far from the white background.
  let dark = 0;
  for (let i = 0; i < png.data.length; i += 4)
    if (png.data[i]! + png.data[i + 1]! + png.data[i + 2]! < 300) dark++;
  expect(dark).toBeGreaterThan(1000);
  const found = svgTexts(r.svg);
  for (const t of texts) expect(found, t).toContain(t);
  return r.svg;
}

const window = (delay: number): { dt: number[]; dw: number[]; delay: number } => {
  const dt = [-3, -2, -1, 0, 1, 2, 3, 4, 5, 6];
  return { dt, dw: dt.map((t) => (t >= delay ? 0.2 * 0.6 ** (t - delay) : -0.03)), delay };
};

const curve: CurvePoint[] = [
  { epoch: 10, exactLogLikelihood: -9.1, aisLogLikelihood: -9.3, aisLow: -9.6, aisHigh: -9.0 },
  { epoch: 20, exactLogLikelihood: -6.2, aisLogLikelihood: -6.1, aisLow: -6.4, aisHigh: -5.9 },
  { epoch: 30, exactLogLikelihood: -4.4, pseudoLogLikelihood: -1.2, reconstructionError: 0.8 },
].map((p) => ({
  ...p,
  pseudoLogLikelihood: p.pseudoLogLikelihood ?? -2,
  optimum: -3.4,
  reconstructionError: p.reconstructionError ?? 2,
}));

const cluster: ClusterBenchResult = {
  networks: {
    dense: {
      by_workers: {
        '1': { ms_per_step: { wall: 30 } },
        '2': { ms_per_step: { wall: 22, compute: 19, waiting: 1.5, other: 1.5 } },
        '4': { skipped: 'needs 4 cores' },
      },
      speedup_2_workers: 1.36,
      compute_only: { bound_speedup_2_workers: 1.58 },
      two_workers_vs_single_process_2_threads: 0.8,
    },
    fmnist: {
      by_workers: { '2': { ms_per_step: { wall: 3.4, compute: 2.6, waiting: 0.4, other: 0.4 } } },
      speedup_2_workers: 1.1,
      compute_only: { bound_speedup_2_workers: 1.5 },
      two_workers_vs_single_process_2_threads: null,
    },
  },
};

const straggler: StragglerBenchResult = {
  target_exact_ll: -4,
  modes: {
    cd: {
      train: { negative: 'cd', k: 10 },
      repeats: 3,
      time_to_target_s: { '0': 4.4, '4': 4.3, unbounded: 4.6 },
      lockstep_without_straggler_s: 2.7,
    },
    pcd: {
      train: { negative: 'pcd', k: 3 },
      repeats: 3,
      time_to_target_s: { '0': 4.2, '4': 6.4, unbounded: null },
    },
  },
};

describe('plots', () => {
  it('the STDP window: a panel per delay, LTP and LTD named, Δt and Δw on the axes', async () => {
    const svg = await check(stdpWindowSpec([window(1), window(3)]), [
      'STDP window of the DyBM: weight change after one spike pairing',
      'Δt = t_post − t_pre (steps)',
      'Δw (log-odds)',
      'LTP: potentiation (Δw > 0)',
      'LTD: depression (Δw < 0)',
      'Δt = d (pre spike arrives)',
      'delay d = 1 step',
      'delay d = 3 steps',
    ]);
    // Tick labels are text too.
    expect(svgTexts(svg)).toContain('0.10');
  });

  it('learned weights against Δt, the delays marked', async () => {
    await check(
      kernelSpec({ dt: [-2, -1, 0, 1, 2, 3], weight: [-1, -2, 0, -1, 0.5, 2], delays: [3] }),
      [
        'Weights a DyBM learned, against the spike-time difference',
        'learned weight (log-odds)',
        'excitatory (w > 0)',
        'inhibitory (w < 0)',
        'a conduction delay',
      ],
    );
  });

  it('learning curves: the log-likelihoods with the AIS interval, and the reconstruction error', async () => {
    const svg = await check(learningCurveSpec(curve, { title: 'Learning curves: bas' }), [
      'Learning curves: bas',
      'log-likelihood (nats per example)',
      'epoch',
      'exact LL',
      'AIS LL (bar: its interval)',
      'pseudo-LL',
      'Σᵢ (vᵢ − rᵢ)² per example',
      'optimum −3.400',
    ]);
    // The AIS interval is drawn: a rule (the LL panel's second layer) per evaluation that has one.
    const rules = /class="mark-rule role-mark concat_0_layer_1_marks"[^>]*>(.*?)<\/g>/s.exec(svg);
    expect(rules?.[1]?.match(/<line /g)).toHaveLength(2);
  });

  it('learning curves of a job with only a reconstruction error: one panel, no empty legend', async () => {
    const svg = await check(
      learningCurveSpec([
        { epoch: 1, reconstructionError: 3 },
        { epoch: 2, reconstructionError: 2 },
      ]),
      ['Learning curves', 'Reconstruction error', 'epoch'],
    );
    expect(svgTexts(svg)).not.toContain('exact LL');
  });

  it('the cluster benchmark: step breakdown and ratios, parts and ratios named', async () => {
    await check(clusterSpec(cluster), [
      'What distribution costs: the cluster benchmark',
      'ms per step',
      'ratio of throughputs (×)',
      'computing',
      'waiting for peers',
      'a step, not broken down (not recorded)',
      '2 workers / 1 worker, measured',
      '2 shards / 1, compute only (the bound)',
      'dense 2048+2048, PCD-1',
      '1 worker',
      '2 workers',
    ]);
  });

  it('the straggler benchmark: time to target by staleness, a miss marked', async () => {
    await check(stragglerSpec(straggler), [
      'One worker at half speed: time to target by staleness',
      'seconds to reach −4.0 nats (median of 3)',
      'lockstep, no straggler',
      'lockstep (staleness 0)',
      'staleness 4',
      'staleness unbounded',
      'training: CD-10',
      'training: PCD-3',
      'not reached',
    ]);
  });

  it('writes the PNG and the SVG beside it', async () => {
    const w = await writePlot(join(dir, 'sub', 'k.png'), stragglerSpec(straggler));
    expect(w).toEqual({ png: join(dir, 'sub', 'k.png'), svg: join(dir, 'sub', 'k.svg') });
    expect(PNG.sync.read(readFileSync(w.png)).width).toBeGreaterThan(400);
    expect(readFileSync(w.svg, 'utf8')).toMatch(/^<svg /);
    await expect(writePlot(join(dir, 'k.jpg'), stragglerSpec(straggler))).rejects.toThrow(
      /must end in \.png/,
    );
  });

  it('refuses what it cannot draw with a PlotError naming why', async () => {
    expect(() => learningCurveSpec([{ epoch: 1 }])).toThrow(PlotError);
    expect(() => stdpWindowSpec([])).toThrow(/no window/);
    expect(() => stdpWindowSpec([{ dt: [1, 2], dw: [1], delay: 1 }])).toThrow(/as many y values/);
    expect(() => clusterSpec({ networks: {} })).toThrow(/no networks/);
    expect(() => stragglerSpec({ modes: { cd: { time_to_target_s: {} } } })).toThrow(
      /no mode has a time/,
    );
    await expect(
      renderPlot(stragglerSpec(straggler), { fontFiles: [join(dir, 'no-such-font.ttf')] }),
    ).rejects.toThrow(/fonts-dejavu-core/);
  });
});

describe('npm run plot', () => {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

  it('plots a benchmark result and the JSON lines of a training run', () => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
    // As `npm run bench -- cluster > result.json` leaves it: npm's banner, then the JSON line.
    writeFileSync(
      join(dir, 'cluster.json'),
      `\n> spinmesh@0.1.0 bench\n> node bench/dist/run.js cluster\n\n${JSON.stringify(cluster)}\n`,
    );
    const run = (args: string[]): { status: number | null; stderr: string } =>
      spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir });
    const c = run(['cluster', 'cluster.json', 'cluster.png', '--subtitle=a test run']);
    expect(c.stderr).toMatch(/wrote cluster\.png and cluster\.svg/);
    expect(c.status).toBe(0);
    expect(readFileSync(join(dir, 'cluster.svg'), 'utf8')).toContain('a test run');

    writeFileSync(
      join(dir, 'train.jsonl'),
      [
        { type: 'start', name: 'x' },
        ...curve.map((evaluation) => ({ type: 'evaluation', evaluation })),
        { type: 'done', evaluation: curve.at(-1) },
      ]
        .map((o) => JSON.stringify(o))
        .join('\n'),
    );
    expect(run(['curve', 'train.jsonl', 'curve.png']).status).toBe(0);
    expect(PNG.sync.read(readFileSync(join(dir, 'curve.png'))).height).toBeGreaterThan(400);

    const bad = run(['histogram', 'train.jsonl', 'x.png']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown plot kind 'histogram'/);
    expect(run(['cluster', 'cluster.json']).status).toBe(2);
  });
});
