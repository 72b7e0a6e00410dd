// The benchmarks that scripts/gpu-check.sh runs with the cuda kernels (sampling,
// kernels-resident) run on the CPU kernels too: here in tiny configurations, so that they keep
// working where no GPU is. Their figures are timings and are not judged.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);

async function bench(args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, ['bench/dist/run.js', ...args], {
    cwd: root,
    timeout: 120_000,
    env: { ...process.env, OPENBLAS_NUM_THREADS: '1' },
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

const positive = expect.any(Number) as unknown;

describe('bench on the CPU kernels (tiny)', () => {
  it('sampling: spin updates per ns for each chain count', async () => {
    const r = await bench([
      'sampling',
      '--chains=4,16',
      '--visible=12',
      '--hidden=8',
      '--seconds=0.01',
    ]);
    expect(r['network']).toBe('dense 12-8 RBM, block Gibbs (Bernoulli units)');
    const by = r['by_chains'] as Record<string, Record<string, number>>;
    expect(Object.keys(by)).toEqual(['4', '16']);
    for (const v of Object.values(by)) {
      expect(v).toEqual({
        spin_updates_per_ns: positive,
        ms_per_sweep: positive,
        sgemm_tflops: positive,
      });
      expect(v['spin_updates_per_ns']).toBeGreaterThan(0);
    }
    expect(r['best_spin_updates_per_ns']).toBe(
      Math.max(...Object.values(by).map((v) => v['spin_updates_per_ns']!)),
    );
  }, 150_000);

  it('sampling: a bad --chains is refused', async () => {
    await expect(bench(['sampling', '--chains=0,x'])).rejects.toThrow(
      /--chains must list positive integers/,
    );
  });

  it('kernels-resident: sgemm TFLOP/s and draw ns per unit', async () => {
    const r = await bench(['kernels-resident', '--big=32', '--quick']);
    expect(r['sgemm_tflops']).toEqual({ '256x784x500': positive, '32^3': positive });
    const draw = r['draw_ns_per_unit'] as Record<string, Record<string, number>>;
    expect(Object.keys(draw)).toEqual(['100x500', '4096x500']);
    for (const row of Object.values(draw)) {
      expect(row).toEqual({ bernoulli: positive, ising: positive, gaussian: positive });
    }
  }, 150_000);
});
