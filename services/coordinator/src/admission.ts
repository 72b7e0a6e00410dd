// Admission of submitted jobs to the queue: at most maxQueuedJobs jobs queued, whose estimates
// (parameters, sampler state, data) add up to at most maxQueuedBytes. The coordinator keeps the
// data of every queued job in memory, so this is what bounds it.
import type { Bus } from '@spinmesh/bus';
import { checkQueueLimits, type Limits } from '@spinmesh/model';
import type { StoredJob } from '@spinmesh/cluster';

export class Admission {
  /** The admission in progress: admissions run one at a time, each seeing the last one's job. */
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly bus: Bus,
    private readonly limits: Limits,
    /** A stored job's estimate (its kind's); @throws when the record does not allow one */
    private readonly estimate: (job: StoredJob) => number,
  ) {}

  /**
   * Runs `create` (which stores the job, queued) when one more job of `bytes` keeps the queue
   * within its limits. @throws LimitError naming the limit
   */
  admit<T>(bytes: number, create: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      checkQueueLimits(this.limits, await this.queued(), bytes);
      return create();
    };
    const result = this.last.then(run, run);
    this.last = result.catch(() => undefined);
    return result;
  }

  /** The queued jobs on the bus and their estimates together. */
  private async queued(): Promise<{ jobs: number; bytes: number }> {
    let jobs = 0;
    let bytes = 0;
    let pageToken: string | undefined;
    for (;;) {
      const page = await this.bus.listJobs({
        state: 'queued',
        pageSize: 1000,
        ...(pageToken ? { pageToken } : {}),
      });
      for (const job of page.jobs as StoredJob[]) {
        jobs++;
        bytes += this.estimatedBytes(job);
      }
      if (page.nextPageToken === null) return { jobs, bytes };
      pageToken = page.nextPageToken;
    }
  }

  private estimatedBytes(job: StoredJob): number {
    try {
      return this.estimate(job);
    } catch {
      // A record its own version of the rules no longer accepts: it costs what it costs; it must
      // not stop every later submission.
      return 0;
    }
  }
}
