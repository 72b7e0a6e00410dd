// Every metric the services export: name, type, help and labels, in one table that the metric
// classes build from and that the dashboards' test reads (a panel may query only these, and the
// process metrics prom-client adds). Names follow Prometheus's conventions: the spinmesh_ prefix,
// _total on counters, base units (_seconds, _bytes, _steps, _nats) in the name.

/** Label names. `job_id` rather than `job`, which Prometheus gives the scrape job. */
export const Labels = {
  jobId: 'job_id',
  shard: 'shard',
  peer: 'peer',
  state: 'state',
  phase: 'phase',
  method: 'method',
  grpcService: 'grpc_service',
  grpcMethod: 'grpc_method',
  grpcType: 'grpc_type',
  grpcCode: 'grpc_code',
} as const;

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDefinition {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  /** Upper bounds of a histogram's buckets. */
  readonly buckets?: readonly number[];
}

const RUN = [Labels.jobId, Labels.shard] as const;
const PEER = [Labels.jobId, Labels.shard, Labels.peer] as const;
const RPC = [Labels.grpcService, Labels.grpcMethod, Labels.grpcType] as const;

/** Staleness is a whole number of steps: 0 is lockstep, then powers of two. */
export const STALENESS_BUCKETS = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] as const;

/** RPC latency: from a peer's spin-frame acknowledgement to a WatchJob stream of minutes. */
export const RPC_SECONDS_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
] as const;

/** Assembling and evaluating a model: milliseconds (BAS) to minutes (AIS on Fashion-MNIST). */
export const EVALUATION_SECONDS_BUCKETS = [
  0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
] as const;

function def(
  name: string,
  type: MetricType,
  help: string,
  labels: readonly string[] = [],
  buckets?: readonly number[],
): MetricDefinition {
  return buckets ? { name, type, help, labels, buckets } : { name, type, help, labels };
}

/** Metrics of every gRPC server (workers and coordinator), by service, method and call type. */
export const RpcMetricDefs = {
  started: def('spinmesh_grpc_server_started_total', 'counter', 'RPCs started on the server.', RPC),
  handled: def(
    'spinmesh_grpc_server_handled_total',
    'counter',
    'RPCs completed on the server, by status code (a cancelled call counts as CANCELLED).',
    [...RPC, Labels.grpcCode],
  ),
  seconds: def(
    'spinmesh_grpc_server_handling_seconds',
    'histogram',
    'Time from the start of an RPC to its status (the whole stream for a streaming call).',
    RPC,
    RPC_SECONDS_BUCKETS,
  ),
} as const;

/**
 * Metrics of a worker. The per-shard ones carry `job_id` and `shard` of the worker's current
 * shard only: a new job or shard removes the previous one's series, so a worker exports at most
 * one shard's series (the last one's stay until the next assignment, for the dashboards).
 */
