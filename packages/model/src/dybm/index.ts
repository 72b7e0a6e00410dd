// Dynamic Boltzmann machines (DyBM): the model, the SCIENCE task, the least-squares AR baseline,
// the STDP window, and sharded runs. See ../../DYBM.md.

// The model and its spec
export { DyBM, type DyBMSnapshot, type GenerateOptions } from './dybm.js';
export { randomDelays, type DyBMKind, type DyBMOptions, type DyBMSpec } from './spec.js';
// The SCIENCE memorisation task
export {
  FONT_ROWS,
  SCIENCE_CUE_STEPS,
  SCIENCE_OPTIONS,
  framesToText,
  memorizeSequences,
  recallErrors,
  reverseFrames,
  scienceSpec,
  wordFrames,
  type FrameSequence,
  type MemorizeOptions,
  type MemorizeResult,
} from './science.js';
// Real-valued series and the autoregressive baseline
export { learnSeries, oneStepRmse } from './series.js';
export {
  autoregressionRmse,
  fitAutoregression,
  noisySines,
  predictAutoregression,
  type Autoregression,
  type SinesOptions,
} from './ar.js';
// The STDP window a DyBM's eligibility traces amount to
export { stdpWindow, type StdpWindow, type StdpWindowOptions } from './window.js';
// Sharded runs: one worker's shard and the in-process loopback
export { DyBMLoopback, DyBMShard, type DyBMLoopbackOptions } from './shard.js';
// Sequence jobs: spec, data, training, evaluation and model files
export {
  createSequenceModel,
  decodeSequenceModel,
  encodeSequenceModel,
  episodeLength,
  evaluateSequences,
  generateFrom,
  isSequenceModel,
  loadSequences,
  runSequenceJob,
  sequenceJobFrames,
  sequenceShardUnits,
  validateSequenceJob,
  type SequenceData,
  type SequenceEvaluation,
  type SequenceJobResult,
  type SequenceJobSpec,
  type SequenceModelFile,
} from './job.js';
