// Following a job as it runs (WatchJob): a progress bar on a terminal, plain lines otherwise,
// JSON lines with --json; evaluations, state and worker changes as they happen. Used by
// `watch`, `submit --watch` and `train` on the embedded cluster.
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, type SpinmeshClient } from '@spinmesh/client';
import type { Evaluation } from '@spinmesh/model';
import { JobState, type Job, type WatchJobResponse } from '@spinmesh/proto';
import { describeEvaluation, fromMessage, isFinal, stateName, type Output } from './output.js';

/** Least time between two redraws of the bar, and between two plain progress lines. */
const BAR_INTERVAL_MS = 100;
const LINE_INTERVAL_MS = 1000;
const BAR_WIDTH = 24;

/** A fraction as a whole percentage: 0.384 -> '38%'. */
function percent(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * The progress of a job: on a terminal, one line of stderr redrawn in place (a bar, the step,
 * the epoch, the time left); elsewhere `epoch e/E  step s/S` lines, at most one a second.
 * Other lines go through line(), which keeps the bar below them.
 */
export class ProgressLine {
  private shown = '';
  private lastDraw = 0;
  private lastLine = 0;
  private first: { at: number; step: number } | null = null;

  constructor(
    private readonly out: Output,
    /** The job's epochs, when known. */
    private readonly epochs?: number,
  ) {}

  private last: { total: number; epoch: number } | null = null;

  /** The job completed: the bar, if one is shown, reaches 100%. */
  completed(): void {
    if (this.last !== null && this.shown !== '')
      this.update(this.last.total, this.last.total, this.epochs ?? this.last.epoch);
  }

  /**
   * `time`: where a cluster job's shards spent their time (JobProgress compute_fraction and
   * wait_fraction), shown when known.
   */
  update(
    step: number,
    total: number,
    epoch: number,
    time: { compute: number; wait: number } | null = null,
  ): void {
    this.last = { total, epoch };
    const now = Date.now();
    const last = step === total;
    const epochText = `epoch ${epoch}${this.epochs === undefined ? '' : `/${this.epochs}`}`;
    const known = time !== null && time.compute > 0;
    if (!this.out.tty) {
      if (now - this.lastLine < LINE_INTERVAL_MS && !last) return;
      this.lastLine = now;
      const timeText = known
        ? `  shards ${percent(time.compute)} computing, ${percent(time.wait)} waiting for peers`
        : '';
      this.out.say(`${epochText}  step ${step}/${total}${timeText}`);
      return;
    }
    if (this.first === null || step < this.first.step) this.first = { at: now, step };
    if (now - this.lastDraw < BAR_INTERVAL_MS && !last) return;
    this.lastDraw = now;
    const frac = total > 0 ? Math.min(1, step / total) : 0;
    const filled = Math.round(frac * BAR_WIDTH);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}`;
    const rate = (step - this.first.step) / Math.max(1, now - this.first.at);
    const eta = rate > 0 && !last ? `  ${seconds((total - step) / rate)} left` : '';
    // On the redrawn line, short: it has to fit the terminal.
    const timeText = known
      ? `  ${percent(time.compute)} computing, ${percent(time.wait)} waiting`
      : '';
    this.draw(
      `[${bar}] ${(frac * 100).toFixed(1).padStart(5)}%  ${epochText}  step ${step}/${total}${eta}${timeText}`,
    );
  }

  private draw(text: string): void {
    this.out.raw(`\r\x1b[2K${text}`);
    this.shown = text;
  }

  /** A line above the bar: on stderr, or on stdout when `result`. */
  line(text: string, result = false): void {
    if (this.out.tty && this.shown !== '') this.out.raw('\r\x1b[2K');
    if (result) this.out.print(text);
    else this.out.say(text);
    if (this.out.tty && this.shown !== '') this.out.raw(this.shown);
  }

  /** Leaves the bar where it is, ending its line. */
  end(): void {
    if (this.out.tty && this.shown !== '') this.out.raw('\n');
    this.shown = '';
  }
}

export interface FollowOptions {
  /** The job's epochs, for the progress line. */
  epochs?: number;
  /** Say nothing about a wait for workers while none is available (the embedded cluster's
   * workers are starting). @defaultValue false */
  quietWaiting?: boolean;
  /** Reconnections after the coordinator went away mid-watch. @defaultValue 5 */
  retries?: number;
}

export interface FollowResult {
  /** The job's record once it is final. */
  job: Job;
  /** The last evaluation seen. */
  evaluation?: Evaluation;
  /** Every evaluation seen, in order (the learning curves of --plot). */
  evaluations: Evaluation[];
}

/**
 * Follows a job until it is final, printing its events: evaluations on stdout, the rest on
 * stderr, or JSON lines (`progress`, `evaluation`, `workers`, `state`) with --json. A watch
 * that breaks because the coordinator went away (UNAVAILABLE) resumes after the last event
 * seen, up to `retries` times.
 */
export async function followJob(
  client: SpinmeshClient,
  jobId: string,
  out: Output,
  opts: FollowOptions = {},
): Promise<FollowResult> {
  const progress = new ProgressLine(out, opts.epochs);
  let after = '';
  let evaluation: Evaluation | undefined;
  const evaluations: Evaluation[] = [];
  let lastWorkers = '';
  const onEvent = (e: WatchJobResponse): void => {
    after = e.eventId;
    if (e.progress) {
      showProgress(out, progress, e.progress);
    } else if (e.evaluation) {
      evaluation = fromMessage(e.evaluation);
      evaluations.push(evaluation);
      out.emit({ type: 'evaluation', evaluation });
      progress.line(`epoch ${evaluation.epoch}: ${describeEvaluation(evaluation)}`, true);
    } else if (e.workers) {
      const w = e.workers;
      showWorkers(out, progress, w, opts.quietWaiting ?? false, w.message !== lastWorkers);
      lastWorkers = w.message;
    } else if (e.state) {
      showState(out, progress, jobId, e.state);
    }
  };
  let retries = opts.retries ?? 5;
  try {
    for (;;) {
      try {
        await client.watchJob(jobId, onEvent, after);
      } catch (err) {
        // DEADLINE_EXCEEDED is the user's --deadline: no retry.
        if (
          !(err instanceof UnavailableError && err.code === grpc.status.UNAVAILABLE) ||
          retries <= 0
        )
          throw err;
        const wait = 500 * 2 ** (5 - Math.min(5, retries));
        retries--;
        progress.line(`${err.message}; watching again in ${seconds(wait)}`);
        await new Promise((r) => setTimeout(r, wait));
        continue;
      }
      const job = await client.getJob(jobId);
      if (isFinal(job.state))
        return {
          job,
          evaluations,
          ...(evaluation
            ? { evaluation }
            : job.evaluation
              ? { evaluation: fromMessage(job.evaluation) }
              : {}),
        };
    }
  } finally {
    progress.end();
  }
}

type WatchProgress = NonNullable<WatchJobResponse['progress']>;
type WatchWorkers = NonNullable<WatchJobResponse['workers']>;
type WatchState = NonNullable<WatchJobResponse['state']>;

function showProgress(out: Output, progress: ProgressLine, p: WatchProgress): void {
  const time = p.computeFraction > 0 ? { compute: p.computeFraction, wait: p.waitFraction } : null;
  out.emit({
    type: 'progress',
    step: p.step,
    totalSteps: p.totalSteps,
    epoch: p.epoch,
    ...(time ? { computeFraction: time.compute, waitFraction: time.wait } : {}),
  });
  progress.update(p.step, p.totalSteps, p.epoch, time);
}

/** Emits a change of the job's workers; prints its message when new, unless quiet while waiting. */
function showWorkers(
  out: Output,
  progress: ProgressLine,
  w: WatchWorkers,
  quietWaiting: boolean,
  changed: boolean,
): void {
  out.emit({
    type: 'workers',
    kind: w.kind,
    generation: w.generation,
    message: w.message,
    ...(w.kind === 'waiting' ? { needed: w.needed, available: w.available } : {}),
    ...(w.workerId ? { workerId: w.workerId } : {}),
  });
  const quiet = quietWaiting && w.kind === 'waiting' && w.available === 0;
  if (!quiet && changed) progress.line(w.message);
}

function showState(out: Output, progress: ProgressLine, jobId: string, s: WatchState): void {
  out.emit({
    type: 'state',
    from: stateName(s.from),
    to: stateName(s.to),
    ...(s.reason ? { reason: s.reason } : {}),
  });
  if (s.to === JobState.JOB_STATE_COMPLETED) progress.completed();
  const from =
    s.from === JobState.JOB_STATE_UNSPECIFIED ? '' : `${stateName(s.from).toLowerCase()} -> `;
  progress.line(
    `job ${jobId}: ${from}${stateName(s.to).toLowerCase()}${s.reason ? `: ${s.reason}` : ''}`,
  );
}
