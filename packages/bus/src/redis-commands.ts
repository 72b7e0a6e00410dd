// Small helpers over an ioredis connection that the Redis bus's modules share.
import type { ChainableCommander, Redis } from 'ioredis';
import type { ScriptName } from './scripts.js';

/** Runs a MULTI or pipeline and returns its replies, throwing the first error. */
export async function exec(commands: ChainableCommander): Promise<unknown[]> {
  const results = await commands.exec();
  if (results === null) throw new Error('Redis transaction aborted');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function unexpected(script: string, code: unknown): Error {
  return new Error(`unexpected reply ${String(code)} from ${script}`);
}

/** Runs one of the scripts of src/lua (defined on the connection at connect). */
export function runScript(
  redis: Redis,
  name: ScriptName,
  keys: readonly string[],
  args: readonly (string | number | Buffer)[],
): Promise<unknown> {
  const command = (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[
    name
  ]!;
  return command.call(redis, ...keys, ...args);
}

export async function unlinkAll(redis: Redis, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) await redis.unlink(...keys.slice(i, i + 1000));
}

/** Deletes every key that matches a SCAN pattern. */
export async function deleteMatching(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys.length > 0) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}
