// Job spec files (YAML or JSON) as `train` and `submit` read them.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { FormatError, SpecError } from '@spinmesh/model';
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
