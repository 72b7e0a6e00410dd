// One generation of one shard on this worker: loads the job and the shard's parameters (fresh,
// or from a checkpoint on the bus), connects to the peers, and runs the sampling loop: draw as
// far as the received spins allow, send the new spins, wait for the next frame when blocked,
// checkpoint at every multiple of checkpoint_every_steps, report progress, and write the
// shard's final export when the job's steps are done.
import { setImmediate as yieldNow, setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { BusError, JobNotFoundError, StaleWriterError, type Bus } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import {
  DyBMShard,
  FormatError,
  SpecError,
  ShardTrainer,
  createSequenceModel,
  episodeLength,
  loadSequences,
  sequenceJobFrames,
  validateSequenceJob,
  type DataAccess,
  type FrameSequence,
  type SequenceJobSpec,
  type AdvanceResult,
  type ShardStats,
  type SpinMessage,
} from '@spinmesh/model';
import {
  ServerError,
  stalenessFromWire,
  type PeerCounters,
  type ShardAssignment,
  type SpinFrame,
  type StalenessSummary,
} from '@spinmesh/proto';
import type { ShardSample, WorkerMetrics } from '@spinmesh/telemetry';
import {
  ShardEvents,
  checkpointSlots,
  encodeShardExport,
  evaluationEverySteps,
  exportSlot,
  isShardExport,
  slotFor,
  snapshotEverySteps,
  snapshotSlot,
  type StoredJob,
} from '@spinmesh/cluster';

import { JobLoadError, jobParameterSource, loadShardJob, type ShardJob } from './job.js';
import type { Logger } from './log.js';
import { PeerLink, PeerLinkError, type PeerServer, type SpinBlock } from './peers.js';

const Status = grpc.status;

/** Longest stretch of drawing between two looks at the event loop (frames, RPCs, timers), ms. */
const SLICE_MS = 5;
/** SPINMESH_DEBUG_SLOWDOWN sleeps in pieces of at least this many ms (timer resolution). */
const SLOW_QUANTUM_MS = 2;
/** Frames sent before a wait go out first when the computation after the wait lasts longer. */
const FLUSH_BEFORE_MS = 0.25;

export type RunState = 'loading' | 'running' | 'stopping' | 'done' | 'failed' | 'stopped';

/** What a run needs from its worker. */
export interface RunDeps {
  workerId: string;
  bus: Bus;
  kernels: Kernels;
  log: Logger;
  peerServer: PeerServer;
  secret: string | null;
  /** Credentials of the links to the peers (TLS). */
  peerCredentials: grpc.ChannelCredentials;
  /** How links reach peers' framed streams (TLS trusting ca, or not); null: gRPC only. */
  peerStream: { tls: { ca?: Buffer } | null } | null;
  /** SPINMESH_DEBUG_SLOWDOWN. */
  slowdown: number;
  /** Longest graceful stop, in ms. */
  drainMs: number;
  /** Least time between two progress reports, in ms. */
  progressMs: number;
  /** The files job data may be read from. */
  dataAccess: DataAccess;
  /** Takes the shard's figures with every progress report. */
  metrics?: WorkerMetrics;
}

/** What Stop answers. */
export interface StopResult {
  step: number;
  checkpointStep: number;
}

/** One shard of one job under one assignment generation. */
export class ShardRun {
  readonly jobId: string;
  readonly generation: number;
  readonly shardId: number;
  readonly assignment: ShardAssignment;
  private runState: RunState = 'loading';
  private failure = '';
  private trainer: ShardTrainer | null = null;
  /** A sequence job's shard (rule 'stdp'), instead of a trainer. */
  private seq: SequenceShard | null = null;
  private job: ShardJob | null = null;
  private readonly deps: RunDeps;
  private readonly log: Logger;
  private readonly links = new Map<number, PeerLink>();
  /** Frames that arrived before the trainer was built. */
  private early: SpinFrame[] = [];
  /** Frames handed to the trainer so far; the loop waits for this to change. */
  private delivered = 0;
  /** The loop woke from waitForPeers; the computation that followed took afterWakeMs. */
  private woke = false;
  private afterWakeMs = Infinity;
  /** Milliseconds (performance.now) for timing(). */
  private readonly time = { startedAt: NaN, endedAt: NaN, computeMs: 0, waitMs: 0 };
  /** SPINMESH_DEBUG_SLOWDOWN: ms of sleep owed, and the event loop's figures when last counted. */
  private slowDebt = 0;
  private busyMark = performance.eventLoopUtilization();
  private wakers: (() => void)[] = [];
  private aborted = false;
  private stopping: { checkpoint: boolean } | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private lastCheckpoint = 0;
  /** When the newest checkpoint was written or restored (ms since the epoch). */
  private checkpointAtMs: number | null = null;
  private lastReport = 0;
  private reporting = false;
  private baseline: ShardStats | null = null;
  /** The newest model-phase spins of each owned layer, for the bus's spin snapshot. */
  private snapshot: { step: number; blocks: Map<number, Uint8Array> } = {
    step: -1,
    blocks: new Map(),
  };
  private main: Promise<void> = Promise.resolve();
  private stopResult: Promise<StopResult> | null = null;

  constructor(assignment: ShardAssignment, deps: RunDeps) {
    this.assignment = assignment;
    this.jobId = assignment.jobId;
    this.generation = assignment.generation;
    this.shardId = assignment.shardId;
    this.deps = deps;
    this.log = deps.log.child({
      job: assignment.jobId,
      shard: assignment.shardId,
      generation: assignment.generation,
    });
  }

  get state(): RunState {
    return this.runState;
  }

  get error(): string {
    return this.failure;
  }

  /** Updates applied so far (the last step completed). */
  get step(): number {
    return this.seq?.done ?? this.trainer?.position.applied ?? 0;
  }

  get totalSteps(): number {
    return this.seq?.total ?? this.job?.totalSteps ?? 0;
  }

  get checkpointStep(): number {
    return this.lastCheckpoint;
  }

  /** Starts loading and then the loop, in the background. */
  start(): void {
    this.main = this.execute();
  }

  /** A frame of this run's job and generation (PeerServer checked both). */
  onFrame(frame: SpinFrame): void {
    if (this.seq !== null) {
      this.seq.take(frame);
      this.delivered++;
      this.wake();
      return;
    }
    if (this.trainer === null) {
      if (this.runState === 'loading') this.early.push(frame);
      return;
    }
    this.deliver(this.trainer, frame);
  }

  private deliver(tr: ShardTrainer, f: SpinFrame): void {
    try {
      tr.receive(
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
    this.delivered++;
    this.wake();
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  // --- life cycle -------------------------------------------------------------------------------

  private async execute(): Promise<void> {
    try {
      await this.load();
      if (this.aborted) return;
      this.runState = 'running';
      this.log.info(
        { step: this.step, totalSteps: this.totalSteps, peers: this.links.size },
        'shard running',
      );
      this.time.startedAt = performance.now();
      if (this.seq !== null) await this.sequenceLoop(this.seq);
      else await this.loop();
    } catch (err) {
      if (this.aborted) return;
      if (err instanceof StaleWriterError) await this.replaced(err);
      else await this.fail(err);
    } finally {
      if (!Number.isNaN(this.time.startedAt)) this.time.endedAt = performance.now();
    }
  }

  private async load(): Promise<void> {
    const { bus, kernels } = this.deps;
    const a = this.assignment;
    // Typed as the coordinator writes it; the spec and layout are validated again on loading.
    const record: StoredJob | null = await bus.getJob(a.jobId);
    if (record === null) throw new JobLoadError(`job '${a.jobId}' is not on the bus`);
    if (record.sequence !== undefined) {
      await this.loadSequence(record.sequence, a);
      return;
    }
    const busAssignment = record.layout === undefined ? await bus.getAssignment(a.jobId) : null;
    const job = await loadShardJob(record, a, busAssignment, this.deps.dataAccess);
    // The coordinator evaluates the job from the shards' parameters at exactly the steps one
    // process would evaluate at: each shard stops there for a snapshot (@spinmesh/cluster's protocol).
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
      train: { statistics: 'samples', ...job.spec.train },
      layout: job.layout,
      shard: a.shardId,
      kernels,
      data: { x: job.data.x, rows: job.data.rows },
      steps: job.totalSteps,
      staleness: stalenessFromWire(a.staleness),
      checkpointEvery: a.checkpointEverySteps,
      snapshotEvery,
      params: jobParameterSource(job.spec, job.data, kernels),
    });
    if (a.restoreFromStep > 0) await this.restore(tr, a.restoreFromStep);
    if (this.aborted) return;
    this.openLinks(a);
    this.job = job;
    this.baseline = tr.stats();
    this.trainer = tr;
    tr.monitorNextUpdate();
    this.lastReport = Date.now();
    const early = this.early;
    this.early = [];
    for (const f of early) {
      try {
        this.deliver(tr, f);
      } catch (err) {
        // Acknowledged already, so the sender cannot be told: drop it, say so.
        this.log.warn({ peer: f.fromShard, err: String(err) }, 'dropped a malformed early frame');
      }
    }
  }

  /** A link to every peer of the assignment. */
  private openLinks(a: ShardAssignment): void {
    for (const p of a.peers) {
      const link = new PeerLink({
        address: p.address,
        jobId: a.jobId,
        generation: a.generation,
        fromShard: a.shardId,
        maxBackoffMs: 1000,
        credentials: this.deps.peerCredentials,
        transport: this.deps.peerStream !== null ? 'stream' : 'grpc',
        streamTls: this.deps.peerStream?.tls ?? null,
        ...(this.deps.secret !== null ? { secret: this.deps.secret } : {}),
      });
      // Which transport carries the link (the framed stream, or gRPC where the peer has none).
      link.once('connect', () =>
        this.log.info({ peer: p.shardId, address: p.address, via: link.via }, 'peer link open'),
      );
      link.on('fail', (err) => {
        if (!this.aborted)
          this.log.warn(
            { peer: p.shardId, address: p.address, err: err.message },
            'peer link failed',
          );
      });
      this.links.set(p.shardId, link);
    }
  }

  /** A sequence job's shard: its DyBM units, links to every other shard, no checkpoints. */
  private async loadSequence(raw: unknown, a: ShardAssignment): Promise<void> {
    const spec = validateSequenceJob(raw);
    if (a.restoreFromStep > 0)
      throw new JobLoadError('a sequence job has no checkpoints: restore_from_step must be 0');
    const r = a.units[0];
    if (a.units.length !== 1 || r === undefined || r.layer !== 0)
      throw new JobLoadError('a sequence job shard owns one range of units of layer 0');
    const seqs = await loadSequences(spec, this.deps.dataAccess);
    const units = Array.from({ length: r.end - r.start }, (_, k) => r.start + k);
    const shard = new DyBMShard(createSequenceModel(spec), units);
    this.openLinks(a);
    const peers = new Map(
      a.peers.map((p) => {
        const u = p.units[0];
        if (p.units.length !== 1 || u === undefined)
          throw new JobLoadError(`peer shard ${p.shardId} must own one range of units`);
        return [p.shardId, u] as const;
      }),
    );
    const q = new SequenceShard(spec, seqs, shard, r.start, peers);
    this.seq = q;
    // Frames that came while loading (a peer may start first): acknowledged, so keep them.
    const early = this.early;
    this.early = [];
    for (const f of early) {
      try {
        q.take(f);
        this.delivered++;
      } catch (err) {
        this.log.warn({ peer: f.fromShard, err: String(err) }, 'dropped a malformed early frame');
      }
    }
  }

  /**
   * The sequence loop: every frame of every episode, own units observed from the data, spikes
   * sent to every peer, peers' spikes used once the staleness allows (what arrived later than
   * that is waited for), then the local learning rule. Finally the shard's parameters go to its
   * export slot.
   */
  private async sequenceLoop(q: SequenceShard): Promise<void> {
    const cue = q.spec.evaluate.cue;
    const s = q.spec.staleness;
    let g = 0;
    for (let round = 0; round < q.spec.epochs; round++) {
      for (const seq of q.seqs) {
        const L = episodeLength(seq, cue);
        q.shard.reset();
        q.episodeStart = g;
        for (let t = 0; t < L; t++, g++) {
          if (this.aborted || this.stopping !== null) return;
          let t0 = performance.now();
          q.shard.predict();
          const x = q.ownFrame(seq, t % seq.steps);
          q.shard.observe(x);
          this.time.computeMs += performance.now() - t0;
          await this.sendSequence(q, g, x);
          // Every peer's spikes up to g - s must be in; newer ones are used if they are.
          while (!q.ready(g - s)) {
            await this.waitForPeers(this.delivered, false);
            if (this.aborted || this.stopping !== null) return;
          }
          t0 = performance.now();
          q.noteLead(g);
          q.deliver(g);
          q.shard.learn();
          q.shard.advance();
          this.time.computeMs += performance.now() - t0;
          q.done = g + 1;
          if ((g & 255) === 255) {
            this.report(false);
            await yieldNow();
          }
        }
      }
    }
    const bytes = Buffer.from(JSON.stringify(q.exportModel().toJSON()));
    const slot = exportSlot(this.shardId);
    const st = this.staleness();
    // The event first: the export completes the job, and a watcher's stream ends there.
    await this.event(ShardEvents.done, {
      step: q.total,
      slot,
      bytes: bytes.length,
      staleness: { count: st.count, sumSteps: st.sumSteps, maxSteps: st.maxSteps },
    });
    await this.deps.bus.putCheckpoint(this.jobId, slot, q.total, bytes, this.generation);
    this.runState = 'done';
    this.log.info(
      { step: q.total, slot, bytes: bytes.length, staleness: st.maxSteps },
      'sequence shard done: export written',
    );
  }

  private async sendSequence(q: SequenceShard, g: number, x: Float64Array): Promise<void> {
    const packed = new Uint8Array(Math.ceil(x.length / 8));
    x.forEach((v, k) => {
      if (v !== 0) packed[k >> 3]! |= 1 << (k & 7);
    });
    const block: SpinBlock = {
      step: g,
      phase: 0,
      layer: 0,
      unitStart: q.unitStart,
      unitCount: x.length,
      chains: 1,
      packed,
    };
    for (const link of this.links.values()) await link.send(block);
  }

  private async restore(tr: ShardTrainer, step: number): Promise<void> {
    const { bus } = this.deps;
    const current = await bus.listCheckpoints(this.jobId);
    const slots = checkpointSlots(this.shardId);
    const slot = slots.find((s) => current.some((c) => c.shardId === s && c.step === step));
    if (slot === undefined) {
      const have = current.filter((c) => slots.includes(c.shardId)).map((c) => c.step);
      throw new JobLoadError(
        `restore_from_step ${step}: shard ${this.shardId} has no checkpoint of that step on the bus ` +
          `(it has ${have.length > 0 ? have.sort((x, y) => x - y).join(', ') : 'none'})`,
      );
    }
    const c = await bus.getCheckpoint(this.jobId, slot);
    if (c === null || c.step !== step)
      throw new JobLoadError(
        `restore_from_step ${step}: shard ${this.shardId}'s checkpoint was replaced while read`,
      );
    if (isShardExport(c.data))
      throw new JobLoadError(`restore_from_step ${step}: slot ${slot} holds an export`);
    tr.restore(c.data);
    this.lastCheckpoint = step;
    this.checkpointAtMs = Date.now();
    this.log.info({ step, slot, bytes: c.data.length }, 'restored from checkpoint');
  }

  private async loop(): Promise<void> {
    const tr = this.trainer!;
    const P = tr.plan.stages.length;
    this.busyMark = performance.eventLoopUtilization(); // the slowdown counts from here
    for (;;) {
      if (this.aborted) return;
      const stop = this.stopping;
      // Nothing learnt since the last checkpoint: stop here (it is the checkpoint).
      if (stop !== null && (!stop.checkpoint || this.step === this.lastCheckpoint)) return;
      // A stop without periodic checkpoints checkpoints the next step boundary instead.
      const boundary = stop !== null && tr.checkpointEvery === 0;
      if (boundary && tr.quiescent) {
        await this.writeCheckpoint(tr, tr.position.step);
        return;
      }
      const seen = this.delivered;
      const t0 = performance.now();
      let r: AdvanceResult;
      let sent = 0;
      do {
        // A stage at a time, its spins out at once: peers wait for them.
        const stage = tr.position.stage;
        const t1 = performance.now();
        r = tr.advance({ stages: boundary ? (stage === 0 ? 0 : P - stage) : 1 });
        const took = performance.now() - t1;
        this.time.computeMs += took;
        if (this.woke) this.afterWakeMs = took;
        this.woke = false;
        const out = tr.outgoing();
        sent = out.length;
        await this.send(out);
        // Frames written to a stream leave the process only when the event loop turns, so
        // computing on after a send would hold back the spins the peers are waiting for.
      } while (
        !boundary &&
        r.state === 'budget' &&
        sent === 0 &&
        !this.aborted &&
        performance.now() - t0 < SLICE_MS
      );
      if (this.deps.slowdown > 1) await this.slowDown();
      this.report(false);
      if (this.aborted) return;
      switch (r.state) {
        case 'budget':
          // At a boundary with an update that still needs spins: wait for them.
          if (boundary && tr.position.stage === 0 && !tr.quiescent)
            await this.waitForPeers(seen, sent > 0);
          // Otherwise let frames, RPCs and timers in before the next slice.
          else await yieldNow();
          break;
        case 'waiting':
          await this.waitForPeers(seen, sent > 0);
          break;
        case 'checkpoint':
          await this.writeCheckpoint(
            tr,
            r.step,
            tr.checkpointEvery > 0 && r.step % tr.checkpointEvery === 0,
          );
          // An in-process bus answers in microtasks: let I/O in, as after any slice.
          await yieldNow();
          break;
        case 'done':
          await this.finishJob(tr);
          return;
      }
    }
  }

  /**
   * SPINMESH_DEBUG_SLOWDOWN: owes (factor - 1) x the time the process was busy since the last
   * call (the event loop's active time: drawing and updating, but also encoding, sending and
   * decoding frames and every RPC, as a slower machine would take longer for all of it) and
   * sleeps once the debt reaches SLOW_QUANTUM_MS, counting what it actually slept. Timers fire
   * no sooner than about 1 ms, so sleeping after every slice (often well under 1 ms of work)
   * would slow the worker far more than the factor; on average it runs `factor` times slower.
   */
  private async slowDown(): Promise<void> {
    const now = performance.eventLoopUtilization();
    this.slowDebt += (this.deps.slowdown - 1) * (now.active - this.busyMark.active);
    this.busyMark = now;
    if (this.slowDebt < SLOW_QUANTUM_MS) return;
    const t = performance.now();
    await sleep(this.slowDebt);
    this.slowDebt -= performance.now() - t;
  }

  /**
   * waitFrames, its time counted as waiting for peers (timing()). `sent`: frames were sent just
   * before. They leave the process only when the event loop gets to HTTP/2's writes, in its
   * check phase; a peer's frame arriving first (poll phase) would wake us to compute (a whole
   * update, at the end of a step) with our frames still inside, and the peer would wait for that
   * too. So when what we compute after waking takes long (the last time: afterWakeMs), a turn of
   * the loop (some 30 us) lets them out first (2 workers, dense 2048-2048 RBM: the waiting per
   * step halves and a step takes 7 % less); on a small network it would cost more than it saves.
   */
  private async waitForPeers(seen: number, sent: boolean): Promise<void> {
    if (sent && this.afterWakeMs > FLUSH_BEFORE_MS) await yieldNow();
    const t = performance.now();
    await this.waitFrames(seen);
    this.time.waitMs += performance.now() - t;
    this.woke = true;
  }

  /** Resolves once a frame was delivered after `seen`, or the run is told to end. */
  private async waitFrames(seen: number): Promise<void> {
    if (this.delivered !== seen || this.aborted) return;
    await new Promise<void>((resolve) => this.wakers.push(resolve));
  }

  private async send(msgs: SpinMessage[]): Promise<void> {
    if (msgs.length === 0) return;
    const tr = this.trainer!;
    const job = this.job!;
    const own = job.layout[this.shardId]!;
    const names = job.spec.network.layers.map((l) => l.name);
    for (const m of msgs) {
      const stage = tr.plan.stages[m.stage]!;
      const range = own[names[m.layer]!]!;
      const rows =
        stage.phase === 'positive' || tr.options.negative === 'cd'
          ? batchRows(m.step, tr.options.batchSize, tr.stepsPerEpoch, job.data.rows)
          : tr.options.chains;
      if (stage.phase === 'negative') this.noteSpins(m);
      const block: SpinBlock = {
        step: m.step,
        phase: m.stage,
        layer: m.layer,
        unitStart: range[0],
        unitCount: range[1] - range[0],
        chains: rows,
        packed: m.packed,
        reads: m.reads,
      };
      for (const to of m.to) {
        const link = this.links.get(to);
        if (link === undefined)
          throw new JobLoadError(
            `shard ${this.shardId} sends spins of layer ${names[m.layer]} to shard ${to}, ` +
              'which the assignment does not list among its peers',
          );
        try {
          await link.send(block);
        } catch (err) {
          if (this.aborted) return;
          if (err instanceof PeerLinkError && err.code === Status.FAILED_PRECONDITION) {
            // The peer works under a newer generation (or another job): this one is over, and
            // the coordinator's next Assign replaces it. Wait for that.
            this.log.warn(
              { peer: to, err: err.message },
              'peer refused our spins: waiting for reassignment',
            );
            while (!this.aborted && this.stopping === null) await this.waitFrames(this.delivered);
            return;
          }
          throw err;
        }
      }
    }
  }

  private noteSpins(m: SpinMessage): void {
    const s = this.snapshot;
    if (m.step > s.step) {
      s.step = m.step;
      s.blocks.clear();
    }
    if (m.step === s.step) s.blocks.set(m.layer, m.packed);
  }

  /**
   * Writes the trainer's checkpoint of `step`: to the checkpoint slots when `periodic` (or at a
   * stop's boundary), and to the snapshot slot when the step is one of the snapshot steps.
   */
  private async writeCheckpoint(tr: ShardTrainer, step: number, periodic = true): Promise<void> {
    const { bus } = this.deps;
    const bytes = tr.checkpoint();
    if (tr.snapshotEvery > 0 && step % tr.snapshotEvery === 0) {
      // Refused only when the slot holds a later step, left by a run that a rollback abandoned.
      const ok = await bus.putCheckpoint(
        this.jobId,
        snapshotSlot(this.shardId),
        step,
        bytes,
        this.generation,
      );
      this.log.debug({ step, bytes: bytes.length, ok }, 'evaluation snapshot written');
    }
    if (!periodic) return;
    const slot = slotFor(this.shardId, step, await bus.listCheckpoints(this.jobId));
    // Tagged with this run's generation: after a rollback, a checkpoint of a later step left by
    // the abandoned run is told apart from this one's (commonCheckpointStep).
    const ok = await bus.putCheckpoint(this.jobId, slot, step, bytes, this.generation);
    if (!ok) {
      this.log.warn({ step, slot }, 'checkpoint refused: its slot holds a later step');
      return;
    }
    this.lastCheckpoint = step;
    this.checkpointAtMs = Date.now();
    this.log.debug({ step, slot, bytes: bytes.length }, 'checkpoint written');
    await this.event(ShardEvents.checkpoint, { step, slot, bytes: bytes.length });
  }

  private async finishJob(tr: ShardTrainer): Promise<void> {
    const { bus } = this.deps;
    const step = tr.position.applied;
    const bytes = encodeShardExport(tr.exportBlocks());
    const slot = exportSlot(this.shardId);
    await bus.putCheckpoint(this.jobId, slot, step, bytes, this.generation);
    this.runState = 'done';
    this.report(true);
    this.log.info({ step, slot, bytes: bytes.length }, 'shard done: final export written');
    await this.event(ShardEvents.done, { step, slot, bytes: bytes.length });
  }

  private async fail(err: unknown): Promise<void> {
    const known =
      err instanceof JobLoadError ||
      err instanceof SpecError ||
      err instanceof FormatError ||
      err instanceof BusError;
    this.failure = known ? (err as Error).message : `internal error: ${String(err)}`;
    this.runState = 'failed';
    this.log.error({ err: known ? this.failure : err }, 'shard failed');
    this.wake();
    await this.closeLinks(0);
    await this.event(ShardEvents.failed, { error: this.failure }).catch(() => {});
  }

  /**
   * The bus refused a checkpoint or export of this run: the job's assignment has a newer
   * generation, so the coordinator has replaced this run (it took this worker for dead, or a
   * rollback is on its way here). Not a failure of the job, which goes on under the new
   * generation: the run ends, writing nothing more.
   */
  private async replaced(err: StaleWriterError): Promise<void> {
    this.log.warn(
      { step: this.step, current: err.currentGeneration },
      'a newer generation replaced this run (the bus refused its checkpoint): stopping',
    );
    this.aborted = true;
    this.runState = 'stopped';
    this.wake();
    await this.closeLinks(0);
  }

  /** Appends one of this shard's events to the job's stream. */
  private async event(type: string, fields: Record<string, unknown>): Promise<void> {
    await this.deps.bus.appendEvent(this.jobId, {
      type,
      at: Date.now(),
      worker: this.deps.workerId,
      shard: this.shardId,
      generation: this.generation,
      ...fields,
    });
  }

  /** Progress event and spin snapshot, at most every progressMs (or now, when forced). */
  private report(force: boolean): void {
    const now = Date.now();
    if (this.reporting || (!force && now - this.lastReport < this.deps.progressMs)) return;
    const tr = this.trainer;
    if (tr === null) return;
    this.lastReport = now;
    this.deps.metrics?.observeShard(this, this.metricsSample());
    this.reporting = true;
    const step = tr.position.applied;
    const s = this.counters();
    const snap = this.snapshot;
    const spins =
      snap.step >= 0
        ? Buffer.concat([...snap.blocks.entries()].sort((x, y) => x[0] - y[0]).map((e) => e[1]))
        : null;
    const work = async (): Promise<void> => {
      await this.event(ShardEvents.progress, {
        step,
        totalSteps: this.totalSteps,
        checkpointStep: this.lastCheckpoint,
        staleness: {
          count: s.staleness.count,
          sumSteps: s.staleness.sumSteps,
          maxSteps: s.staleness.maxSteps,
        },
        bytesSent: s.bytesSent,
        bytesReceived: s.bytesReceived,
        framesSent: s.framesSent,
        framesReceived: s.framesReceived,
      });
      if (spins !== null) await this.deps.bus.putSpins(this.jobId, this.shardId, snap.step, spins);
    };
    void work()
      .catch((err: unknown) => {
        if (err instanceof JobNotFoundError && !this.aborted) {
          this.log.warn('job deleted from the bus: stopping the shard');
          this.aborted = true;
          this.failure = 'the job was deleted';
          this.runState = 'failed';
          this.wake();
          void this.closeLinks(0);
        } else if (!this.aborted) {
          this.log.warn({ err: String(err) }, 'progress report failed');
        }
      })
      .finally(() => {
        this.reporting = false;
      });
  }

  // --- stopping ---------------------------------------------------------------------------------

  /**
   * Ends the run at once (a newer generation replaces it, or the worker stops it without a
   * checkpoint): no checkpoint, links closed, frames in flight dropped.
   */
  async abort(): Promise<void> {
    if (this.aborted) {
      await this.main;
      return;
    }
    this.aborted = true;
    this.clearDrain();
    this.wake();
    await this.closeLinks(0);
    await this.main;
    if (this.runState !== 'failed') this.runState = 'stopped';
  }

  /**
   * Stops the run. With `checkpoint`, it goes on to the next checkpoint step (the next multiple
   * of checkpoint_every_steps, so that every shard has that step; the next step boundary when
   * there are no periodic checkpoints), writes it and delivers its last spins to its peers,
   * within `drainMs` (past it, it stops where it is, keeping its last checkpoint). Right after a
   * checkpoint it stops at once. Without, it stops at once.
   */
  stop(checkpoint: boolean, drainMs = this.deps.drainMs): Promise<StopResult> {
    this.stopResult ??= this.doStop(checkpoint, drainMs);
    return this.stopResult;
  }

  private async doStop(checkpoint: boolean, drainMs: number): Promise<StopResult> {
    const wasDone = this.runState === 'done';
    const live = this.runState === 'running' || wasDone;
    if (!checkpoint || !live) {
      await this.abort();
      return this.stopped(checkpoint);
    }
    const until = Date.now() + drainMs;
    this.runState = 'stopping';
    this.stopping = { checkpoint: true };
    this.drainTimer = setTimeout(() => {
      this.log.warn({ drainMs }, 'stop: drain time is up, stopping where the shard is');
      this.aborted = true;
      this.wake();
      void this.closeLinks(0);
    }, drainMs);
    this.wake();
    await this.main;
    // Deliver what the peers still need of our spins, in the time left.
    await this.closeLinks(Math.max(0, until - Date.now()));
    this.clearDrain();
    this.aborted = true;
    // (The loop may have failed meanwhile.)
    if ((this.runState as RunState) !== 'failed') this.runState = 'stopped';
    return this.stopped(checkpoint);
  }

  private async stopped(checkpoint: boolean): Promise<StopResult> {
    const res = { step: this.step, checkpointStep: checkpoint ? this.lastCheckpoint : 0 };
    this.log.info(res, 'shard stopped');
    await this.event(ShardEvents.stopped, res).catch(() => {});
    return res;
  }

  private clearDrain(): void {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
  }

  /** Flushes the links for up to `graceMs` (0: not at all), then closes them. */
  private async closeLinks(graceMs: number): Promise<void> {
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

  // --- status -----------------------------------------------------------------------------------

  /**
   * Where the shard's time went since its loop started (0 before): in the trainer, waiting for
   * peers' spins with nothing else to do, and in all, to the loop's end (WorkerStatus).
   */
  timing(): { computeSeconds: number; waitSeconds: number; runSeconds: number } {
    const t = this.time;
    const end = Number.isNaN(t.endedAt) ? performance.now() : t.endedAt;
    return {
      computeSeconds: t.computeMs / 1000,
      waitSeconds: t.waitMs / 1000,
      runSeconds: Number.isNaN(t.startedAt) ? 0 : (end - t.startedAt) / 1000,
    };
  }

  /** Traffic and staleness since the assignment. */
  counters(): {
    staleness: StalenessSummary;
    bytesSent: number;
    bytesReceived: number;
    framesSent: number;
    framesReceived: number;
    peers: PeerCounters[];
  } {
    const received = this.deps.peerServer.senderStats();
    const peers: PeerCounters[] = this.assignment.peers.map((p) => {
      const l = this.links.get(p.shardId);
      const r = received.get(p.shardId);
      return {
        shardId: p.shardId,
        address: p.address,
        connected: l?.state === 'open',
        bytesSent: l?.stats.bytesSent ?? 0,
        framesSent: l?.stats.framesSent ?? 0,
        framesResent: l?.stats.framesResent ?? 0,
        reconnects: l?.stats.reconnects ?? 0,
        bytesReceived: r?.bytesReceived ?? 0,
        framesReceived: r?.framesReceived ?? 0,
      };
    });
    const sum = (k: keyof PeerCounters): number => peers.reduce((n, p) => n + (p[k] as number), 0);
    return {
      staleness: this.staleness(),
      bytesSent: sum('bytesSent'),
      bytesReceived: sum('bytesReceived'),
      framesSent: sum('framesSent'),
      framesReceived: sum('framesReceived'),
      peers,
    };
  }

  /**
   * The shard's figures since the assignment, for the metrics (counts since this run started,
   * whatever the checkpoint it restored), and a request to the trainer to measure its next
   * update, which the next sample reports.
   */
  metricsSample(): ShardSample {
    const tr = this.trainer;
    const now = tr?.stats() ?? null;
    const base = this.baseline;
    const since = (k: 'spinUpdates' | 'sweeps' | 'updatesApplied'): number =>
      now !== null && base !== null ? now[k] - base[k] : 0;
    const u = tr?.lastUpdateStats ?? null;
    tr?.monitorNextUpdate();
    const { computeSeconds, waitSeconds } = this.timing();
    return {
      jobId: this.jobId,
      shard: this.shardId,
      step: this.step,
      totalSteps: this.totalSteps,
      checkpointStep: this.lastCheckpoint,
      checkpointAtMs: this.checkpointAtMs,
      spinUpdates: since('spinUpdates'),
      sweeps: since('sweeps'),
      weightUpdates: since('updatesApplied'),
      computeSeconds,
      waitSeconds,
      staleness: now?.spinStaleness.map((n, d) => n - (base?.spinStaleness[d] ?? 0)) ?? [],
      peers: this.counters().peers.map((p) => ({
        peer: p.shardId,
        bytesSent: p.bytesSent,
        bytesReceived: p.bytesReceived,
        messagesSent: p.framesSent,
        messagesReceived: p.framesReceived,
        messagesResent: p.framesResent,
        reconnects: p.reconnects,
      })),
      update: u && {
        updateNorm: u.updateNorm,
        learningRate: u.learningRate,
        dataCorrelation: u.dataCorrelation,
        modelCorrelation: u.modelCorrelation,
      },
    };
  }

  private staleness(): StalenessSummary {
    const tr = this.trainer;
    const out: StalenessSummary = { count: 0, sumSteps: 0, maxSteps: 0, buckets: [] };
    let hist: number[];
    if (this.seq !== null) hist = Array.from(this.seq.lead, (n) => n ?? 0);
    else if (tr === null) return out;
    else {
      const now = tr.stats().spinStaleness;
      const base = this.baseline?.spinStaleness ?? [];
      hist = now.map((v, d) => v - (base[d] ?? 0));
    }
    hist.forEach((n, d) => {
      out.count += n;
      out.sumSteps += n * d;
      if (n > 0) out.maxSteps = d;
    });
    let cum = 0;
    let next = 0;
    for (let le = 0; ; le = le === 0 ? 1 : le * 2) {
      for (; next <= le && next < hist.length; next++) cum += hist[next]!;
      out.buckets.push({ leSteps: le, count: cum });
      if (le >= out.maxSteps) break;
    }
    return out;
  }
}

/** Rows of step `step`'s minibatch (the last one of an epoch may be short). */
export function batchRows(
  step: number,
  batch: number,
  stepsPerEpoch: number,
  rows: number,
): number {
  return Math.min(batch, rows - (step % stepsPerEpoch) * batch);
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
