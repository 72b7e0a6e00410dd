// The generated messages as the services use them: wire round trips, uint64 as number, and the
// service definitions' names.
import { describe, expect, it } from 'vitest';

import {
  PeerServiceService,
  ServiceNames,
  ShardAssignment,
  SpinFrame,
  STALENESS_UNBOUNDED,
  UnitType,
  stalenessFromWire,
  stalenessToWire,
  WorkerControlService,
  WorkerStatus,
} from '../src/index.js';

describe('generated messages', () => {
  it('round-trip a spin frame, uint64 step included', () => {
    const frame: SpinFrame = {
      jobId: 'job-1',
      generation: 3,
      fromShard: 2,
      step: 2 ** 40 + 7,
      phase: 1,
      layer: 1,
      unitStart: 250,
      unitCount: 250,
      chains: 64,
      packed: Buffer.from(Array.from({ length: 2000 }, (_, i) => (i * 37) & 255)),
      values: Buffer.alloc(0),
      seq: 123_456,
      reads: [1, 0, -1, 0, 3, 2 ** 40 + 5],
      partialField: false,
    };
    const back = SpinFrame.decode(SpinFrame.encode(frame).finish());
    expect(back).toEqual(frame);
  });

  it('refuses a uint64 beyond 2^53 instead of rounding it', () => {
    // field 4 (step), varint 2^60: tag 0x20, then 9 bytes of varint.
    const big = Buffer.from([0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    expect(() => SpinFrame.decode(big)).toThrow(/MAX_SAFE_INTEGER/);
  });

  it('round-trip an assignment with the unbounded staleness and a network', () => {
    const a = ShardAssignment.fromPartial({
      jobId: 'j',
      generation: 1,
      shardId: 1,
      shardCount: 2,
      network: {
        layers: [
          { name: 'v', size: 784, units: UnitType.UNIT_TYPE_BERNOULLI, lateral: false },
          { name: 'h', size: 500, units: UnitType.UNIT_TYPE_ISING, lateral: true },
        ],
        connections: [{ from: 'v', to: 'h' }],
      },
      units: [{ layer: 1, start: 250, end: 500 }],
      peers: [{ shardId: 0, address: '127.0.0.1:7000', units: [{ layer: 0, start: 0, end: 784 }] }],
      staleness: STALENESS_UNBOUNDED,
      checkpointEverySteps: 1000,
      restoreFromStep: 0,
      seed: 42,
    });
    const back = ShardAssignment.decode(ShardAssignment.encode(a).finish());
    expect(back).toEqual(a);
    expect(back.staleness).toBe(4294967295);
    expect(ShardAssignment.toJSON(back)).toMatchObject({
      network: { layers: [{ units: 'UNIT_TYPE_BERNOULLI' }, { units: 'UNIT_TYPE_ISING' }] },
    });
    expect(WorkerStatus.decode(WorkerStatus.encode(WorkerStatus.fromPartial({})).finish())).toEqual(
      WorkerStatus.fromPartial({}),
    );
  });

  it('convert staleness at the wire only: Infinity to the sentinel and back', () => {
    expect(stalenessToWire(Infinity)).toBe(STALENESS_UNBOUNDED);
    expect(stalenessToWire(3)).toBe(3);
    expect(stalenessFromWire(STALENESS_UNBOUNDED)).toBe(Infinity);
    expect(stalenessFromWire(0)).toBe(0);
    expect(stalenessFromWire(stalenessToWire(4294967294))).toBe(4294967294);
  });

  it('name the services as proto/ does', () => {
    expect(PeerServiceService.exchange.path).toBe(`/${ServiceNames.peer}/Exchange`);
    expect(PeerServiceService.exchange.requestStream).toBe(true);
    expect(PeerServiceService.exchange.responseStream).toBe(true);
    expect(WorkerControlService.assign.path).toBe(`/${ServiceNames.workerControl}/Assign`);
  });
});
