// Kind 'stdp' on a worker: one shard of a sequence job's DyBM (a range of its units). Every
// frame of every episode: own units observed from the data, spikes sent to every peer, peers'
// spikes used once the staleness allows (what arrives later than that is waited for), then the
// local learning rule. No checkpoints; at the end the shard's parameters go to its export slot.
import { setImmediate as yieldNow } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import {
  DyBMShard,
  createSequenceModel,
  episodeLength,
  loadSequences,
  sequenceJobFrames,
  validateSequenceJob,
  type FrameSequence,
  type SequenceJobSpec,
} from '@spinmesh/model';
import { ServerError, type SpinFrame } from '@spinmesh/proto';
import { ShardEvents, exportSlot } from '@spinmesh/cluster';

import { JobLoadError } from '../job.js';
import type { SpinBlock } from '../peers.js';
import type { ShardCounts, ShardHost, ShardRunner, WorkerKind } from './kind.js';

const Status = grpc.status;

export const stdp: WorkerKind = {
  async load(record, host) {
    const a = host.assignment;
    if (record.sequence === undefined)
      throw new JobLoadError(`job '${record.id}' has no sequence field on the bus`);
    // The record is the spec's one channel (see ShardRun.load); validated here, once.
    const spec = validateSequenceJob(record.sequence);
    if (a.restoreFromStep > 0)
      throw new JobLoadError('a sequence job has no checkpoints: restore_from_step must be 0');
    const r = a.units[0];
    if (a.units.length !== 1 || r === undefined || r.layer !== 0)
      throw new JobLoadError('a sequence job shard owns one range of units of layer 0');
    const seqs = await loadSequences(spec, host.deps.dataAccess);
    const units = Array.from({ length: r.end - r.start }, (_, k) => r.start + k);
    const shard = new DyBMShard(createSequenceModel(spec), units);
    host.control.openLinks(a, host.deps, host.log);
    const peers = new Map(
      a.peers.map((p) => {
        const u = p.units[0];
        if (p.units.length !== 1 || u === undefined)
          throw new JobLoadError(`peer shard ${p.shardId} must own one range of units`);
        return [p.shardId, u] as const;
      }),
    );
    return new SequenceShardRunner(host, new SequenceShard(spec, seqs, shard, r.start, peers));
  },
};

/** The sequence loop of one shard. */
class SequenceShardRunner implements ShardRunner {
  readonly checkpointStep = 0;
  readonly checkpointAtMs = null;
  // Its job is watched through Status; it sends no progress events.
  readonly reports = false;

  constructor(
    private readonly host: ShardHost,
    private readonly q: SequenceShard,
  ) {}

  get step(): number {
    return this.q.done;
  }

  get totalSteps(): number {
    return this.q.total;
  }

  take(f: SpinFrame): void {
    this.q.take(f);
  }

  stalenessHistogram(): number[] {
    return Array.from(this.q.lead, (n) => n ?? 0);
  }

  counts(): ShardCounts {
    return { spinUpdates: 0, sweeps: 0, weightUpdates: 0, staleness: [], update: null };
  }

  spins(): null {
    return null;
  }

  async run(): Promise<void> {
    const q = this.q;
    const ctl = this.host.control;
    const cue = q.spec.evaluate.cue;
    const s = q.spec.staleness;
    let g = 0;
    for (let round = 0; round < q.spec.epochs; round++) {
      for (const seq of q.seqs) {
        const L = episodeLength(seq, cue);
        q.shard.reset();
        q.episodeStart = g;
        for (let t = 0; t < L; t++, g++) {
          if (ctl.ending) return;
          let t0 = performance.now();
          q.shard.predict();
          const x = q.ownFrame(seq, t % seq.steps);
          q.shard.observe(x);
          ctl.time.computeMs += performance.now() - t0;
          await this.send(g, x);
          // Every peer's spikes up to g - s must be in; newer ones are used if they are.
          while (!q.ready(g - s)) {
            await ctl.waitForPeers(ctl.delivered, false);
            if (ctl.ending) return;
          }
          t0 = performance.now();
          q.noteLead(g);
          q.deliver(g);
          q.shard.learn();
          q.shard.advance();
          ctl.time.computeMs += performance.now() - t0;
          q.done = g + 1;
          if ((g & 255) === 255) {
            this.host.report(false);
            await yieldNow();
          }
        }
      }
    }
    await this.finish();
  }

  /** The shard's parameters to its export slot. */
  private async finish(): Promise<void> {
    const q = this.q;
    const { jobId, shardId, generation } = this.host.assignment;
    const bytes = Buffer.from(JSON.stringify(q.exportModel().toJSON()));
    const slot = exportSlot(shardId);
    const st = this.host.staleness();
    // The event first: the export completes the job, and a watcher's stream ends there.
    await this.host.event(ShardEvents.done, {
      step: q.total,
      slot,
      bytes: bytes.length,
      staleness: { count: st.count, sumSteps: st.sumSteps, maxSteps: st.maxSteps },
    });
    await this.host.deps.bus.putCheckpoint(jobId, slot, q.total, bytes, generation);
    this.host.markDone();
    this.host.log.info(
      { step: q.total, slot, bytes: bytes.length, staleness: st.maxSteps },
      'sequence shard done: export written',
    );
  }

