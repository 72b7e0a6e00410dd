// The checks every reader of untrusted specs (jobs, networks, schedules, layouts) shares; each
// failure is a SpecError naming the field.
import { SpecError } from './errors.js';
import { quote } from './quote.js';

/** A plain object (not null, not an array). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Refuses a key of `o` that is not in `allowed`, naming it and the allowed ones. */
export function onlyKeys(
  o: Record<string, unknown>,
  allowed: readonly string[],
  path: string,
): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw new SpecError(
        `${path}.${quote(k)}`,
        `is not a known field (allowed: ${allowed.join(', ')})`,
      );
}

/** An integer in [min, max]. */
export function intIn(
  v: unknown,
  path: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new SpecError(path, `must be an integer in [${min}, ${max}]`);
  return v;
}
