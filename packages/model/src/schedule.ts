// Learning-rate schedules: the rate of update step t (0-based, the Trainer's global step
// counter) as a pure function of (base rate, schedule, t), so a resumed or sharded run computes
// the same rate from the step number alone.
import { SpecError } from './errors.js';
import { isRecord } from './checks.js';

/**
 * How the learning rate changes with the update step t:
 * - `constant`: lr.
 * - `linear`: straight line from lr at t = 0 to `end` at t = `steps`, then `end`.
 * - `exponential`: lr * decay^t.
 * - `inverse` (1/t): lr * tau / (tau + t).
 */
export type LearningRateSchedule =
  | { type: 'constant' }
  | {
      type: 'linear';
      /** Steps over which the rate falls from lr to `end`. */
      steps: number;
      /** Final learning rate (absolute). @defaultValue 0 */
      end?: number;
    }
  | {
      type: 'exponential';
      /** Factor per step, in (0, 1]. */
      decay: number;
    }
  | {
      type: 'inverse';
      /** Steps until the rate has halved. */
      tau: number;
    };

/** The learning rate of step `step` for base rate `base`. */
export function learningRateAt(base: number, schedule: LearningRateSchedule, step: number): number {
  switch (schedule.type) {
    case 'constant':
      return base;
    case 'linear': {
      const end = schedule.end ?? 0;
      const f = Math.min(step / schedule.steps, 1);
      return base + (end - base) * f;
    }
    case 'exponential':
      return base * Math.pow(schedule.decay, step);
    case 'inverse':
      return (base * schedule.tau) / (schedule.tau + step);
  }
}

function positive(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw new SpecError(path, 'must be a finite number > 0');
  return v;
}

/** Checks a schedule from untrusted input; returns it normalised. @throws SpecError */
export function validateSchedule(input: unknown, path = 'train.schedule'): LearningRateSchedule {
  if (input === undefined) return { type: 'constant' };
  if (!isRecord(input)) throw new SpecError(path, 'must be an object with a type');
  const type = input['type'];
  const allowed: Record<string, string[]> = {
    constant: ['type'],
    linear: ['type', 'steps', 'end'],
    exponential: ['type', 'decay'],
    inverse: ['type', 'tau'],
  };
  if (typeof type !== 'string' || !(type in allowed)) {
    throw new SpecError(`${path}.type`, `must be one of ${Object.keys(allowed).join(', ')}`);
  }
  for (const k of Object.keys(input)) {
    if (!allowed[type]!.includes(k))
      throw new SpecError(`${path}.${k}`, `is not a field of a ${type} schedule`);
  }
  switch (type) {
    case 'constant':
      return { type };
    case 'linear': {
      const steps = positive(input['steps'], `${path}.steps`);
      const end = input['end'] ?? 0;
      if (typeof end !== 'number' || !Number.isFinite(end) || end < 0) {
        throw new SpecError(`${path}.end`, 'must be a finite number >= 0');
      }
      return { type, steps, end };
    }
    case 'exponential': {
      const decay = positive(input['decay'], `${path}.decay`);
      if (decay > 1) throw new SpecError(`${path}.decay`, 'must be in (0, 1]');
      return { type, decay };
    }
    default:
      return { type: 'inverse', tau: positive(input['tau'], `${path}.tau`) };
  }
}
