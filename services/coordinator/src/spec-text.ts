// What parsed spec text (YAML or JSON) must be before any validation walks it: without YAML
// aliases that form a cycle (`&x [*x]` parses to an array that holds itself, and every
// recursive walk of it overflows the stack), nested within a depth, and without alias expansion
// beyond a budget (`&a [*b, *b, ...]` chains grow exponentially: the billion laughs).
import { SpecError } from '@spinmesh/model';

/**
 * Most values (scalars, lists and maps, each alias expanded where it is used) a spec may hold.
 * A spec is at most 1 MiB of text, so one without aliases stays far below.
 */
export const MAX_SPEC_VALUES = 1 << 21;

/** Deepest nesting of lists and maps a spec may have (validation walks it recursively). */
export const MAX_SPEC_DEPTH = 64;

/**
 * Refuses a parsed value that holds itself, nests deeper than MAX_SPEC_DEPTH or expands to more
 * than MAX_SPEC_VALUES values. @throws SpecError naming `field`
 */
export function checkSpecValue(value: unknown, field: string): void {
  const path = new Set<object>();
  let count = 0;
  // Iterative, so that depth itself cannot overflow the stack: an explicit stack of
  // (value, depth, entering); leaving a node takes it off the current path.
  const stack: [unknown, number, boolean][] = [[value, 0, true]];
  while (stack.length > 0) {
    const [v, depth, entering] = stack.pop()!;
    if (typeof v !== 'object' || v === null) {
      if (++count > MAX_SPEC_VALUES) throw tooMany(field);
      continue;
    }
    if (!entering) {
      path.delete(v);
      continue;
    }
    if (path.has(v))
      throw new SpecError(
        field,
        'holds a YAML alias inside its own anchor (a cycle, like `name: &x [*x]`)',
      );
    if (depth >= MAX_SPEC_DEPTH)
      throw new SpecError(field, `nests lists and maps deeper than ${MAX_SPEC_DEPTH} levels`);
    if (++count > MAX_SPEC_VALUES) throw tooMany(field);
    path.add(v);
    stack.push([v, depth, false]);
    for (const x of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>))
      stack.push([x, depth + 1, true]);
  }
}

function tooMany(field: string): SpecError {
  return new SpecError(
    field,
    `holds more than ${MAX_SPEC_VALUES} values once its YAML aliases are expanded`,
  );
}