export const WorkerMetricDefs = {
  state: def(
    'spinmesh_worker_state',
    'gauge',
    "1 for the worker's current state (idle, loading, running, stopping, done, failed), else 0.",
    [Labels.state],
  ),
  spinUpdates: def(
    'spinmesh_spin_updates_total',
    'counter',
    "Units drawn by the shard's sampler (rows x owned units of every layer drawn).",
    RUN,
  ),
  sweeps: def(
    'spinmesh_sweeps_total',
    'counter',
    'Gibbs sweeps completed by the shard (positive and negative phase).',
    RUN,
  ),
  weightUpdates: def(
    'spinmesh_weight_updates_total',
    'counter',
    'Learning-rule updates (steps) the shard applied.',
    RUN,
  ),
  computeSeconds: def(
    'spinmesh_shard_compute_seconds_total',
    'counter',
    "Seconds the shard's trainer spent drawing units and applying updates.",
    RUN,
  ),
  waitSeconds: def(
    'spinmesh_shard_wait_seconds_total',
    'counter',
    "Seconds the shard waited for its peers' spins with nothing else to do.",
    RUN,
  ),
  staleness: def(
    'spinmesh_peer_staleness_steps',
    'histogram',
    "Age, in steps behind lockstep, of each peer state the shard's sampler read.",
    RUN,
    STALENESS_BUCKETS,
  ),
  peerSentBytes: def(
    'spinmesh_peer_sent_bytes_total',
    'counter',
    'Spin-frame bytes sent to a peer shard (serialized messages, resends included).',
    PEER,
  ),
  peerReceivedBytes: def(
    'spinmesh_peer_received_bytes_total',
    'counter',
    'Spin-frame bytes received from a peer shard (serialized messages).',
    PEER,
  ),
  peerSentMessages: def(
    'spinmesh_peer_sent_messages_total',
    'counter',
    'Spin frames sent to a peer shard (first transmissions).',
    PEER,
  ),
  peerReceivedMessages: def(
    'spinmesh_peer_received_messages_total',
    'counter',
    'Spin frames received from a peer shard (resent ones included).',
    PEER,
  ),
  peerResentMessages: def(
    'spinmesh_peer_resent_messages_total',
    'counter',
    'Spin frames sent again to a peer shard after a reconnection.',
    PEER,
  ),
  peerReconnects: def(
    'spinmesh_peer_reconnects_total',
    'counter',
    'Reconnections of the stream to a peer shard.',
    PEER,
  ),
  step: def('spinmesh_shard_step', 'gauge', 'Updates the shard has applied (its step).', RUN),
  totalSteps: def('spinmesh_shard_total_steps', 'gauge', "Steps of the shard's job.", RUN),
  checkpointStep: def(
    'spinmesh_shard_checkpoint_step',
    'gauge',
    "Step of the shard's newest checkpoint (0: none).",
    RUN,
  ),
  checkpointTime: def(
    'spinmesh_shard_checkpoint_timestamp_seconds',
    'gauge',
    "Unix time at which the shard's newest checkpoint was written or restored from.",
    RUN,
  ),
  updateNorm: def(
    'spinmesh_weight_update_norm',
    'gauge',
    'Euclidean norm of the change of the weights the shard owns, at its latest measured update.',
    RUN,
  ),
  correlation: def(
    'spinmesh_correlation_mean',
    'gauge',
    'Mean of <x_i x_j> over the weights the shard owns at its latest measured update, by phase.',
    [...RUN, Labels.phase],
  ),
  learningRate: def(
    'spinmesh_learning_rate',
    'gauge',
    "Learning rate of the shard's latest measured update.",
    RUN,
  ),
} as const;

/**
 * Metrics of the coordinator. The per-job ones carry `job_id`, for the most recent jobs only
 * (CoordinatorMetrics' `maxJobs`): older jobs' series are removed.
 */
export const CoordinatorMetricDefs = {
  jobs: def(
    'spinmesh_jobs',
    'gauge',
    'Jobs on the bus by state (queued, running, completed, failed, cancelled).',
    [Labels.state],
  ),
  workersAlive: def(
    'spinmesh_workers_alive',
    'gauge',
    'Workers registered on the bus (heartbeat TTL not expired).',
  ),
  submitted: def('spinmesh_jobs_submitted_total', 'counter', 'Jobs accepted by SubmitJob.'),
  recoveries: def(
    'spinmesh_job_recoveries_total',
    'counter',
    'Reassignments of running jobs after a worker was lost or failed.',
  ),
  evaluationSeconds: def(
    'spinmesh_evaluation_seconds',
    'histogram',
    'Time to assemble and evaluate a model (during training and at the end of a job).',
    [],
    EVALUATION_SECONDS_BUCKETS,
  ),
  jobStep: def(
    'spinmesh_job_step',
    'gauge',
    'Steps every shard of the job has applied (the slowest shard).',
    [Labels.jobId],
  ),
  jobTotalSteps: def('spinmesh_job_total_steps', 'gauge', 'Steps of the job.', [Labels.jobId]),
  jobEpoch: def('spinmesh_job_epoch', 'gauge', 'Epochs every shard of the job has completed.', [
    Labels.jobId,
  ]),
  jobGeneration: def(
    'spinmesh_job_generation',
    'gauge',
    "Generation of the job's shard assignment (1, plus one per reassignment).",
    [Labels.jobId],
  ),
  evalEpoch: def('spinmesh_eval_epoch', 'gauge', "Epoch of the job's latest evaluation.", [
    Labels.jobId,
  ]),
  logLikelihood: def(
    'spinmesh_eval_log_likelihood_nats',
    'gauge',
    "Average log-likelihood of the evaluation data at the job's latest evaluation, by method.",
    [Labels.jobId, Labels.method],
  ),
  pseudoLogLikelihood: def(
    'spinmesh_eval_pseudo_log_likelihood_nats',
    'gauge',
    'Average pseudo-log-likelihood (sum over units of log p(v_i | v_-i)) at the latest evaluation.',
    [Labels.jobId],
  ),
  reconstructionError: def(
    'spinmesh_eval_reconstruction_error',
    'gauge',
    'Reconstruction error at the latest evaluation (mean over rows of the summed squared error).',
    [Labels.jobId],
  ),
} as const;
