// Shared by the benchmarks that keep their buffers where the kernels compute (kernels-resident,
// sampling): buffers from `alloc`, and a wait for the device before a clock is read.
import type { Kernels } from '@spinmesh/kernels';

/** A buffer from k.alloc holding deterministic values in [lo, hi), uploaded. */
export function residentArray(k: Kernels, n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = k.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + (s / 2 ** 32) * (hi - lo);
  }
  k.upload(out);
  return out;
}

/**
 * Waits until the kernels have finished the work issued so far: a device implementation returns
 * before its kernels run, and download waits for them. One element, so the copy costs nothing.
 */
export function settle(k: Kernels, buf: Float32Array): void {
  if (buf.length > 0) k.download(buf.subarray(0, 1));
}

/** Mean seconds per call of fn after `warm` calls: repeats until minSeconds and minReps. */
export function timeResident(
  k: Kernels,
  buf: Float32Array,
  fn: () => void,
  minSeconds: number,
  minReps = 3,
  warm = 2,
): number {
  for (let i = 0; i < warm; i++) fn();
  settle(k, buf);
  let reps = 0;
  const start = performance.now();
  let elapsed = 0;
  // Checking the clock needs a settle, so work goes out in batches that double in size.
  for (let batch = 1; reps < minReps || elapsed < minSeconds * 1000; batch *= 2) {
    for (let i = 0; i < batch; i++) fn();
    settle(k, buf);
    reps += batch;
    elapsed = performance.now() - start;
  }
  return elapsed / 1000 / reps;
}
