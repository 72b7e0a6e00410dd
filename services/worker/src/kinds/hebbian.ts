// Kind 'hebbian' on a worker: none. The coordinator stores a Hopfield network in one look and
// never places its jobs on workers; an assignment for one is refused.
import { JobLoadError } from '../job.js';
import type { WorkerKind } from './kind.js';

export const hebbian: WorkerKind = {
  load(record) {
    return Promise.reject(
      new JobLoadError(
        `job '${record.id}' is a 'hebbian' job: the coordinator stores it, no shard runs it`,
      ),
    );
  },
};
