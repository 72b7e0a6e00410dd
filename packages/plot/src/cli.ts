// `npm run plot -- <kind> <input> <out.png> [--subtitle=TEXT]`: a plot from a result already
// recorded, written as out.png and out.svg. Kinds and their input:
//   cluster    the JSON result of `npm run bench -- cluster` (its last JSON line)
//   straggler  the JSON result of `npm run bench -- straggler`
//   curve      the JSON lines of `spinmesh train --json` or `spinmesh watch --json` (evaluations)
import { readFileSync } from 'node:fs';
import type { TopLevelSpec } from 'vega-lite';
import { clusterSpec, type ClusterBenchResult } from './cluster.js';
import { learningCurveSpec, type CurvePoint } from './curve.js';
import { PlotError } from './errors.js';
import { writePlot } from './render.js';
import { stragglerSpec, type StragglerBenchResult } from './straggler.js';

const USAGE =
  'usage: npm run plot -- <cluster|straggler|curve> <input.json> <out.png> [--subtitle=TEXT]\n';

/** Every line of the text that is a JSON object (npm's banner lines and logs are skipped). */
function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      const v = JSON.parse(t) as unknown;
      if (v !== null && typeof v === 'object' && !Array.isArray(v))
        out.push(v as Record<string, unknown>);
    } catch {
      // not a JSON line: a log line that starts with a brace
    }
  }
  return out;
}

/** A whole-file JSON object (a fixture written by hand), or else its last JSON line. */
function lastObject(text: string, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      return v as Record<string, unknown>;
  } catch {
    // JSON lines, below
  }
  const last = jsonLines(text).at(-1);
  if (!last) throw new PlotError(`${what}: the input holds no JSON object`);
  return last;
}

function specOf(kind: string, text: string, subtitle: string | undefined): TopLevelSpec {
  const opts = subtitle !== undefined ? { subtitle } : {};
  switch (kind) {
    case 'cluster':
      return clusterSpec(lastObject(text, kind) as unknown as ClusterBenchResult, opts);
    case 'straggler':
      return stragglerSpec(lastObject(text, kind) as unknown as StragglerBenchResult, opts);
    case 'curve': {
      const points = jsonLines(text)
        .filter((o) => o['type'] === 'evaluation' || (o['type'] === 'done' && o['evaluation']))
        .map((o) => o['evaluation'] as CurvePoint);
      // `done` repeats the last evaluation: keep one point per epoch.
      const byEpoch = new Map(points.map((p) => [p.epoch, p]));
      return learningCurveSpec([...byEpoch.values()], opts);
    }
    default:
      throw new PlotError(`unknown plot kind '${kind}' (cluster, straggler, curve)`);
  }
}

async function main(argv: string[]): Promise<number> {
  const subtitleArg = argv.find((a) => a.startsWith('--subtitle='));
  const rest = argv.filter((a) => a !== subtitleArg);
  if (rest.length !== 3 || rest.some((a) => a.startsWith('--'))) {
    process.stderr.write(USAGE);
    return 2;
  }
  const [kind, input, out] = rest as [string, string, string];
  const spec = specOf(kind, readFileSync(input, 'utf8'), subtitleArg?.slice('--subtitle='.length));
  const written = await writePlot(out, spec);
  process.stderr.write(`wrote ${written.png} and ${written.svg}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`spinmesh plot: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof PlotError ? 2 : 1;
  },
);
