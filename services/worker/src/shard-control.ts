// What a shard's loop and its run share while the loop runs: whether it is told to end (abort,
// stop), the frames delivered so far and the loop waiting for the next, the links to the peers,
// and where the loop's time went.
import { setImmediate as yieldNow } from 'node:timers/promises';

import type { ShardAssignment } from '@spinmesh/proto';

import type { Logger } from './log.js';
import { PeerLink } from './peers.js';
import type { RunDeps } from './run.js';

/** Frames sent before a wait go out first when the computation after the wait lasts longer. */
const FLUSH_BEFORE_MS = 0.25;

export class ShardControl {
  /** The run ends at once: no checkpoint, links closed, frames in flight dropped. */
  aborted = false;
  /** A graceful stop is asked for (with a checkpoint first). */
  stopping: { checkpoint: boolean } | null = null;
  /** Frames handed to the shard so far; the loop waits for this to change. */
  delivered = 0;
  /** The loop woke from waitForPeers; the computation that followed took afterWakeMs. */
  woke = false;
  afterWakeMs = Infinity;
  /** Milliseconds (performance.now) for the run's timing(). */
  readonly time = { startedAt: NaN, endedAt: NaN, computeMs: 0, waitMs: 0 };
  /** A link to each peer shard, by shard id. */
  readonly links = new Map<number, PeerLink>();
  private wakers: (() => void)[] = [];

  /** Whether the loop must leave now (aborted, or a stop is asked for). */
  get ending(): boolean {
    return this.aborted || this.stopping !== null;
  }

  /** A frame was delivered (or the run is told to end): the waiting loop goes on. */
  wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** Counts one delivered frame and wakes the loop. */
  frameDelivered(): void {
    this.delivered++;
    this.wake();
  }

  /**
   * waitFrames, its time counted as waiting for peers (timing()). `sent`: frames were sent just
   * before. They leave the process only when the event loop gets to HTTP/2's writes, in its
   * check phase; a peer's frame arriving first (poll phase) would wake us to compute (a whole
   * update, at the end of a step) with our frames still inside, and the peer would wait for that
   * too. So when what we compute after waking takes long (the last time: afterWakeMs), a turn of
   * the loop (some 30 us) lets them out first (2 workers, dense 2048-2048 RBM: the waiting per
   * step halves); on a small network it would cost more than it saves.
   */
  async waitForPeers(seen: number, sent: boolean): Promise<void> {
    if (sent && this.afterWakeMs > FLUSH_BEFORE_MS) await yieldNow();
    const before = performance.eventLoopUtilization();
    await this.waitFrames(seen);
    // Only the loop's idle time: frames received while waiting are work like frames received
    // after computing (a slower worker finds its peers' frames already there, and counted
    // whole, its time against a faster one's made it look slower than it is).
    this.time.waitMs += performance.eventLoopUtilization(before).idle;
    this.woke = true;
  }

  /**
   * Waits up to `ms`, or until the run is told to end or `done()` (checked whenever the loop is
   * woken); frames arriving meanwhile do not end it. Counted as waiting (timing()).
   */
  async pause(ms: number, done: () => boolean): Promise<void> {
    const t0 = performance.now();
    const until = t0 + ms;
    while (!this.ending && !done()) {
      const left = until - performance.now();
      if (left <= 0) break;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wakers.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
    this.time.waitMs += performance.now() - t0;
  }

  /** Resolves once a frame was delivered after `seen`, or the run is told to end. */
  async waitFrames(seen: number): Promise<void> {
    if (this.delivered !== seen || this.aborted) return;
    await new Promise<void>((resolve) => this.wakers.push(resolve));
  }

  /** A link to every peer of the assignment. */
  openLinks(a: ShardAssignment, deps: RunDeps, log: Logger): void {
    for (const p of a.peers) {
      const link = new PeerLink({
        address: p.address,
        jobId: a.jobId,
        generation: a.generation,
        fromShard: a.shardId,
        maxBackoffMs: 1000,
        credentials: deps.peerCredentials,
        transport: deps.peerStream !== null ? 'stream' : 'grpc',
        streamTls: deps.peerStream?.tls ?? null,
        ...(deps.secret !== null ? { secret: deps.secret } : {}),
      });
      // Which transport carries the link (the framed stream, or gRPC where the peer has none).
      link.once('connect', () =>
        log.info({ peer: p.shardId, address: p.address, via: link.via }, 'peer link open'),
      );
      link.on('fail', (err) => {
        if (!this.aborted)
          log.warn({ peer: p.shardId, address: p.address, err: err.message }, 'peer link failed');
      });
      this.links.set(p.shardId, link);
    }
  }

  /** Flushes the links for up to `graceMs` (0: not at all), then closes them. */
  async closeLinks(graceMs: number): Promise<void> {
    const links = [...this.links.values()];
    if (graceMs > 0 && links.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(links.map((l) => l.flush())),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    await Promise.all(links.map((l) => l.close()));
  }
}
