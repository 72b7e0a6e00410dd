import { readFileSync } from 'node:fs';
import { quote } from './quote.js';

// Errors a user can cause. Each names the field or file at fault, so a service can turn it into
// INVALID_ARGUMENT without guessing.

/** A spec, option or argument is invalid; `field` is its path, e.g. `spec.layers[1].size`. */
export class SpecError extends Error {
  override readonly name = 'SpecError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field} ${message}`);
  }
}

/** A file could not be read as what it claims to be (IDX, CSV, .npy, model file). */
export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(
    readonly file: string,
    message: string,
  ) {
    // The path as the user gave it, shortened: it travels back in error statuses.
    super(`${quote(file, 200)}: ${message}`);
  }
}

/** The bytes of a file the user named. @throws FormatError naming the file when it cannot be read. */
export function readUserFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new FormatError(
      path,
      `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/**
 * A request is well formed but exceeds a configured limit on the memory or work it implies
 * (`field` is what to shrink, `limit` the limit's name, e.g. `maxStateBytes`); a service answers
 * RESOURCE_EXHAUSTED.
 */
export class LimitError extends Error {
  override readonly name = 'LimitError';
  constructor(
    readonly field: string,
    readonly limit: string,
    message: string,
  ) {
    super(`${field} ${message}`);
  }
}
