// What a shard counts as it runs: staleness histograms and traffic counters (ShardStats), kept
// across checkpoints.
import type { ShardStats } from './shard-types.js';

export type ShardCounters = Omit<ShardStats, 'spinStaleness' | 'weightLag'>;

export class ShardTally {
  /** spinStaleness[d]: peer-state reads that were d steps older than lockstep's. */
  spinStaleness: number[] = [0];
  /** weightLag[d]: stages drawn with the updates of the last d steps not yet applied. */
  weightLag: number[] = [0];
  readonly counters: ShardCounters = {
    stagesDrawn: 0,
    spinUpdates: 0,
    sweeps: 0,
    updatesApplied: 0,
    messagesSent: 0,
    bytesSent: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    stalePairings: 0,
  };

  countSpinRead(stepsOld: number): void {
    while (this.spinStaleness.length <= stepsOld) this.spinStaleness.push(0);
    this.spinStaleness[stepsOld]!++;
  }

  countWeightLag(steps: number): void {
    while (this.weightLag.length <= steps) this.weightLag.push(0);
    this.weightLag[steps]!++;
  }

  snapshot(): ShardStats {
    return {
      spinStaleness: [...this.spinStaleness],
      weightLag: [...this.weightLag],
      ...this.counters,
    };
  }

  /** Back to a checkpoint's figures (`counters` as checkpointed; missing ones count 0). */
  restore(
    spin: Float64Array,
    lag: Float64Array,
    counters: Partial<ShardCounters> | undefined,
  ): void {
    this.spinStaleness = Array.from(spin);
    this.weightLag = Array.from(lag);
    if (counters)
      for (const key of Object.keys(this.counters) as (keyof ShardCounters)[])
        this.counters[key] = Number(counters[key] ?? 0);
  }
}
