// Kind 'boltzmann' on a worker: one shard of a sharded Boltzmann machine. Its loop draws as far
// as the received spins allow, sends the new spins, waits for the next frame when blocked,
// checkpoints at every multiple of checkpoint_every_steps, and writes the shard's final export
// when the job's steps are done.
import { setImmediate as yieldNow, setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import {
  SpecError,
  ShardTrainer,
  type AdvanceResult,
  type ShardStats,
  type SpinMessage,
} from '@spinmesh/model';
import { ServerError, stalenessFromWire, type SpinFrame } from '@spinmesh/proto';
import {
  ShardEvents,
  moveSlot,
  restoreSlots,
  encodeShardExport,
  evaluationEverySteps,
  exportSlot,
  isShardExport,
  slotFor,
  snapshotEverySteps,
  snapshotSlot,
} from '@spinmesh/cluster';

import { JobLoadError, jobParameterSource, loadShardJob, type ShardJob } from '../job.js';
import { PeerLinkError, type SpinBlock } from '../peers.js';
import type { ShardCounts, ShardHost, ShardRunner, WorkerKind } from './kind.js';

const Status = grpc.status;

/** Longest stretch of drawing between two looks at the event loop (frames, RPCs, timers), ms. */
const SLICE_MS = 5;
/** SPINMESH_DEBUG_SLOWDOWN spins off a debt up to this many ms, and sleeps off a longer one. */
const SLOW_SPIN_MS = 20;

export const boltzmann: WorkerKind = {
  async load(record, host) {
    const { bus, kernels, dataAccess, dataCache } = host.deps;
    const a = host.assignment;
    const busAssignment = record.layout === undefined ? await bus.getAssignment(a.jobId) : null;
    const job = await loadShardJob(record, a, busAssignment, dataAccess, dataCache);
    if (job.dataKept)
      host.log.info({ rows: job.data.rows }, 'job data kept from the last generation');
    // The coordinator evaluates the job from the shards' parameters at exactly the steps one
    // process would evaluate at: each shard stops there for a snapshot (@spinmesh/cluster's
    // protocol).
    const snapshotEvery = snapshotEverySteps(
      evaluationEverySteps(
        job.spec.evaluate.every ?? 1,
        job.spec.epochs,
        job.totalSteps / job.spec.epochs,
      ),
      a.checkpointEverySteps,
    );
    const tr = new ShardTrainer({
      network: job.spec.network,
      train: job.options,
      layout: job.layout,
      shard: a.shardId,
      kernels,
      data: { x: job.data.x, rows: job.data.rows },
      steps: job.totalSteps,
      // The run's settings come with the assignment (the coordinator's, from the spec).
      staleness: stalenessFromWire(a.staleness),
      tiles: job.spec.tiles,
      checkpointEvery: a.checkpointEverySteps,
      snapshotEvery,
      params: jobParameterSource(job.spec, job.data, kernels),
    });
    const shard = new TrainerShard(host, job, tr);
    if (a.restoreFromStep > 0) await shard.restore(a.restoreFromStep);
    if (host.control.aborted) return null;
    host.control.openLinks(a, host.deps, host.log);
    shard.started();
    return shard;
  },
};

/** One shard of a Boltzmann machine and its loop. */
class TrainerShard implements ShardRunner {
  readonly reports = true;
  checkpointStep = 0;
  checkpointAtMs: number | null = null;
  private baseline: ShardStats | null = null;
  /** The newest model-phase spins of each owned layer, for the bus's spin snapshot. */
  private snapshot: { step: number; blocks: Map<number, Uint8Array> } = {
    step: -1,
    blocks: new Map(),
  };
  /** The checkpoint being written in the background (checkpointInBackground); never rejects. */
  private writing: Promise<void> | null = null;
  /** The step a CheckpointAt asked for (0: none): written to the move slot, then held at. */
  private moveStep = 0;
  private moveHoldMs = 0;
  /** Why a background write failed: the loop throws it at its next turn. */
  private writeFailed: { error: unknown } | null = null;
  /** SPINMESH_DEBUG_SLOWDOWN: the event loop's figures when last counted. */
  private busyMark = performance.eventLoopUtilization();

  constructor(
    private readonly host: ShardHost,
    private readonly job: ShardJob,
    private readonly tr: ShardTrainer,
  ) {}

  get step(): number {
    return this.tr.position.applied;
  }

  get totalSteps(): number {
    return this.job.totalSteps;
  }

  /** Loaded: the counts for the metrics start here. */
  started(): void {
    this.baseline = this.tr.stats();
    this.tr.monitorNextUpdate();
  }

  take(f: SpinFrame): void {
    try {
      if (f.partialField) {
        // a view of the frame's bytes where they are aligned, else an aligned copy
        const n = f.values.length >>> 2;
        const aligned = (f.values.byteOffset & 3) === 0;
        const values = aligned
          ? new Float32Array(f.values.buffer, f.values.byteOffset, n)
          : new Float32Array(n);
        if (!aligned) new Uint8Array(values.buffer).set(f.values.subarray(0, n * 4));
        this.tr.receiveField(f.fromShard, f.step, f.phase, f.layer, values);
        return;
      }
      this.tr.receive(
        f.fromShard,
        f.step,
        f.phase,
        f.layer,
        f.packed,
        f.reads.length > 0 ? f.reads : undefined,
      );
    } catch (err) {
      if (err instanceof SpecError) throw new ServerError(Status.INVALID_ARGUMENT, err.message);
      throw err;
    }
  }

  stalenessHistogram(): number[] {
    const now = this.tr.stats().spinStaleness;
    const base = this.baseline?.spinStaleness ?? [];
    return now.map((v, d) => v - (base[d] ?? 0));
  }

  counts(): ShardCounts {
    const tr = this.tr;
    const now = tr.stats();
    const base = this.baseline;
    const since = (k: 'spinUpdates' | 'sweeps' | 'updatesApplied'): number =>
      base !== null ? now[k] - base[k] : 0;
    const u = tr.lastUpdateStats ?? null;
    tr.monitorNextUpdate();
    return {
      spinUpdates: since('spinUpdates'),
      sweeps: since('sweeps'),
      weightUpdates: since('updatesApplied'),
      staleness: now.spinStaleness.map((n, d) => n - (base?.spinStaleness[d] ?? 0)),
      update: u && {
        updateNorm: u.updateNorm,
        learningRate: u.learningRate,
        dataCorrelation: u.dataCorrelation,
        modelCorrelation: u.modelCorrelation,
      },
    };
  }

  spins(): { step: number; bytes: Buffer } | null {
    const snap = this.snapshot;
    if (snap.step < 0) return null;
    return {
      step: snap.step,
      bytes: Buffer.concat([...snap.blocks.entries()].sort((x, y) => x[0] - y[0]).map((e) => e[1])),
    };
  }

  /** Restores the checkpoint of `step` this shard left on the bus. */
  async restore(step: number): Promise<void> {
    const { bus } = this.host.deps;
    const { jobId, shardId } = this.host.assignment;
    const current = await bus.listCheckpoints(jobId);
    const slots = restoreSlots(shardId);
    const slot = slots.find((s) => current.some((c) => c.shardId === s && c.step === step));
    if (slot === undefined) {
      const have = current.filter((c) => slots.includes(c.shardId)).map((c) => c.step);
      throw new JobLoadError(
        `restore_from_step ${step}: shard ${shardId} has no checkpoint of that step on the bus ` +
          `(it has ${have.length > 0 ? have.sort((x, y) => x - y).join(', ') : 'none'})`,
      );
    }
    const c = await bus.getCheckpoint(jobId, slot);
    if (c === null || c.step !== step)
      throw new JobLoadError(
        `restore_from_step ${step}: shard ${shardId}'s checkpoint was replaced while read`,
      );
    if (isShardExport(c.data))
      throw new JobLoadError(`restore_from_step ${step}: slot ${slot} holds an export`);
    this.tr.restore(c.data);
    this.checkpointStep = step;
    this.checkpointAtMs = Date.now();
    this.host.log.info({ step, slot, bytes: c.data.length }, 'restored from checkpoint');
  }

  async run(): Promise<void> {
    try {
      await this.loop();
    } finally {
      await this.writing; // a stop's answer and the final export come after the last write
    }
    this.throwIfWriteFailed();
  }

  private async loop(): Promise<void> {
    const tr = this.tr;
    const ctl = this.host.control;
    this.busyMark = performance.eventLoopUtilization(); // the slowdown counts from here
    for (;;) {
      if (ctl.aborted) return;
      this.throwIfWriteFailed();
      const stop = ctl.stopping;
      // A stop reads checkpointStep: the checkpoint being written counts once it has landed.
      if (stop !== null) await this.writing;
      // Nothing learnt since the last checkpoint: stop here (it is the checkpoint).
      if (stop !== null && (!stop.checkpoint || this.step === this.checkpointStep)) return;
      // A stop without periodic checkpoints checkpoints the next step boundary instead.
      const boundary = stop !== null && tr.checkpointEvery === 0;
      if (boundary && tr.quiescent) {
        await this.writeCheckpoint(tr.position.step);
        return;
      }
      const seen = ctl.delivered;
      const { r, sent } = await this.slice(boundary);
      if (this.host.deps.slowdown > 1) await this.slowDown();
      this.host.report(false);
      if (ctl.aborted) return;
      switch (r.state) {
        case 'budget':
          // At a boundary with an update that still needs spins: wait for them.
          if (boundary && tr.position.stage === 0 && !tr.quiescent)
            await ctl.waitForPeers(seen, sent > 0);
          // Otherwise let frames, RPCs and timers in before the next slice.
          else await yieldNow();
          break;
        case 'waiting':
          await ctl.waitForPeers(seen, sent > 0);
          break;
        case 'checkpoint':
          await this.checkpointInBackground(
            r.step,
            tr.checkpointEvery > 0 && r.step % tr.checkpointEvery === 0,
          );
          if (r.step === this.moveStep && this.moveHoldMs > 0) {
            // The coordinator moves the job from this step: what the shard would draw past it
            // is redone in the new layout, so it leaves the core to the move (the write, the
            // re-cut) until it is reassigned, asked for a later step, or the hold runs out.
            await this.writing;
            await ctl.pause(this.moveHoldMs, () => this.moveStep !== r.step);
          }
          await yieldNow(); // let I/O in, as after any slice
          break;
        case 'done':
          await this.finish();
          return;
      }
    }
  }

  /**
   * Draws for up to SLICE_MS, a stage at a time, its spins out at once (peers wait for them);
   * at a stop's boundary, up to the boundary.
   */
  private async slice(boundary: boolean): Promise<{ r: AdvanceResult; sent: number }> {
    const tr = this.tr;
    const ctl = this.host.control;
    const P = tr.plan.stages.length;
    const t0 = performance.now();
    let r: AdvanceResult;
    let sent = 0;
    do {
      const stage = tr.position.stage;
      const t1 = performance.now();
      r = tr.advance({ stages: boundary ? (stage === 0 ? 0 : P - stage) : 1 });
      const took = performance.now() - t1;
      ctl.time.computeMs += took;
      if (ctl.woke) ctl.afterWakeMs = took;
      ctl.woke = false;
      const out = tr.outgoing();
      sent = out.length;
      await this.send(out);
      tr.recycle(out); // every frame is serialized by now
      // Frames written to a stream leave the process only when the event loop turns, so
      // computing on after a send would hold back the spins the peers are waiting for.
    } while (
      !boundary &&
      r.state === 'budget' &&
      sent === 0 &&
      !ctl.aborted &&
      performance.now() - t0 < SLICE_MS
    );
    return { r, sent };
  }

  /**
   * SPINMESH_DEBUG_SLOWDOWN: keeps the core busy for (factor - 1) x the time the process was busy
   * since the last call (the event loop's active time: drawing and updating, but also encoding,
   * sending and decoding frames and every RPC, as a slower machine would take longer for all of
   * it). It spins rather than sleeps, and right after each slice, before the slice's frames leave
   * (they go when the event loop turns): a slower core delays every stage's output by its own
   * stage's time. Sleeping instead, in timer-sized pieces (timers fire no sooner than about 1 ms,
   * a stage can take well under that), delayed only every few stages, and in lockstep the peer
   * waited out each sleep whole: the two workers' times added up instead of overlapping, so no
   * layout could make the pair faster. A debt over SLOW_SPIN_MS (a large factor) is slept off, so
   * that heartbeats and RPCs are still answered; timers are accurate enough at that length.
   */
  private async slowDown(): Promise<void> {
    const now = performance.eventLoopUtilization();
    const owed = (this.host.deps.slowdown - 1) * (now.active - this.busyMark.active);
    if (owed > SLOW_SPIN_MS) await sleep(owed);
    else {
      const until = performance.now() + owed;
      while (performance.now() < until) {
        // a slower core: busy, not idle
      }
    }
    this.busyMark = performance.eventLoopUtilization(); // the spin is not owed again
  }

  private async send(msgs: SpinMessage[]): Promise<void> {
    for (const m of msgs) {
      if (m.values === undefined && this.tr.plan.stages[m.stage]!.phase === 'negative')
        this.noteSpins(m);
      const block = this.blockOf(m);
      for (const to of m.to) if (!(await this.sendTo(to, block))) return;
    }
  }

  /**
   * The block of a message: spins are the sender's units of the layer; a partial field (owned
   * tiles, one recipient) is for the recipient's units.
   */
  private blockOf(m: SpinMessage): SpinBlock {
    const field = m.values !== undefined;
    const shard = field ? m.to[0]! : this.host.assignment.shardId;
    const layer = this.job.spec.network.layers[m.layer]!.name;
    const range = this.job.layout[shard]?.[layer];
    if (range === undefined)
      throw new JobLoadError(`shard ${shard} owns no units of layer ${layer} to send`);
    const v = m.values;
    return {
      step: m.step,
      phase: m.stage,
      layer: m.layer,
      unitStart: range[0],
      unitCount: range[1] - range[0],
      chains: m.rows,
      ...(v
        ? { values: new Uint8Array(v.buffer, v.byteOffset, v.byteLength), partialField: true }
        : { packed: m.packed, reads: m.reads }),
    };
  }

  /**
   * Sends one block to one peer. False when the peer works under a newer generation: this run
   * is over, and the caller stops sending.
   */
  private async sendTo(to: number, block: SpinBlock): Promise<boolean> {
    const ctl = this.host.control;
    const link = ctl.links.get(to);
    if (link === undefined)
      throw new JobLoadError(
        `shard ${this.host.assignment.shardId} sends spins of layer ` +
          `${this.job.spec.network.layers[block.layer]!.name} to shard ${to}, ` +
          'which the assignment does not list among its peers',
      );
    try {
      await link.send(block);
      return true;
    } catch (err) {
      if (ctl.aborted) return false;
      if (err instanceof PeerLinkError && err.code === Status.FAILED_PRECONDITION) {
        // The peer works under a newer generation (or another job): this one is over, and
        // the coordinator's next Assign replaces it. Wait for that.
        this.host.log.warn(
          { peer: to, err: err.message },
          'peer refused our spins: waiting for reassignment',
        );
        while (!ctl.ending) await ctl.waitFrames(ctl.delivered);
        return false;
      }
      throw err;
    }
  }

  private noteSpins(m: SpinMessage): void {
    const s = this.snapshot;
    if (m.step > s.step) {
      s.step = m.step;
      s.blocks.clear();
    }
    // by layer, then row group (rowGroups <= 64): each group's newest rows
    if (m.step === s.step)
      s.blocks.set(m.layer * 64 + this.tr.plan.stages[m.stage]!.group, m.packed);
  }

  /**
   * Takes the checkpoint of `step` (the shard may then draw on) and writes it to the bus in the
   * background. A write is a few MB and two or three round trips to the bus, 10-70 ms on one
   * machine with an embedded bus; with the bus across a network the transfer alone is tens of
   * ms, which the shard, and in lockstep its peers, would otherwise wait out (what the bus's
   * own CPU costs on a shared machine this does not save). One write at a time, in step order
   * (the slots alternate by step): a checkpoint due while the last is still being written
   * waits for it. A failed write fails the run at the loop's next turn, as a synchronous one did.
   */
  private async checkpointInBackground(step: number, periodic: boolean): Promise<void> {
    await this.writing;
    this.throwIfWriteFailed();
    const bytes = this.tr.checkpoint();
    this.writing = this.store(step, bytes, periodic).then(
      () => {
        this.writing = null;
      },
      (error: unknown) => {
        this.writing = null;
        this.writeFailed ??= { error };
      },
    );
  }

  private throwIfWriteFailed(): void {
    if (this.writeFailed) throw this.writeFailed.error;
  }

  /** Takes and writes the checkpoint of `step`, returning once it is on the bus. */
  private async writeCheckpoint(step: number): Promise<void> {
    await this.writing;
    this.throwIfWriteFailed();
    await this.store(step, this.tr.checkpoint(), true);
  }

  /**
   * Writes the checkpoint `bytes` of `step`: to the checkpoint slots when `periodic` (or at a
   * stop's boundary), and to the snapshot slot when the step is one of the snapshot steps.
   */
  private async store(step: number, bytes: Uint8Array, periodic: boolean): Promise<void> {
    const tr = this.tr;
    const { bus } = this.host.deps;
    const { jobId, shardId, generation } = this.host.assignment;
    const log = this.host.log;
    if (tr.snapshotEvery > 0 && step % tr.snapshotEvery === 0) {
      // Refused only when the slot holds a later step, left by a run that a rollback abandoned.
      const ok = await bus.putCheckpoint(jobId, snapshotSlot(shardId), step, bytes, generation);
      log.debug({ step, bytes: bytes.length, ok }, 'evaluation snapshot written');
    }
    if (step === this.moveStep) {
      // Refused only when the slot holds a later step of a run a rollback abandoned: then the
      // coordinator does not find this step there and moves the job later.
      const ok = await bus.putCheckpoint(jobId, moveSlot(shardId), step, bytes, generation);
      log.info({ step, bytes: bytes.length, ok }, 'checkpoint for a move written');
      if (ok) this.wrote(step);
    }
    if (!periodic) return;
    const slot = slotFor(shardId, step, await bus.listCheckpoints(jobId));
    // Tagged with this run's generation: after a rollback, a checkpoint of a later step left by
    // the abandoned run is told apart from this one's (commonCheckpointStep).
    const ok = await bus.putCheckpoint(jobId, slot, step, bytes, generation);
    if (!ok) {
      log.warn({ step, slot }, 'checkpoint refused: its slot holds a later step');
      return;
    }
    this.wrote(step);
    log.debug({ step, slot, bytes: bytes.length }, 'checkpoint written');
    await this.host.event(ShardEvents.checkpoint, { step, slot, bytes: bytes.length });
  }

  private wrote(step: number): void {
    this.checkpointStep = step;
    this.checkpointAtMs = Date.now();
  }

  /** A checkpoint of step boundary `step` for a move (WorkerControl.CheckpointAt). */
  checkpointAt(step: number, holdMs: number): boolean {
    if (!this.tr.requestCheckpoint(step)) return false;
    this.moveStep = step;
    this.moveHoldMs = holdMs;
    return true;
  }

  private async finish(): Promise<void> {
    await this.writing;
    this.throwIfWriteFailed();
    const { bus } = this.host.deps;
    const { jobId, shardId, generation } = this.host.assignment;
    const step = this.tr.position.applied;
    const bytes = encodeShardExport(this.tr.exportBlocks());
    const slot = exportSlot(shardId);
    await bus.putCheckpoint(jobId, slot, step, bytes, generation);
    this.host.markDone();
    this.host.report(true);
    this.host.log.info({ step, slot, bytes: bytes.length }, 'shard done: final export written');
    await this.host.event(ShardEvents.done, { step, slot, bytes: bytes.length });
  }
}
