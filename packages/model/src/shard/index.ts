// Sharded training: layouts, the per-worker ShardTrainer, parameter sources and assembly, and
// the in-process LoopbackCluster. Protocol: shard-trainer.ts and ../../SHARDING.md.

// Layouts: which shard owns which units of each layer
export {
  evenLayout,
  shapeNetwork,
  validateLayout,
  type ShardLayout,
  type ShardUnits,
} from './layout.js';
// Parameters: where a shard's initial parameters come from, and the model assembled from exports
export {
  assemble,
  initSource,
  networkSource,
  type ParameterBlock,
  type ParameterSource,
  type ShardExport,
} from './params.js';
// One worker's shard of a run, and what it exchanges and reports
export {
  ShardTrainer,
  type AdvanceBudget,
  type AdvanceResult,
  type ShardData,
  type ShardStats,
  type ShardTrainerOptions,
  type ShardUpdateStats,
  type SpinKey,
  type SpinMessage,
} from './shard-trainer.js';
export type { StateBlock, WeightTile } from './shard-checkpoint.js';
// Moving a lockstep run to another layout at a checkpoint (rebalancing)
export { balancedLayout, checkpointLayout, relayout } from './relayout.js';
// K shards in one process, for tests and benchmarks
export {
  LoopbackCluster,
  type Delivery,
  type LoopbackOptions,
  type LoopbackRunOptions,
} from './loopback.js';
