// The peer transport across processes: a peer server in a child node process exchanging frames
// with this one, killed with SIGKILL mid-job and restarted on the same port.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { PeerLink, PeerServer } from '../src/index.js';
import { sleep, stampedBlock, stampedOk, until } from './helpers.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/peer-child.mjs', import.meta.url));
const children = new Set<ChildProcess>();

interface ChildMessage {
  type: string;
  address?: string;
  port?: number;
  steps?: number[];
  bad?: number;
  count?: number;
}

/** The next IPC message of the given type from a child. */
function message(child: ChildProcess, type: string): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ChildMessage): void => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number | null): void => {
      child.off('message', onMessage);
      reject(new Error(`peer child exited (${code}) before sending '${type}'`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function startChild(port: number): Promise<{ proc: ChildProcess; address: string }> {
  const proc = spawn(process.execPath, [fixture, String(port), 'job', '1', '7'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  const m = await message(proc, 'listening');
  return { proc, address: m.address! };
}

async function report(proc: ChildProcess): Promise<{ steps: number[]; bad: number }> {
  const r = message(proc, 'report');
  proc.send({ type: 'report' });
  const m = await r;
  return { steps: m.steps!, bad: m.bad! };
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

beforeAll(() => {
  // The child runs the compiled package: build it (incremental; a no-op when up to date).
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-b', 'services/worker'], {
    cwd: root,
    stdio: 'inherit',
  });
});

afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
});

describe('peer transport across processes', () => {
  it('exchanges 1000 frames each way, survives SIGKILL of the peer and resumes with a new one', async () => {
    const fromChild: number[] = [];
    let bad = 0;
    const server = await PeerServer.start({
      jobId: 'job',
      generation: 1,
      onFrame: (f) => {
        fromChild.push(f.step);
        if (!stampedOk(f.step, f.packed)) bad++;
      },
    });
    const first = await startChild(0);
    const port = Number(/:(\d+)$/.exec(first.address)![1]);
    const link = new PeerLink({
      address: first.address,
      jobId: 'job',
      generation: 1,
      fromShard: 0,
      initialBackoffMs: 20,
      maxBackoffMs: 200,
    });
    const disconnects: grpc.StatusObject[] = [];
    link.on('disconnect', (st) => disconnects.push(st));
    try {
      // Both directions at once.
      const childSent = message(first.proc, 'sent');
      first.proc.send({ type: 'send', to: server.address, from: 0, count: 1000 });
      for (let i = 0; i < 1000; i++) await link.send(stampedBlock(i));
      await link.flush();
      expect((await childSent).count).toBe(1000);
      expect(await report(first.proc)).toEqual({ steps: range(0, 1000), bad: 0 });
      expect(fromChild).toEqual(range(0, 1000));
      expect(bad).toBe(0);
      expect(disconnects).toHaveLength(0);

      // The peer dies: the link reports it and keeps trying.
      first.proc.kill('SIGKILL');
      await once(first.proc, 'exit');
      while (disconnects.length === 0) await sleep(5);
      expect(disconnects[0]!.code).toBe(grpc.status.UNAVAILABLE);
      const sending = (async () => {
        for (let i = 1000; i < 1100; i++) await link.send(stampedBlock(i));
        await link.flush();
      })();
      // The window fills up; the rest wait in send().
      await until(() => link.inFlight === 16, 60_000, 'a full window');
      expect(['backoff', 'connecting']).toContain(link.state);

      // A new peer on the same port gets everything sent since, once and in order.
      const second = await startChild(port);
      await sending;
      expect(link.state).toBe('open');
      expect(link.stats.reconnects).toBeGreaterThanOrEqual(1);
      expect(await report(second.proc)).toEqual({ steps: range(1000, 100), bad: 0 });

      // A clean exit: the child's event loop empties once its transport is closed.
      await link.close();
      const exited = once(second.proc, 'exit');
      second.proc.send({ type: 'exit' });
      const [code, signal] = (await exited) as [number | null, string | null];
      expect({ code, signal }).toEqual({ code: 0, signal: null });
    } finally {
      await link.close();
      await server.close();
    }
  });
});
