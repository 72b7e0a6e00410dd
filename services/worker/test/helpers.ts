// Test helpers for the peer transport: deterministic spins, frame contents that can be checked
// on arrival, a byte-counting TCP proxy, and small waiting utilities.
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';

import {
  PeerLink,
  PeerServer,
  type PeerLinkOptions,
  type PeerServerOptions,
  type SpinBlock,
} from '../src/index.js';

/** chains x units spins, chain-major: {0,1} or, with `ising`, {-1,+1}. */
export function randomSpins(
  r: () => number,
  chains: number,
  units: number,
  ising = false,
): Float32Array {
  const x = new Float32Array(chains * units);
  for (let i = 0; i < x.length; i++) x[i] = r() < 0.5 ? 1 : ising ? -1 : 0;
  return x;
}

/**
 * A packed payload whose bytes are a function of (step, i), so a receiver can check it without
 * being told: byte i = (step * 131 + i * 7) & 255, the unused high bits of the last byte clear.
 */
export function stampedBlock(step: number, chains = 8, unitCount = 100): SpinBlock {
  const n = chains * unitCount;
  const packed = new Uint8Array(Math.ceil(n / 8));
  for (let i = 0; i < packed.length; i++) packed[i] = (step * 131 + i * 7) & 255;
  if (n % 8 !== 0) packed[packed.length - 1]! &= (1 << (n % 8)) - 1;
  return { step, phase: 0, layer: 0, unitStart: 0, unitCount, chains, packed };
}

/** Whether a received payload is the one stampedBlock(step) made. */
export function stampedOk(step: number, packed: Uint8Array, chains = 8, unitCount = 100): boolean {
  const want = stampedBlock(step, chains, unitCount).packed!;
  return Buffer.compare(Buffer.from(want), Buffer.from(packed)) === 0;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 5 ms until it holds, failing after `ms` (generous: a loaded CI machine). */
export async function until(cond: () => boolean, ms = 60_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Starts PeerServers and closes them all in one call (afterEach). */
export class Servers {
  private readonly all = new Set<PeerServer>();

  constructor(private readonly defaults: Partial<PeerServerOptions> = {}) {}

  async start(opts: PeerServerOptions): Promise<PeerServer> {
    const s = await PeerServer.start({ ...this.defaults, ...opts });
    this.all.add(s);
    return s;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.all].map((s) => s.close()));
    this.all.clear();
  }
}

/** PeerLinks of job 'job', generation 1, with short backoffs by default; closeAll() ends them. */
export class Links {
  private readonly all = new Set<PeerLink>();

  constructor(private readonly defaults: Partial<PeerLinkOptions> = {}) {}

  make(opts: Omit<PeerLinkOptions, 'jobId' | 'generation'> & Partial<PeerLinkOptions>): PeerLink {
    const l = new PeerLink({
      jobId: 'job',
      generation: 1,
      initialBackoffMs: 20,
      ...this.defaults,
      ...opts,
    });
    this.all.add(l);
    return l;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.all].map((l) => l.close()));
    this.all.clear();
  }
}

/** A TCP proxy to 127.0.0.1:`target` that counts the bytes it carries each way. */
export interface CountingProxy {
  readonly port: number;
  /** Bytes from the client to the target, and back. */
  readonly up: () => number;
  readonly down: () => number;
  close(): Promise<void>;
}

export async function countingProxy(target: number): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (b: Buffer) => {
      up += b.length;
      upstream.write(b);
    });
    upstream.on('data', (b: Buffer) => {
      down += b.length;
      client.write(b);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy has no port');
  return {
    port: addr.port,
    up: () => up,
    down: () => down,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
