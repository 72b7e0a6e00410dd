// Commands on a coordinator's jobs (JobService, and ModelService.GetModel for pull): submit,
// watch, list, cancel, pull.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ModelTransferError } from '@spinmesh/client';
import { JobState, ModelFormat, type Job } from '@spinmesh/proto';
import type { Context } from '../context.js';
import { JobFailedError, UsageError } from '../errors.js';
import { followJob } from '../follow.js';
import { plotArg, writeCurves } from '../plot.js';
import { fromMessage, parseState, stateName } from '../output.js';
import { applyOverrides, parseSpecFile, readSpecText } from '../spec-file.js';

export const SUBMIT_OPTIONS = ['id', 'watch', 'epochs', 'workers', 'plot'];
export const WATCH_OPTIONS = ['plot'];
export const LIST_OPTIONS = ['state', 'page-size', 'page-token', 'all'];
export const CANCEL_OPTIONS: string[] = [];
export const PULL_OPTIONS = ['out', 'npy'];

function iso(ms: number): string | undefined {
  return ms > 0 ? new Date(ms).toISOString() : undefined;
}

/** A job as --json writes it. */
export function jobJson(job: Job): Record<string, unknown> {
  return {
    jobId: job.jobId,
    name: job.name,
    state: stateName(job.state),
    workers: job.workers,
    step: job.progress?.step ?? 0,
    totalSteps: job.progress?.totalSteps ?? 0,
    epoch: job.progress?.epoch ?? 0,
    createdAt: iso(job.createdAtMs),
    updatedAt: iso(job.updatedAtMs),
    ...(job.error ? { error: job.error } : {}),
    ...(job.modelBytes > 0 ? { modelBytes: job.modelBytes } : {}),
    ...(job.evaluation ? { evaluation: fromMessage(job.evaluation) } : {}),
  };
}

function jobArg(ctx: Context, command: string): string {
  const id = ctx.args.positional[1];
  if (!id) throw new UsageError(`${command} needs <job> (a job id: spinmesh list shows them)`);
  return id;
}

function epochsOf(job: Job): number | undefined {
  try {
    const e = (JSON.parse(job.specJson) as { epochs?: unknown }).epochs;
    return typeof e === 'number' ? e : undefined;
  } catch {
    return undefined;
  }
}

/** Follows a job to its end; 0 when it completed, JobFailedError when it failed or was cancelled. */
async function follow(ctx: Context, job: Job): Promise<number> {
  const { out } = ctx;
  const plot = plotArg(ctx.args);
  const id = job.jobId;
  const stop = ctx.onInterrupt(() =>
    out.say(`stopped watching job ${id}; it goes on (spinmesh cancel ${id} stops it)`),
  );
  try {
    const epochs = epochsOf(job);
    const {
      job: final,
      evaluation,
      evaluations,
    } = await followJob(ctx.client(), id, out, {
      ...(epochs !== undefined ? { epochs } : {}),
    });
    // The curves so far, also of a job that failed or was cancelled.
    if (plot !== undefined) await writeCurves(out, plot, evaluations, `job ${id} (${final.name})`);
    out.emit({ type: 'done', ...jobJson(final), ...(evaluation ? { evaluation } : {}) });
    if (final.state === JobState.JOB_STATE_COMPLETED) {
      out.say(
        `job ${id} completed${final.modelBytes > 0 ? `: a model of ${final.modelBytes} bytes (spinmesh pull ${id})` : ''}`,
      );
      return 0;
    }
    throw new JobFailedError(
      final.state === JobState.JOB_STATE_CANCELLED
        ? `job ${id} was cancelled${final.error ? `: ${final.error}` : ''}`
        : `job ${id} failed: ${final.error || 'no reason given'}`,
    );
  } finally {
    stop();
  }
}

export async function submit(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const path = args.positional[1];
  if (!path) throw new UsageError('submit needs a spec file');
  if (plotArg(args) !== undefined && !args.has('watch'))
    throw new UsageError('--plot draws what --watch follows: add --watch');
  let text = readSpecText(path);
  // The spec goes as it is written, unless options change it.
  if (args.has('epochs') || args.has('workers')) {
    const raw = parseSpecFile(path, text);
    applyOverrides(raw, args);
    text = JSON.stringify(raw);
  }
  const job = await ctx.client().submitJob(text, args.str('id') ?? '');
  out.print(job.jobId);
  out.emit({ type: 'submitted', ...jobJson(job) });
  out.say(
    `job ${job.jobId} (${job.name}) queued: ${job.workers} worker${job.workers === 1 ? '' : 's'}, ${job.progress?.totalSteps ?? 0} steps`,
  );
  return args.has('watch') ? follow(ctx, job) : 0;
}

