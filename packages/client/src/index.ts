// @spinmesh/client: a typed client of a spinmesh coordinator's public API (JobService,
// ModelService) and the errors it translates gRPC statuses into. The `spinmesh` command line
// (src/cli.ts) is built on it.
export {
  SpinmeshClient,
  type ClientOptions,
  type DownloadedModel,
  type JobPage,
  type ListJobsOptions,
  type ModelFile,
} from './client.js';
export {
  ApiError,
  CallCancelledError,
  ExitCode,
  InvalidRequestError,
  JobNotFoundError,
  JobStateError,
  ModelTransferError,
  UnauthenticatedError,
  UnavailableError,
  exitCodeOf,
  toApiError,
} from './errors.js';
