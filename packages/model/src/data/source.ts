// Reading the files a job's data spec names, under the rules of whoever reads them: a service
// reads only regular files inside its data roots, at most maxBytes each, without ever blocking
// its event loop; the CLI reads its own user's paths.
import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { SpecError } from '../errors.js';

/** Which files job data may come from, and how much of each is read. */
export interface DataAccess {
  /**
   * Directories a data file must lie in once every symlink in its path is resolved; 'any': no
   * confinement (a CLI reading its own user's files, a library caller).
   */
  roots: readonly string[] | 'any';
  /**
   * Relative paths resolve against this directory (a service: its first data root; the CLI: the
   * spec file's directory).
   */
  baseDir: string;
  /** Largest file read, in bytes; a larger one is refused. Infinity: no limit. */
  maxBytes: number;
}

/** Why a data file was refused. */
export type DataFileProblem = 'outside' | 'missing' | 'not-a-file' | 'too-large' | 'unreadable';

/** A data file that cannot be read: a SpecError naming the field, with the reason for callers. */
export class DataFileError extends SpecError {
  constructor(
    field: string,
    readonly problem: DataFileProblem,
    message: string,
  ) {
    super(field, message);
  }
}

/**
 * The default of a service's size limit (SPINMESH_DATA_FILE_MAX_BYTES): 64 MiB, enough for
 * Fashion-MNIST's largest file uncompressed (47 MB). It also bounds the time and memory of
 * parsing a CSV file, which happens on the event loop and takes about 8 bytes of memory per
 * byte of text.
 */
export const DATA_MAX_BYTES_DEFAULT = 64 << 20;

/** No confinement, no size limit, relative paths against `baseDir` (default: the current directory). */
export function unconfinedAccess(baseDir = process.cwd()): DataAccess {
  return { roots: 'any', baseDir, maxBytes: Infinity };
}

/** Confined to `roots`, relative paths against the first one. */
export function confinedAccess(roots: readonly string[], maxBytes: number): DataAccess {
  return { roots, baseDir: roots[0] ?? '/nonexistent', maxBytes };
}

/** `access` with `dir` added to its roots when it is confined (Fashion-MNIST's package directory). */
export function withRoot(access: DataAccess, dir: string): DataAccess {
  return access.roots === 'any' ? access : { ...access, roots: [...access.roots, dir] };
}

/** Whether `path` (absolute, normalised) is `root` or lies under it. */
function under(path: string, root: string): boolean {
  const r = relative(root, path);
  return r === '' || (!r.startsWith(`..${sep}`) && r !== '..' && !isAbsolute(r));
}

/** The roots, each resolved with realpath; a root that does not exist holds nothing. */
async function realRoots(roots: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of roots) {
    try {
      out.push(await realpath(resolve(r)));
    } catch {
      // nothing can be read from it
    }
  }
  return out;
}

/**
 * The path a data spec's field names, resolved the way readDataFile resolves it (absolute, against
 * `access.baseDir` when relative), without touching the file system.
 */
export function resolveDataPath(path: string, access: DataAccess): string {
  return resolve(access.baseDir, path);
}

/**
 * The bytes of the file a data spec's `field` names. Confined access: the path, resolved with
 * realpath, must lie in a data root, and be a regular file of at most maxBytes; it is opened
 * without following a final symlink and without blocking on a FIFO, and the open file must be
 * the one that was checked. A refusal never says whether a path outside the roots exists, and no
 * message quotes the file. @throws SpecError naming `field`
 */
export async function readDataFile(
  path: string,
  field: string,
  access: DataAccess,
): Promise<Buffer> {
  const wanted = resolveDataPath(path, access);
  const confined = access.roots !== 'any';
  // Unconfined: the user's own path, worth showing. Confined: the caller sent it.
  const shown = confined ? '' : `: ${path}`;
  const unreadable = (e: unknown): DataFileError => {
    const code = errCode(e);
    return new DataFileError(
      field,
      code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unreadable',
      `cannot be read (${code})${shown}`,
    );
  };
  let real = wanted;
  if (access.roots !== 'any') {
    const roots = await realRoots(access.roots);
    const outside = new DataFileError(field, 'outside', 'is outside the data roots');
    try {
      real = await realpath(wanted);
    } catch (e) {
      // Only a path inside a root before resolution may say that it does not exist: for any
      // other, whether something exists outside the roots must not show.
      if (!roots.some((r) => under(wanted, r))) throw outside;
      throw unreadable(e);
    }
    if (!roots.some((r) => under(real, r))) throw outside;
  }
  const tooLarge = (): DataFileError =>
    new DataFileError(
      field,
      'too-large',
      `is larger than the data size limit (${access.maxBytes} bytes)`,
    );
  let st;
  try {
    st = await stat(real);
  } catch (e) {
    throw unreadable(e);
  }
  if (confined && !st.isFile())
    throw new DataFileError(
      field,
      'not-a-file',
      'is not a regular file (a directory, device, FIFO or socket)',
    );
  if (st.isFile() && st.size > access.maxBytes) throw tooLarge();
  // The path was checked; O_NOFOLLOW and the fstat below make sure the file opened is that one
  // (not a symlink or a FIFO swapped in since), and O_NONBLOCK keeps a FIFO from holding the open.
  const flags = confined
    ? constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK
    : constants.O_RDONLY;
  let fh: FileHandle;
  try {
    fh = await open(real, flags);
  } catch (e) {
    throw unreadable(e);
  }
  try {
    if (confined) {
      const now = await fh.stat();
      if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev)
        throw new DataFileError(field, 'not-a-file', 'changed while it was being opened');
    }
    return await readBounded(fh, access.maxBytes, st.isFile() ? st.size : 0, tooLarge);
  } catch (e) {
    if (e instanceof SpecError) throw e;
    throw unreadable(e);
  } finally {
    await fh.close();
  }
}

/**
 * Reads to the end, at most maxBytes (one byte more says the file is too large). `sizeHint` (the
 * size stat gave; 0 for files that do not say, as in /proc) sizes the first read.
 */
async function readBounded(
  fh: FileHandle,
  maxBytes: number,
  sizeHint: number,
  tooLarge: () => Error,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const room = maxBytes - total + 1;
    const want = total === 0 && sizeHint > 0 ? sizeHint + 1 : 1 << 20;
    const chunk = Buffer.allocUnsafe(Math.min(want, 1 << 20, room));
    const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total > maxBytes) throw tooLarge();
    chunks.push(bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead));
  }
  return Buffer.concat(chunks, total);
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? 'error';
}