  private async send(g: number, x: Float64Array): Promise<void> {
    const packed = new Uint8Array(Math.ceil(x.length / 8));
    x.forEach((v, k) => {
      if (v !== 0) packed[k >> 3]! |= 1 << (k & 7);
    });
    const block: SpinBlock = {
      step: g,
      phase: 0,
      layer: 0,
      unitStart: this.q.unitStart,
      unitCount: x.length,
      chains: 1,
      packed,
    };
    for (const link of this.host.control.links.values()) await link.send(block);
  }
}
/** A sequence job's shard on this worker and the peers' spikes it has received. */
class SequenceShard {
  /** Frames learned so far (the run's step). */
  done = 0;
  /** Global frame index of the current episode's first frame. */
  episodeStart = 0;
  readonly total: number;
  /** Per peer, the newest global frame index received (frames come in order on a link). */
  private readonly latest = new Map<number, number>();
  /**
   * lead[d]: frames learned while the slowest peer's newest spike was d frames behind (the
   * staleness actually used; d <= spec.staleness).
   */
  readonly lead: number[] = [];
  /** Received frames not yet handed to the shard, by global frame index. */
  private readonly buffered = new Map<number, { from: number; x: Float64Array }[]>();

  constructor(
    readonly spec: SequenceJobSpec,
    readonly seqs: FrameSequence[],
    readonly shard: DyBMShard,
    readonly unitStart: number,
    private readonly peers: Map<number, { layer: number; start: number; end: number }>,
  ) {
    this.total = sequenceJobFrames(spec, seqs);
    for (const p of peers.keys()) this.latest.set(p, -1);
  }

  /** The shard's own units' values in frame t of a sequence. */
  ownFrame(seq: FrameSequence, t: number): Float64Array {
    const u = this.shard.units;
    return Float64Array.from(u, (j) => seq.data[t * seq.units + j]!);
  }

  /** A peer's frame: checked against what the peer owns, kept until its step. */
  take(f: SpinFrame): void {
    const range = this.peers.get(f.fromShard);
    if (range === undefined)
      throw new ServerError(Status.INVALID_ARGUMENT, `spin frame: shard ${f.fromShard} is no peer`);
    if (f.unitStart !== range.start || f.unitCount !== range.end - range.start || f.chains !== 1)
      throw new ServerError(
        Status.INVALID_ARGUMENT,
        `spin frame: a sequence shard ${f.fromShard} sends units [${range.start}, ${range.end}) of one chain`,
      );
    const x = new Float64Array(f.unitCount);
    for (let k = 0; k < x.length; k++) x[k] = (f.packed[k >> 3]! >> (k & 7)) & 1;
    this.latest.set(f.fromShard, Math.max(this.latest.get(f.fromShard)!, f.step));
    // Spikes of an episode that is over are not needed (the shard forgot that past).
    if (f.step < this.episodeStart) return;
    let list = this.buffered.get(f.step);
    if (!list) this.buffered.set(f.step, (list = []));
    list.push({ from: f.fromShard, x });
  }

  /** Whether every peer's spikes up to global frame `g` are in (none needed before the episode). */
  ready(g: number): boolean {
    if (g < this.episodeStart) return true;
    for (const v of this.latest.values()) if (v < g) return false;
    return true;
  }

  /** Counts how far behind frame `g` the slowest peer's newest spike is (0 when none is needed). */
  noteLead(g: number): void {
    let d = 0;
    if (g - this.episodeStart >= 0)
      for (const v of this.latest.values()) d = Math.max(d, Math.min(g - v, g - this.episodeStart));
    this.lead[d] = (this.lead[d] ?? 0) + 1;
  }

  /** Hands the shard every received frame of this episode up to global frame `g`. */
  deliver(g: number): void {
    for (const [step, list] of this.buffered) {
      if (step < this.episodeStart) {
        this.buffered.delete(step);
        continue;
      }
      if (step > g) continue;
      for (const m of list) {
        const r = this.peers.get(m.from)!;
        this.shard.receive({
          kind: 'spikes',
          t: step - this.episodeStart,
          units: Int32Array.from({ length: r.end - r.start }, (_, k) => r.start + k),
          x: m.x,
          err: new Float64Array(m.x.length),
        });
      }
      this.buffered.delete(step);
    }
  }

  /** A DyBM holding this shard's units' parameters (the rest at their initial values). */
  exportModel(): ReturnType<typeof createSequenceModel> {
    const model = createSequenceModel(this.spec);
    this.shard.exportInto(model);
    return model;
  }
}
