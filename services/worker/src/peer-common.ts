// What both ends of the peer transport share: the secret's metadata key and the checks of an
// assignment and of count options.

/** Metadata entry of the cluster secret (the same as the bus's and WorkerControl's). */
export const SECRET_METADATA = 'spinmesh-cluster-secret';

export function checkAssignment(jobId: string, generation: number): void {
  if (jobId === '') throw new RangeError('jobId must not be empty');
  if (!Number.isInteger(generation) || generation < 1 || generation > 0xffff_ffff) {
    throw new RangeError(`generation must be an integer in [1, 2^32), got ${generation}`);
  }
}

export function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1)
    throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
}
