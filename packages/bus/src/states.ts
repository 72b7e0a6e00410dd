// The job life cycle: which state may follow which. Both bus implementations enforce it.
import { IllegalTransitionError } from './errors.js';
import type { JobState } from './types.js';

/** Every job state, in life-cycle order. */
export const JOB_STATES: readonly JobState[] = [
  'queued',
  'running',
  'completed',
  'failed',
  'cancelled',
];

/** States a job never leaves. */
export const TERMINAL_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

/**
 * The legal moves. `running -> queued` puts a job back in the queue (e.g. when no live worker is
 * left to hold a shard), so a job is never silently dropped. Terminal states have no way out.
 */
export const LEGAL_TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  queued: ['running', 'failed', 'cancelled'],
  running: ['queued', 'completed', 'failed', 'cancelled'],
  completed: [],
  failed: [],
  cancelled: [],
};

/** True if `s` is one of the job states. */
export function isJobState(s: unknown): s is JobState {
  return typeof s === 'string' && (JOB_STATES as readonly string[]).includes(s);
}

/** True if a job in state `s` can never change state again. */
export function isTerminalState(s: JobState): boolean {
  return TERMINAL_STATES.includes(s);
}

/** True if a job may move from `from` to `to`. */
export function isLegalTransition(from: JobState, to: JobState): boolean {
  return LEGAL_TRANSITIONS[from].includes(to);
}

/**
 * Checks the arguments of `transitionJob` before anything is read: every state in `allowedFrom`
 * must be allowed to move to `to`.
 * @throws {@link IllegalTransitionError} naming the first illegal move.
 */
export function checkTransition(
  jobId: string,
  allowedFrom: readonly JobState[],
  to: JobState,
): void {
  for (const from of allowedFrom) {
    if (!isLegalTransition(from, to)) throw new IllegalTransitionError(jobId, from, to);
  }
}
