// Spin frames on the receiving side: the shape checks every frame must pass, and the memory of
// which frames were delivered already, so that a frame resent after a reconnection reaches the
// sampling loop once.
import { status as Status } from '@grpc/grpc-js';
import { ServerError, type SpinFrame } from '@spinmesh/proto';

/** Bytes of SpinFrame.packed for a block of `chains` x `unitCount` binary units. */
export function packedBytes(chains: number, unitCount: number): number {
  return Math.ceil((chains * unitCount) / 8);
}

/** Bytes of SpinFrame.values for a block of `chains` x `unitCount` Gaussian units. */
export function valuesBytes(chains: number, unitCount: number): number {
  return chains * unitCount * 4;
}

/**
 * Throws ServerError(INVALID_ARGUMENT) naming the field when the frame's block is malformed:
 * no units or chains, or a payload of the wrong length (exactly one of packed and values).
 * Which job and generation it belongs to is the receiver's business (PeerServer).
 */
export function checkFrameShape(frame: SpinFrame): void {
  const bad = (msg: string): never => {
    throw new ServerError(Status.INVALID_ARGUMENT, `spin frame: ${msg}`);
  };
  if (frame.unitCount <= 0) bad('unit_count must be > 0');
  if (frame.chains <= 0) bad('chains must be > 0');
  const hasPacked = frame.packed.length > 0;
  const hasValues = frame.values.length > 0;
  if (hasPacked === hasValues) {
    bad('exactly one of packed (binary units) and values (Gaussian units) must be set');
  }
  if (frame.partialField && !hasValues) bad('a partial field must be carried in values');
  if (hasPacked) {
    const want = packedBytes(frame.chains, frame.unitCount);
    if (frame.packed.length !== want) {
      bad(
        `packed must hold ceil(chains * unit_count / 8) = ${want} bytes for ${frame.chains} chains` +
          ` x ${frame.unitCount} units, got ${frame.packed.length}`,
      );
    }
  } else {
    const want = valuesBytes(frame.chains, frame.unitCount);
    if (frame.values.length !== want) {
      bad(
        `values must hold chains * unit_count * 4 = ${want} bytes for ${frame.chains} chains` +
          ` x ${frame.unitCount} units, got ${frame.values.length}`,
      );
    }
  }
}

/** What identifies a frame's content: the same key twice is the same spins. */
export type FrameKey = Pick<
  SpinFrame,
  'fromShard' | 'step' | 'phase' | 'layer' | 'unitStart' | 'partialField'
>;

/** Options of a FrameDeduper. */
export interface FrameDeduperOptions {
  /**
   * How many steps back from the newest step of a sender the deduper remembers. A sender's
   * steps never decrease within a generation, so a frame older than that is a resend: it is
   * dropped (and counted as stale).
   * @defaultValue 64
   */
  horizonSteps?: number;
}

/**
 * Remembers which frames were delivered, by (from_shard, step, phase, layer, unit_start,
 * partial_field), so
 * that frames resent after a reconnection (delivered, but their acknowledgement lost) are
 * delivered once. Share one deduper between the PeerServers of one receiving shard when a
 * server may be restarted. Clear it when the assignment generation changes: frames of a new
 * generation are never duplicates of the old one's (shards may go back to a checkpoint).
 */
export class FrameDeduper {
  private readonly horizon: number;
  /** Per sender: the newest step seen, and per step the (phase, layer, unit_start) delivered. */
  private readonly senders = new Map<number, { newest: number; steps: Map<number, Set<string>> }>();

  constructor(opts: FrameDeduperOptions = {}) {
    const horizon = opts.horizonSteps ?? 64;
    if (!Number.isInteger(horizon) || horizon < 0) {
      throw new RangeError(`FrameDeduper: horizonSteps must be an integer >= 0, got ${horizon}`);
    }
    this.horizon = horizon;
  }

  /**
   * 'new' the first time a key is seen (it is remembered); 'duplicate' when it was seen;
   * 'stale' when it is older than the horizon (so necessarily a resend).
   */
  admit(frame: FrameKey): 'new' | 'duplicate' | 'stale' {
    let s = this.senders.get(frame.fromShard);
    if (s === undefined) {
      s = { newest: frame.step, steps: new Map() };
      this.senders.set(frame.fromShard, s);
    }
    if (frame.step < s.newest - this.horizon) return 'stale';
    const sub = `${frame.phase}:${frame.layer}:${frame.unitStart}:${frame.partialField ? 'f' : 's'}`;
    let seen = s.steps.get(frame.step);
    if (seen === undefined) {
      seen = new Set();
      s.steps.set(frame.step, seen);
    } else if (seen.has(sub)) {
      return 'duplicate';
    }
    seen.add(sub);
    if (frame.step > s.newest) {
      s.newest = frame.step;
      const floor = s.newest - this.horizon;
      for (const step of s.steps.keys()) if (step < floor) s.steps.delete(step);
    }
    return 'new';
  }

  /** Forgets everything (a new assignment generation). */
  clear(): void {
    this.senders.clear();
  }
}
