// The Lua scripts of the Redis bus: where they live, how many keys each takes (from its file name,
// `<name>-<keys>.lua`), and the codes they answer with.
import { readFileSync } from 'node:fs';

/**
 * Result codes of the Lua scripts in `src/lua` (the first element of their reply, or the reply
 * itself). Negative codes are refusals, never Redis errors.
 */
export enum ScriptCode {
  Ok = 0,
  JobNotFound = -1,
  JobExists = -2,
  StateConflict = -3,
  TerminalState = -4,
  StaleStep = -5,
  StaleGeneration = -6,
  ShardNotFound = -7,
  ShardNotHeld = -8,
  NoAssignment = -9,
}

/** Script files, by the name of the command that ioredis defines for each. */
export const SCRIPT_FILES = {
  createJob: 'create-job-4.lua',
  transitionJob: 'transition-job-2.lua',
  updateProgress: 'update-progress-1.lua',
  setAssignment: 'set-assignment-2.lua',
  reassignShard: 'reassign-shard-2.lua',
  putSpins: 'put-spins-2.lua',
  commitCheckpoint: 'commit-checkpoint-3.lua',
  appendEvent: 'append-event-2.lua',
  pruneWorker: 'prune-worker-2.lua',
} as const;

export type ScriptName = keyof typeof SCRIPT_FILES;

export interface LoadedScript {
  readonly name: ScriptName;
  readonly numberOfKeys: number;
  readonly lua: string;
}

/**
 * Reads every script. The files stay in `src/lua` (the package ships them); this module sits one
 * level below the package root both as `src/scripts.ts` and as `dist/scripts.js`, so the same
 * relative URL finds them from either.
 */
export function loadScripts(): LoadedScript[] {
  return (Object.keys(SCRIPT_FILES) as ScriptName[]).map((name) => {
    const file = SCRIPT_FILES[name];
    const m = /-(\d+)\.lua$/.exec(file);
    if (!m) throw new Error(`script file ${file} is not named <name>-<number of keys>.lua`);
    const lua = readFileSync(new URL(`../src/lua/${file}`, import.meta.url), 'utf8');
    return { name, numberOfKeys: Number(m[1]), lua };
  });
}