export async function watch(ctx: Context): Promise<number> {
  return follow(ctx, await ctx.client().getJob(jobArg(ctx, 'watch')));
}

export async function cancel(ctx: Context): Promise<number> {
  const job = await ctx.client().cancelJob(jobArg(ctx, 'cancel'));
  ctx.out.print(`job ${job.jobId} ${stateName(job.state).toLowerCase()}`);
  ctx.out.emit({ type: 'cancelled', ...jobJson(job) });
  return 0;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r
      .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd(),
  );
}

export async function list(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const states = args.list('state').map((s) => {
    const st = parseState(s);
    if (st === undefined)
      throw new UsageError(
        `--state must be queued, running, completed, failed or cancelled (got '${s}')`,
      );
    return st;
  });
  const pageSize = args.int('page-size', 1, 1000);
  if (args.has('all') && args.has('page-token'))
    throw new UsageError('--all lists every page: it takes no --page-token');
  const client = ctx.client();
  const opts = { states, ...(pageSize !== undefined ? { pageSize } : {}) };
  const jobs: Job[] = [];
  let next = '';
  if (args.has('all')) for await (const job of client.allJobs(opts)) jobs.push(job);
  else {
    const page = await client.listJobs({ ...opts, pageToken: args.str('page-token') ?? '' });
    jobs.push(...page.jobs);
    next = page.nextPageToken;
  }
  for (const job of jobs) out.emit({ type: 'job', ...jobJson(job) });
  if (next !== '') out.emit({ type: 'more', nextPageToken: next });
  if (out.json) return 0;
  if (jobs.length === 0) out.say('no jobs');
  else {
    const rows = [['ID', 'NAME', 'STATE', 'STEP', 'WORKERS', 'CREATED', 'NOTE']];
    for (const j of jobs) {
      const p = j.progress;
      rows.push([
        j.jobId,
        j.name,
        stateName(j.state).toLowerCase(),
        p && p.totalSteps > 0 ? `${p.step}/${p.totalSteps}` : '-',
        String(j.workers),
        iso(j.createdAtMs)
          ?.replace('T', ' ')
          .replace(/\.\d+Z$/, 'Z') ?? '-',
        j.error,
      ]);
    }
    for (const line of table(rows)) out.print(line);
  }
  if (next !== '') out.say(`more jobs: --page-token ${next} (or --all)`);
  return 0;
}

/** A file name the server sent, as a file in `dir`: a plain name, nothing that climbs out. */
function safeName(name: string): string {
  if (
    name === '' ||
    name !== basename(name) ||
    name === '.' ||
    name === '..' ||
    name.includes('\\')
  )
    throw new ModelTransferError(
      `the server sent a file named '${name}', which is not a plain name`,
    );
  return name;
}

/** Writes through a temporary file, so that an interrupted pull leaves no half-written file. */
function writeAtomically(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.part-${process.pid}`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export async function pull(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const id = jobArg(ctx, 'pull');
  const npyDir = args.str('npy');
  if (npyDir !== undefined && args.has('out'))
    throw new UsageError(
      'pull takes --out FILE (the model file) or --npy DIR (its arrays), not both',
    );
  const model = await ctx
    .client()
    .getModel(
      id,
      npyDir !== undefined ? ModelFormat.MODEL_FORMAT_NPY : ModelFormat.MODEL_FORMAT_SMM,
    );
  const written: { file: string; bytes: number }[] = [];
  if (npyDir !== undefined) {
    mkdirSync(npyDir, { recursive: true });
    for (const f of model.files) {
      const path = join(npyDir, safeName(f.file));
      writeAtomically(path, f.bytes);
      written.push({ file: path, bytes: f.bytes.length });
    }
  } else {
    if (model.files.length !== 1)
      throw new ModelTransferError(`expected one model file, got ${model.files.length}`);
    const f = model.files[0]!;
    const path = args.str('out') ?? safeName(f.file);
    writeAtomically(path, f.bytes);
    written.push({ file: path, bytes: f.bytes.length });
  }
  out.emit({ type: 'model', jobId: id, step: model.step, files: written });
  out.say(
    npyDir !== undefined
      ? `model of job ${id} (step ${model.step}): ${written.length} files written to ${npyDir}`
      : `model of job ${id} (step ${model.step}) written to ${written[0]!.file} (${written[0]!.bytes} bytes)`,
  );
  return 0;
}
