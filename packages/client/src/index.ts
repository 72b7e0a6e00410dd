// @spinmesh/client: a typed client of a spinmesh coordinator's public API (JobService,
// ModelService) and the errors it translates gRPC statuses into. It depends on the generated
// API (@spinmesh/proto) and grpc-js only; the `spinmesh` command line (apps/cli) is built on it.
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
  InvalidRequestError,
  JobNotFoundError,
  JobStateError,
  ModelTransferError,
  UnauthenticatedError,
  UnavailableError,
  toApiError,
} from './errors.js';
