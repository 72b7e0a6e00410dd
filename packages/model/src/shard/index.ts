// Sharded training: layouts, the per-worker ShardTrainer, parameter sources and assembly, and
// the in-process LoopbackCluster. Protocol: shard-trainer.ts and ../../SHARDING.md.
export * from './layout.js';
export * from './params.js';
export * from './plan.js';
export * from './shard-trainer.js';
export * from './loopback.js';
