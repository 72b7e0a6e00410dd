// Sequence jobs (rule 'stdp', dynamic Boltzmann machines): `train` of such a spec in this process,
// and `generate`, which continues a cue with a trained model, a file's (--model) or a completed
// job's on the coordinator (--job).
import { writeFileSync } from 'node:fs';
import {
  FONT_ROWS,
  decodeSequenceModel,
  encodeSequenceModel,
  framesToText,
  generateFrom,
  readCsv,
  readUserFile,
  runSequenceJob,
  validateSequenceJob,
  wordFrames,
  type DataAccess,
  type SequenceEvaluation,
} from '@spinmesh/model';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { fmt } from '../output.js';

export const GENERATE_OPTIONS = [
  'job',
  'model',
  'cue-word',
  'cue-csv',
  'steps',
  'sample',
  'seed',
  'csv',
];

function describe(e: SequenceEvaluation): string {
  const parts = [`log p per frame ${fmt(e.logLikelihood)}`];
  if (e.recallExact !== undefined) parts.push(`recalled exactly ${fmt(e.recallExact)}`);
  if (e.recallFrames !== undefined) parts.push(`frames right ${fmt(e.recallFrames)}`);
  if (e.rmse !== undefined) parts.push(`RMSE ${fmt(e.rmse)}`);
  return parts.join('  ');
}

/** `train` of a sequence job in this process: writes `<name>.dybm.json` (or --out). */
export async function trainSequence(
  ctx: Context,
  raw: Record<string, unknown>,
  access: DataAccess,
): Promise<number> {
  const { args, out } = ctx;
  if (args.has('resume')) throw new UsageError('--resume does not apply to sequence jobs');
  if (args.has('workers')) throw new UsageError('--workers: sequence jobs run in one process');
  const spec = validateSequenceJob(raw);
  const started = Date.now();
  const { model, evaluations } = await runSequenceJob(spec, {
    access,
    onEvaluation: (e) => {
      out.emit({ type: 'evaluation', evaluation: e });
      out.print(`round ${e.epoch}: ${describe(e)}`);
    },
  });
  const file = args.str('out') ?? `${spec.name}.dybm.json`;
  const last = evaluations.at(-1) ?? null;
  writeFileSync(file, encodeSequenceModel(model, spec, last));
  const seconds = (Date.now() - started) / 1000;
  out.emit({ type: 'done', model: file, rounds: last?.epoch ?? 0, evaluation: last, seconds });
  out.say(`model written to ${file} after ${last?.epoch ?? 0} rounds (${seconds.toFixed(1)} s)`);
  return 0;
}

/** The cue frames the options name: --cue-word (the 7-pixel font) or --cue-csv; none: empty. */
function cueFrames(ctx: Context): { data: Float64Array; steps: number; units: number } | null {
  const word = ctx.args.str('cue-word');
  const csv = ctx.args.str('cue-csv');
  if (word !== undefined && csv !== undefined)
    throw new UsageError('give --cue-word or --cue-csv, not both');
  if (word !== undefined) {
    const f = wordFrames(word);
    // The word's frames without the blank column after its last letter.
    return {
      data: f.data.subarray(0, (f.steps - 1) * FONT_ROWS),
      steps: f.steps - 1,
      units: FONT_ROWS,
    };
  }
  if (csv !== undefined) {
    const ds = readCsv(csv);
    return { data: Float64Array.from(ds.x), steps: ds.rows, units: ds.dims };
  }
  return null;
}

/** `generate`: continue a cue (or a blank past) for --steps frames. */
export async function generate(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const job = args.str('job');
  const modelPath = args.str('model');
  if ((job === undefined) === (modelPath === undefined))
    throw new UsageError('generate needs --job ID (on the coordinator) or --model FILE');
  const steps = args.int('steps', 1, 100_000) ?? 60;
  const sample = args.has('sample');
  const seed = args.int('seed', 0) ?? 0;
  const cue = cueFrames(ctx);
  let frames: Float64Array;
  let units: number;
  if (modelPath !== undefined) {
    const { model } = decodeSequenceModel(readUserFile(modelPath));
    units = model.units;
    if (cue && cue.units !== units)
      throw new UsageError(`the cue has ${cue.units} values per frame, the model ${units} units`);
    frames = generateFrom(model, cue?.data ?? [], cue?.steps ?? 0, steps, {
      mode: sample ? 'sample' : 'mostLikely',
      ...(sample ? { seed } : {}),
    });
  } else {
    const res = await ctx.client().generate({
      jobId: job!,
      ...(cue ? { cue: { rows: cue.steps, dims: cue.units, values: Array.from(cue.data) } } : {}),
      steps,
      sample,
      seed,
    });
    units = res.frames!.dims;
    frames = Float64Array.from(res.frames!.values);
  }
  const csv = args.str('csv');
  if (csv !== undefined) {
    const lines: string[] = [];
    for (let t = 0; t < steps; t++)
      lines.push(Array.from(frames.subarray(t * units, (t + 1) * units)).join(','));
    writeFileSync(csv, `${lines.join('\n')}\n`);
  }
  out.emit({ type: 'generated', steps, units, frames: Array.from(frames) });
  if (!out.json) {
    const cueText = cue ? framesToText(cue.data, cue.steps, units).split('\n') : [];
    const genText = framesToText(frames, steps, units).split('\n');
    // The cue, a bar, then what the model made of it.
    for (let r = 0; r < units; r++) out.print(`${cueText[r] ?? ''}|${genText[r]}`);
  }
  return 0;
}
