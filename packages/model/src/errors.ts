import { readFileSync } from 'node:fs';

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
    super(`${file}: ${message}`);
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
