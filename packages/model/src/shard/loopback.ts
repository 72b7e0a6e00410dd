// K shard trainers in one process with a message scheduler instead of a network: lockstep
// delivery, seeded random delays, slowed shards (stragglers), shard failures and recovery from
// checkpoints. For tests, and for the embedded cluster's unit tests.
import type { Kernels } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import { mulberry32 } from '../mulberry32.js';
import type { Network } from '../network.js';
import { assemble, type ShardExport } from './params.js';
import {
  type AdvanceResult,
  type ShardStats,
  ShardTrainer,
  type ShardTrainerOptions,
  type SpinMessage,
} from './shard-trainer.js';

/**
 * When a sent message arrives: 'immediate' (before the next shard's turn), or after a seeded
 * random number of scheduler ticks in 0..maxDelay (messages overtake each other).
 */
export type Delivery = { kind: 'immediate' } | { kind: 'random'; maxDelay: number; seed?: number };

export interface LoopbackOptions extends Omit<ShardTrainerOptions, 'shard' | 'kernels'> {
  /** One kernels object for all shards, or one per shard. */
  kernels: Kernels | ((shard: number) => Kernels);
  /** @defaultValue { kind: 'immediate' } */
  delivery?: Delivery;
  /** Stragglers: shard `shard` gets a turn only every `every` ticks. @defaultValue none */
  slow?: readonly { shard: number; every: number }[];
  /** Stages a shard may draw in one turn. @defaultValue 1 */
  stagesPerTurn?: number;
  /** Called after every single update a shard applies (e.g. to snapshot its weight tiles). */
  onUpdate?: (shard: number, trainer: ShardTrainer) => void;
}

export interface LoopbackRunOptions {
  /** Stop when this returns true (checked after every tick). */
  until?: (cluster: LoopbackCluster) => boolean;
  /** Give up (throw) after this many ticks. @defaultValue 10_000_000 */
  maxTicks?: number;
}

interface InFlight {
  at: number;
  seq: number;
  to: number;
  msg: SpinMessage;
}

/** A sharded run in one process. */
export class LoopbackCluster {
  readonly trainers: (ShardTrainer | null)[];
  /** checkpoints.get(T).get(shard): what that shard wrote at step T. */
  readonly checkpoints = new Map<number, Map<number, Uint8Array>>();
  /** Scheduler ticks so far. */
  tick = 0;
  /** Messages and payload bytes handed to the scheduler (one per recipient). */
  readonly traffic = { messages: 0, bytes: 0, dropped: 0 };

  private readonly opts: LoopbackOptions;
  private flight: InFlight[] = [];
  private seq = 0;
  private rng: () => number;
  private readonly every: number[];

  constructor(opts: LoopbackOptions) {
    this.opts = opts;
    const K = opts.layout.length;
    this.trainers = Array.from({ length: K }, (_, s) => this.make(s));
    const d = opts.delivery ?? { kind: 'immediate' };
    if (d.kind === 'random' && !(Number.isInteger(d.maxDelay) && d.maxDelay >= 0))
      throw new SpecError('delivery.maxDelay', 'must be an integer >= 0');
    this.rng = mulberry32(d.kind === 'random' ? (d.seed ?? 0) : 0);
    this.every = new Array<number>(K).fill(1);
    for (const s of opts.slow ?? []) {
      if (!(Number.isInteger(s.every) && s.every >= 1))
        throw new SpecError('slow.every', 'must be an integer >= 1');
      this.every[s.shard] = s.every;
    }
  }

  private make(shard: number): ShardTrainer {
    const { kernels, ...rest } = this.opts;
    return new ShardTrainer({
      ...rest,
      shard,
      kernels: typeof kernels === 'function' ? kernels(shard) : kernels,
    });
  }

  /** Whether every shard has drawn every step and applied every update. */
  get done(): boolean {
    return this.trainers.every((t) => t !== null && t.done);
  }

  /**
   * Runs the scheduler until every shard is done ('done'), `until` holds ('until'), or nothing
   * can move because a shard is dead ('stalled': its peers wait for it; recover()).
   * @throws Error on a deadlock of live shards (a protocol bug) or after maxTicks
   */
  run(opts: LoopbackRunOptions = {}): 'done' | 'until' | 'stalled' {
    const maxTicks = opts.maxTicks ?? 10_000_000;
    let idle = 0;
    for (;;) {
      if (opts.until?.(this)) return 'until';
      if (this.done) return 'done';
      if (this.tick >= maxTicks) throw new Error(`loopback: no end after ${maxTicks} ticks`);
      const moved = this.step();
      idle = moved || this.flight.length > 0 ? 0 : idle + 1;
      if (idle > Math.max(...this.every) + 1) {
        if (this.trainers.some((t) => t === null)) return 'stalled';
        const waits = this.trainers.map((t, s) => {
          const r = t!.advance();
          return `shard ${s} at ${JSON.stringify(t!.position)}: ${JSON.stringify(r)}`;
        });
        throw new Error(`loopback: deadlock\n${waits.join('\n')}`);
      }
    }
  }

