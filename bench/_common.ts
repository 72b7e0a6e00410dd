// Shared by the benchmarks: argument parsing, the environment figures every result carries, and
// the scikit-learn peer (../shared/peers), run in the same process tree so a ratio is one run's.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import type { Kernels } from '@spinmesh/kernels';

export type Args = Map<string, string | true>;

/** `--name=value` and `--flag` arguments; anything else, or a name not in `known`, is an error. */
export function parseArgs(bench: string, args: string[], known: string[]): Args {
  const out: Args = new Map();
  for (const a of args) {
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(a);
    if (!m || !known.includes(m[1]!))
      throw new Error(
        `bench ${bench}: unknown argument '${a}' (known: ${known.map((k) => `--${k}`).join(' ')})`,
      );
    out.set(m[1]!, m[2] ?? true);
  }
  return out;
}

/** --tiles: 'owned' or 'replicated'; absent: undefined (the caller's default). */
export function tilesArg(v: string | true | undefined): 'owned' | 'replicated' | undefined {
  if (v === undefined) return undefined;
  if (v === 'owned' || v === 'replicated') return v;
  throw new Error(`--tiles: must be 'owned' or 'replicated', got '${String(v)}'`);
}

export function numArg(args: Args, name: string, def: number): number {
  const v = args.get(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (v === true || !Number.isFinite(n)) throw new Error(`--${name} needs a number`);
  return n;
}

export function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

export function environment(k: Kernels): Record<string, unknown> {
  return {
    kernels: k.name,
    kernels_detail: k.describe(),
    threads: k.threads,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    node: process.version,
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
/** The peers folder beside the checkout (../shared/peers), or env SPINMESH_PEERS. */
export const peersDir = process.env['SPINMESH_PEERS'] ?? resolve(repoRoot, '..', 'shared', 'peers');

/**
 * Runs a scikit-learn peer script with Debian's python and returns its last JSON line, or a
 * reason why it could not run (the benchmark then reports that instead of a ratio).
 */
export function runPeer(script: string, args: string[], threads: number): Record<string, unknown> {
  const path = resolve(peersDir, script);
  if (!existsSync(path)) return { skipped: `peer script ${path} not found` };
  // The peer gets this process's OpenBLAS settings, OPENBLAS_CORETYPE included, so both sides
  // run the same sgemm kernel and the ratio compares the implementations, not the kernels. Run
  // the benchmark under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for the fastest kernel on
  // both sides (the peers' README).
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(threads),
    OMP_NUM_THREADS: String(threads),
  };
  try {
    const out = execFileSync('/usr/bin/python3', [path, ...args], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const last = out.trim().split('\n').pop() ?? '{}';
    return JSON.parse(last) as Record<string, unknown>;
  } catch (e) {
    const msg = (e as { stderr?: string }).stderr ?? (e as Error).message;
    return {
      skipped: `peer failed (needs apt-get install python3-sklearn): ${msg.trim().split('\n').pop()}`,
    };
  }
}
