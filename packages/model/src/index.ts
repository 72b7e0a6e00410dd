// Public entry of @spinmesh/model: networks, samplers, local learning rules, evaluation,
// datasets and model files. Imports nothing about networks (sockets), Redis or metrics.
export * from './errors.js';
export * from './network.js';
export * from './data/idx.js';
export * from './data/dataset.js';
export * from './data/fashion.js';
export * from './data/bas.js';
export * from './data/csv.js';
export {
  DATA_MAX_BYTES_DEFAULT,
  DataFileError,
  confinedAccess,
  readDataFile,
  resolveDataPath,
  unconfinedAccess,
  type DataAccess,
  type DataFileProblem,
} from './data/source.js';
export * from './io/npy.js';
export * from './io/modelfile.js';
export * from './io/png.js';
export * from './hopfield.js';
export * from './sampler.js';
export * from './chains.js';
export * from './tempering.js';
export * from './train.js';
export * from './train-options.js';
export * from './train-rule.js';
export type { TrainStats } from './train-update.js';
export * from './schedule.js';
export * from './mulberry32.js';
export * from './eval/exact.js';
export * from './eval/ais.js';
export * from './eval/pseudo.js';
export * from './eval/recon.js';
export * from './eval/probe.js';
export * from './job.js';
export * from './limits.js';
export * from './quote.js';
export * from './serve.js';
export * from './shard/index.js';
export * from './dybm/index.js';