  /** One scheduler tick: deliver what is due, then give each live shard its turn. */
  step(): boolean {
    const now = this.tick;
    if (this.flight.length > 0) {
      const due = this.flight
        .filter((f) => f.at <= now)
        .sort((a, b) => a.at - b.at || a.seq - b.seq);
      this.flight = this.flight.filter((f) => f.at > now);
      for (const f of due) this.deliver(f.to, f.msg);
    }
    let moved = false;
    this.trainers.forEach((tr, s) => {
      if (!tr || now % this.every[s]! !== 0) return;
      if (this.turn(s, tr)) moved = true;
    });
    this.tick++;
    return moved;
  }

  private turn(s: number, tr: ShardTrainer): boolean {
    const P = tr.plan.stages.length;
    let left = this.opts.stagesPerTurn ?? 1;
    let moved = false;
    for (;;) {
      const before = tr.position;
      const r: AdvanceResult = tr.advance({ stages: left, updates: 1 });
      const after = tr.position;
      left -= after.step * P + after.stage - (before.step * P + before.stage);
      if (after.applied > before.applied) this.opts.onUpdate?.(s, tr);
      if (
        after.applied !== before.applied ||
        after.step * P + after.stage !== before.step * P + before.stage
      )
        moved = true;
      this.send(tr.outgoing());
      if (r.state === 'checkpoint') {
        let m = this.checkpoints.get(r.step);
        if (!m) this.checkpoints.set(r.step, (m = new Map()));
        m.set(s, tr.checkpoint());
        moved = true;
        continue;
      }
      if (r.state === 'budget' && left > 0) continue;
      if (r.state === 'budget' && after.applied > before.applied) continue; // more updates may be ready
      return moved;
    }
  }

  private send(msgs: SpinMessage[]): void {
    const d = this.opts.delivery ?? { kind: 'immediate' };
    for (const msg of msgs) {
      for (const to of msg.to) {
        this.traffic.messages++;
        this.traffic.bytes += msg.packed.length + (msg.values?.byteLength ?? 0);
        if (d.kind === 'immediate') this.deliver(to, msg);
        else {
          const delay = Math.floor(this.rng() * (d.maxDelay + 1));
          this.flight.push({ at: this.tick + delay, seq: this.seq++, to, msg });
        }
      }
    }
  }

  private deliver(to: number, msg: SpinMessage): void {
    const tr = this.trainers[to];
    if (!tr) {
      this.traffic.dropped++;
      return;
    }
    if (msg.values) tr.receiveField(msg.from, msg.step, msg.stage, msg.layer, msg.values);
    else tr.receive(msg.from, msg.step, msg.stage, msg.layer, msg.packed, msg.reads);
  }

  /** Drops a shard (a crashed worker) and every message in flight to it. */
  kill(shard: number): void {
    this.trainers[shard] = null;
    this.flight = this.flight.filter((f) => f.to !== shard);
  }

  /**
   * Recovery: every shard (dead or alive) is rebuilt from its checkpoint of the latest step
   * that all shards have checkpointed, and messages sent before are discarded (a new
   * generation). Returns that step. @throws SpecError when there is no common checkpoint
   */
  recover(): number {
    const K = this.trainers.length;
    const common = [...this.checkpoints.entries()]
      .filter(([, m]) => m.size === K)
      .map(([T]) => T)
      .sort((a, b) => b - a)[0];
    if (common === undefined)
      throw new SpecError('recover', 'no step has a checkpoint of every shard');
    for (let s = 0; s < K; s++) {
      const tr = this.make(s);
      tr.restore(this.checkpoints.get(common)!.get(s)!);
      this.trainers[s] = tr;
    }
    this.flight = [];
    for (const T of [...this.checkpoints.keys()]) if (T > common) this.checkpoints.delete(T);
    return common;
  }

  /** Every shard's owned blocks. @throws SpecError when a shard is dead */
  exports(): ShardExport[] {
    return this.trainers.map((t, s) => {
      if (!t) throw new SpecError(`shard ${s}`, 'is dead');
      return t.exportBlocks();
    });
  }

  /** The model assembled from every shard's owned blocks (all at the same step). */
  assemble(kernels?: Kernels): Network {
    const k = this.opts.kernels;
    return assemble(
      this.opts.network,
      kernels ?? (typeof k === 'function' ? k(0) : k),
      this.exports(),
    );
  }

  /** Every live shard's statistics, and the histograms summed over shards. */
  stats(): { shards: (ShardStats | null)[]; spinStaleness: number[]; weightLag: number[] } {
    const shards = this.trainers.map((t) => (t ? t.stats() : null));
    const sum = (pick: (s: ShardStats) => number[]): number[] => {
      const out: number[] = [];
      for (const s of shards) if (s) pick(s).forEach((v, i) => (out[i] = (out[i] ?? 0) + v));
      return out;
    };
    return {
      shards,
      spinStaleness: sum((s) => s.spinStaleness),
      weightLag: sum((s) => s.weightLag),
    };
  }
}
