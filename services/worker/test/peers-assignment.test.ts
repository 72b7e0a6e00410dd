// What the worker needs of the transport besides moving frames: a server with no assignment yet
// makes early senders wait (UNAVAILABLE, retried) instead of failing them; the cluster secret;
// and per-sender counters that restart with each assignment.
import * as grpc from '@grpc/grpc-js';
import type { SpinFrame } from '@spinmesh/proto';
import { afterEach, describe, expect, it } from 'vitest';

import { Links, Servers, stampedBlock, until } from './helpers.js';

const servers = new Servers();
const links = new Links({ maxBackoffMs: 100 });
const link = links.make.bind(links);

afterEach(async () => {
  await links.closeAll();
  await servers.closeAll();
});

describe('PeerServer assignment and secret', () => {
  it('answers UNAVAILABLE while unassigned; the sender retries and delivers once assigned', async () => {
    const got: SpinFrame[] = [];
    const server = await servers.start({ onFrame: (f) => void got.push(f) });
    expect(server.assignment).toBeNull();
    const l = link({ address: server.address, fromShard: 2 });
    const failed: unknown[] = [];
    l.on('fail', (e) => failed.push(e));
    for (let s = 0; s < 5; s++) await l.send(stampedBlock(s));
    await until(() => server.stats.rejected > 0, 60_000, 'a refusal');
    expect(got).toEqual([]);
    server.setAssignment('job', 1);
    await l.flush();
    expect(got.map((f) => f.step)).toEqual([0, 1, 2, 3, 4]);
    expect(failed).toEqual([]);
    // Per-sender counters since the assignment; cleared when it changes.
    expect(server.senderStats().get(2)?.framesReceived).toBeGreaterThanOrEqual(5);
    expect(server.senderStats().get(2)?.bytesReceived).toBeGreaterThan(5 * 100);
    server.clearAssignment();
    expect(server.senderStats().size).toBe(0);
    expect(server.assignment).toBeNull();
  });

  it('refuses streams without the cluster secret', async () => {
    const got: SpinFrame[] = [];
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      secret: 's3cret',
      onFrame: (f) => void got.push(f),
    });
    const bad = link({ address: server.address, fromShard: 0, secret: 'guess' });
    let failure: { code: number } | null = null;
    bad.on('fail', (e) => (failure = e));
    bad.send(stampedBlock(0)).catch(() => {});
    await until(() => failure !== null, 60_000, 'the refused link to fail');
    expect(failure!.code).toBe(grpc.status.UNAUTHENTICATED);
    const good = link({ address: server.address, fromShard: 1, secret: 's3cret' });
    await good.send(stampedBlock(7));
    await good.flush();
    expect(got.map((f) => [f.fromShard, f.step])).toEqual([[1, 7]]);
  });
});
