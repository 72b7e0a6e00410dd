// Dynamic Boltzmann machines (DyBM): the model, the SCIENCE task, the least-squares AR baseline,
// the STDP window, and sharded runs. See ../../DYBM.md.
export * from './spec.js';
export * from './dybm.js';
export * from './science.js';
export * from './ar.js';
export * from './series.js';
export * from './window.js';
export * from './shard.js';
export * from './job.js';
