// What the command line writes: with --json one JSON object per line on stdout and nothing else
// there; otherwise results on stdout and progress and diagnostics on stderr.
import type { Evaluation } from '@spinmesh/model';
import { JobState, type Evaluation as EvaluationMessage } from '@spinmesh/proto';

export class Output {
  constructor(
    /** --json: machine-readable lines only. */
    readonly json: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  /** stderr is a terminal (and not --json): progress may redraw a line. */
  get tty(): boolean {
    return !this.json && this.stderr.isTTY === true;
  }

  /** A human line on stderr (progress, diagnostics); nothing with --json. */
  say(line: string): void {
    if (!this.json) this.stderr.write(`${line}\n`);
  }

  /** A human result line on stdout; nothing with --json. */
  print(line: string): void {
    if (!this.json) this.stdout.write(`${line}\n`);
  }

  /** A JSON line on stdout; nothing without --json. */
  emit(o: Record<string, unknown>): void {
    if (this.json) this.stdout.write(`${JSON.stringify(o)}\n`);
  }

  /** Raw text on stderr, for a progress bar (terminals only). */
  raw(text: string): void {
    if (!this.json) this.stderr.write(text);
  }
}

export function fmt(n: number | undefined, digits = 4): string {
  return n === undefined ? '-' : n.toFixed(digits);
}

/** One line of an evaluation's figures, as train and eval print them. */
export function describeEvaluation(e: Evaluation): string {
  const parts: string[] = [];
  if (e.exactLogLikelihood !== undefined) parts.push(`exact LL ${fmt(e.exactLogLikelihood)}`);
  if (e.optimum !== undefined) parts.push(`(optimum ${fmt(e.optimum)})`);
  if (e.aisLogLikelihood !== undefined)
    parts.push(`AIS LL ${fmt(e.aisLogLikelihood)} [${fmt(e.aisLow)}, ${fmt(e.aisHigh)}]`);
  if (e.pseudoLogLikelihood !== undefined) parts.push(`pseudo-LL ${fmt(e.pseudoLogLikelihood)}`);
  if (e.reconstructionError !== undefined) parts.push(`recon ${fmt(e.reconstructionError)}`);
  if (e.probeAccuracy !== undefined) parts.push(`probe acc ${fmt(e.probeAccuracy)}`);
  if (e.recallAccuracy !== undefined) parts.push(`recall acc ${fmt(e.recallAccuracy)}`);
  return parts.join('  ');
}

/** An evaluation message as the model package's Evaluation (what the in-process path prints). */
export function fromMessage(e: EvaluationMessage): Evaluation {
  const out: Evaluation = { epoch: e.epoch };
  for (const [k, v] of Object.entries(e))
    if (k !== 'epoch' && typeof v === 'number') (out as unknown as Record<string, number>)[k] = v;
  return out;
}

/** 'COMPLETED' for JOB_STATE_COMPLETED: the name --json writes and --state takes. */
export function stateName(s: JobState): string {
  const name = JobState[s];
  return typeof name === 'string' ? name.replace(/^JOB_STATE_/, '') : String(s);
}

/** The state as --state names it, case-insensitively ('running', 'JOB_STATE_RUNNING'). */
export function parseState(s: string): JobState | undefined {
  const key = `JOB_STATE_${s.toUpperCase().replace(/^JOB_STATE_/, '')}`;
  const v = (JobState as unknown as Record<string, number>)[key];
  return v === undefined || v === JobState.JOB_STATE_UNSPECIFIED ? undefined : (v as JobState);
}

/** Final states: the job will not change any more. */
export function isFinal(s: JobState): boolean {
  return (
    s === JobState.JOB_STATE_COMPLETED ||
    s === JobState.JOB_STATE_FAILED ||
    s === JobState.JOB_STATE_CANCELLED
  );
}
