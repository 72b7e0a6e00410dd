// @spinmesh/cluster: what the coordinator and the workers agree on, so that neither service
// imports the other: how a service reads its environment (each bad value a ConfigError naming
// the variable), and the bus protocol (where a shard's checkpoints, snapshots and final export
// live, how an export is encoded, the events a worker appends, which step a job rolls back to),
// and the fields of a job record, and the job kinds both services know.
export {
  ConfigError,
  EnvReader,
  HOST_PORT,
  isLoopbackListen,
  setHeapGrowingPercent,
  type Env,
} from './env.js';
export {
  PREVIOUS_SLOT_BASE,
  EXPORT_SLOT_BASE,
  SNAPSHOT_SLOT_BASE,
  MOVE_SLOT_BASE,
  checkpointSlots,
  moveSlot,
  restoreSlots,
  exportSlot,
  snapshotSlot,
  evaluationEverySteps,
  snapshotEverySteps,
  nextEvaluationStep,
  slotFor,
  checkpointSteps,
  commonCheckpointStep,
  commonCheckpointSteps,
  currentRun,
  type Rollback,
  encodeShardExport,
  decodeShardExport,
  isShardExport,
  readShardExports,
  ShardEvents,
} from './protocol.js';
export {
  currentLayout,
  type JobFields,
  type ProgressRecord,
  type ModelRecord,
  type StoredJob,
} from './job-record.js';
export {
  JOB_KINDS,
  KIND_NAMES,
  kindOfRecord,
  kindOfSpec,
  type JobKindContract,
  type KindName,
  type ModelOperation,
} from './kinds.js';
