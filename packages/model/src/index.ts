// Public entry of @spinmesh/model: networks, samplers, local learning rules, evaluation,
// datasets and model files. Imports nothing about networks (sockets), Redis or metrics.
// Everything here is used by another package, a service, the CLI or a benchmark, or is listed
// in docs/architecture.md ("Library API"); the rest is internal (tests import it by module path).

// Errors: every failure a caller can act on
export { FormatError, LimitError, SpecError, readUserFile } from './errors.js';
// Networks: specs, the network itself and its unit states
export {
  Network,
  rbmSpec,
  validateNetworkSpec,
  type ConnectionSpec,
  type InitOptions,
  type LayerSpec,
  type NetworkSpec,
  type State,
  type UnitName,
} from './network.js';
// Data sets: in-memory sets, the files they come from, and confined file access
export {
  binarize,
  columnMeans,
  epochOrder,
  type BinarizeMode,
  type Dataset,
} from './data/dataset.js';
export { barsAndStripes, basLogLikelihoodOptimum } from './data/bas.js';
export { fashionMnistDefaultDir, loadFashionMnist } from './data/fashion.js';
export { decodeIdx, readIdx, writeIdx } from './data/idx.js';
export { readCsv } from './data/csv.js';
export {
  DATA_MAX_BYTES_DEFAULT,
  DataFileError,
  confinedAccess,
  readDataFile,
  unconfinedAccess,
  type DataAccess,
  type DataFileProblem,
} from './data/source.js';
// Files: model files, NumPy arrays and PNG images
export {
  decodeModel,
  encodeModel,
  loadModel,
  saveModel,
  type LoadedModel,
  type StateArray,
} from './io/modelfile.js';
export { decodeNpy, exportNpyDir, importNpyDir, npyFiles, readNpy, writeNpy } from './io/npy.js';
export { createImage, encodePng, imageGrid, type Image } from './io/png.js';
// Samplers: block Gibbs, persistent chains, parallel tempering
export { GibbsSampler, annealingSchedule, type SweepOptions } from './sampler.js';
export { PersistentChains, type ChainInit } from './chains.js';
export { ParallelTempering, type TemperingOptions } from './tempering.js';
// Training: the Boltzmann rule on one process, and its options
export { Trainer, type EpochOptions, type EpochStats } from './train.js';
export type { TrainStats } from './train-update.js';
export { learningRateAt, type LearningRateSchedule } from './schedule.js';
export {
  validateTrainOptions,
  type ResolvedTrainOptions,
  type TrainOptions,
} from './train-options.js';
// Hopfield networks: Hebbian storage and recall
export { createHopfield, recall, storeHebbian } from './hopfield.js';
// Evaluation: exact, AIS and pseudo likelihoods, reconstruction, linear probes of hidden features
export { exactLogLikelihood, exactLogZ, freeEnergy } from './eval/exact.js';
export { ais, aisLogLikelihood, reverseAis } from './eval/ais.js';
export { pseudoLogLikelihood } from './eval/pseudo.js';
export { reconstructionError } from './eval/recon.js';
export { hiddenFeatures, probeAccuracy, trainProbe } from './eval/probe.js';
// Jobs: the job spec, its data, running and evaluating it
export {
  evaluateNetwork,
  initVisibleBias,
  jobSpecFromJson,
  jobSpecToJson,
  loadData,
  randomPatterns,
  runJob,
  stalenessText,
  validateData,
  validateJobSpec,
  type DataSpec,
  type EvaluateSpec,
  type Evaluation,
  type JobEvent,
  type JobResult,
  type JobSpec,
  type JobSpecJson,
  type JobRule,
  type RunJobOptions,
} from './job.js';
// Limits: what a job, a queue or a sequence job may cost
export {
  DEFAULT_LIMITS,
  NO_LIMITS,
  checkJobLimits,
  checkQueueLimits,
  checkSequenceLimits,
  knownDataShape,
  type Limits,
} from './limits.js';
// Serving a trained model: samples, pattern completion, receptive fields
export {
  completePattern,
  imageShape,
  receptiveFields,
  sampleNetwork,
  type CompleteOptions,
  type CompleteResult,
  type ReceptiveFields,
  type SampleOptions,
  type SampleResult,
} from './serve.js';
// Seeded randomness and quoting user input in messages
export { mulberry32 } from './mulberry32.js';
export { quote } from './quote.js';
// Sharded training (see shard/index.ts)
export {
  LoopbackCluster,
  ShardTrainer,
  assemble,
  balancedLayout,
  checkpointLayout,
  evenLayout,
  initSource,
  networkSource,
  relayout,
  shapeNetwork,
  validateLayout,
  type AdvanceBudget,
  type AdvanceResult,
  type LoopbackOptions,
  type ParameterBlock,
  type ParameterSource,
  type ShardData,
  type ShardExport,
  type ShardLayout,
  type ShardStats,
  type ShardTrainerOptions,
  type ShardUpdateStats,
  type SpinKey,
  type SpinMessage,
} from './shard/index.js';
// Dynamic Boltzmann machines and sequence jobs (see dybm/index.ts)
export {
  DyBM,
  DyBMLoopback,
  DyBMShard,
  FONT_ROWS,
  SCIENCE_CUE_STEPS,
  SCIENCE_OPTIONS,
  autoregressionRmse,
  createSequenceModel,
  decodeSequenceModel,
  encodeSequenceModel,
  episodeLength,
  evaluateSequences,
  fitAutoregression,
  framesToText,
  generateFrom,
  isSequenceModel,
  learnSeries,
  loadSequences,
  memorizeSequences,
  noisySines,
  oneStepRmse,
  randomDelays,
  recallErrors,
  reverseFrames,
  runSequenceJob,
  scienceSpec,
  sequenceJobFrames,
  sequenceShardUnits,
  stdpWindow,
  validateSequenceJob,
  wordFrames,
  type DyBMOptions,
  type DyBMSnapshot,
  type DyBMSpec,
  type FrameSequence,
  type SequenceEvaluation,
  type SequenceJobSpec,
} from './dybm/index.js';
