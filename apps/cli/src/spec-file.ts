// Job spec files (YAML or JSON) as `train` and `submit` read them.
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { FormatError, SpecError, fashionMnistDefaultDir } from '@spinmesh/model';
import type { Args } from './args.js';
import { UsageError } from './errors.js';

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The text of a spec file. @throws UsageError when it cannot be read or is not UTF-8 */
export function readSpecText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read spec ${path}: ${(e as Error).message}`);
  }
  // Decoding as 'utf8' would turn invalid bytes into U+FFFD silently; the server refuses them.
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new UsageError(`spec ${path} is not valid UTF-8 (save it as UTF-8)`);
  }
}

/** A spec file parsed (JSON by its extension, YAML otherwise). @throws FormatError */
export function parseSpecFile(path: string, text = readSpecText(path)): unknown {
  const json = /\.json$/i.test(path);
  try {
    return json ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new FormatError(path, `is not valid ${json ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
  }
}

/** --epochs and --workers, written over the spec's fields. @returns whether any was given */
export function applyOverrides(raw: unknown, args: Args): boolean {
  let any = false;
  for (const name of ['epochs', 'workers'] as const) {
    const v = args.str(name);
    if (v === undefined) continue;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new SpecError('spec', 'must be an object');
    // The spec's own validation says what is wrong with the value.
    (raw as Record<string, unknown>)[name] = Number(v);
    any = true;
  }
  return any;
}

/** The directory a spec file's relative data paths resolve against: the file's own. */
export function specBaseDir(specPath: string): string {
  return dirname(resolve(specPath));
}

/** The fields of a data spec that name files or directories. */
const PATH_FIELDS = ['path', 'images', 'labels', 'dir'] as const;

/**
 * Makes the data paths of a raw spec (data, evaluate.test) absolute against `baseDir`, so that
 * processes started elsewhere (the embedded cluster) read the files this process would.
 * @returns the directories holding those files (each resolved with realpath when it exists):
 *   the data roots the cluster's services need
 */
export function absoluteDataPaths(raw: Record<string, unknown>, baseDir: string): string[] {
  const roots = new Set<string>();
  const ev = raw['evaluate'];
  const specs = [raw['data'], isObject(ev) ? ev['test'] : undefined];
  for (const d of specs) {
    if (!isObject(d)) continue;
    for (const f of PATH_FIELDS) {
      const v = d[f];
      if (typeof v !== 'string' || v === '') continue;
      const abs = resolve(baseDir, v);
      d[f] = abs;
      roots.add(f === 'dir' ? real(abs) : dirname(real(abs)));
    }
    if (d['kind'] === 'fashion-mnist' && d['dir'] === undefined)
      roots.add(real(fashionMnistDefaultDir()));
  }
  return [...roots];
}

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path; // it does not exist: the job's own checks say so
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
