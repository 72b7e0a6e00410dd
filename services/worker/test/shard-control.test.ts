// ShardControl's accounting of a shard loop's waits: only the event loop's idle time while the
// loop waits for its peers counts as waiting, not the frames handled meanwhile.
import { describe, expect, it } from 'vitest';

import { ShardControl } from '../src/shard-control.js';

describe('ShardControl.waitForPeers', () => {
  it('counts the idle time of a wait, not the work done in it', async () => {
    const ctl = new ShardControl();
    const seen = ctl.delivered;
    let busyMs = 0;
    // A frame arrives after an idle spell, and handling it (and what came with it) is work.
    setTimeout(() => {
      const t = performance.now();
      while (performance.now() - t < 200) {
        // handling frames
      }
      busyMs = performance.now() - t;
      ctl.frameDelivered();
    }, 50);
    const t0 = performance.now();
    await ctl.waitForPeers(seen, false);
    const wallMs = performance.now() - t0;
    expect(ctl.woke).toBe(true);
    expect(busyMs).toBeGreaterThanOrEqual(200);
    expect(ctl.time.waitMs).toBeGreaterThan(0);
    // the wall time of the wait less the work in it, not the wall time (a few ms of slack for
    // the loop's own bookkeeping)
    expect(ctl.time.waitMs).toBeLessThanOrEqual(wallMs - busyMs + 5);
  });
});
