// `npm run bench -- kernels-resident [--big=4096] [--quick]`: the kernels loadKernels picks
// (SPINMESH_KERNELS), with their buffers from alloc, as the models use them, so a device
// implementation is timed on device memory and waited for: sgemm TFLOP/s on the RBM layer product
// 256x784x500 and on big^3 (fp32, and TF32 too on cuda), and the fused bias + squash + draw in ns
// per unit. `kernels` compares the CPU implementations on host arrays; this one is for any.
import { CudaKernels, UnitType, loadKernels, type Kernels } from '@spinmesh/kernels';
import { environment, log, numArg, parseArgs } from './_common.js';
import { residentArray, timeResident } from './_resident.js';

const round = (x: number, digits = 3): number => Number(x.toPrecision(digits));

function sgemmTflops(k: Kernels, m: number, n: number, kk: number, seconds: number): number {
  const a = residentArray(k, m * kk, 1);
  const b = residentArray(k, kk * n, 2);
  const c = k.alloc(m * n);
  const s = timeResident(
    k,
    c,
    () => k.sgemm(false, false, m, n, kk, 1, a, kk, b, n, 0, c, n),
    seconds,
    m * n * kk > 1e9 ? 1 : 3,
    1,
  );
  return (2 * m * n * kk) / s / 1e12;
}

/** ns per unit of sampleUnits (mean and draw) over a rows x n block. */
function drawNs(k: Kernels, type: UnitType, rows: number, n: number, seconds: number): number {
  const field = residentArray(k, rows * n, 3, -4, 4);
  const bias = residentArray(k, n, 4);
  const mean = k.alloc(rows * n);
  const out = k.alloc(rows * n);
  const site = { seedLo: 1, seedHi: 2, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
  const s = timeResident(
    k,
    out,
    () => {
      site.step++;
      k.sampleUnits(type, rows, n, field, n, bias, 1, mean, out, site);
    },
    seconds,
  );
  return (s / (rows * n)) * 1e9;
}

function measure(k: Kernels, big: number, quick: boolean): Record<string, unknown> {
  const t = quick ? 0.2 : 1;
  const small = sgemmTflops(k, 256, 500, 784, t);
  log(`kernels-resident[${k.name}]: sgemm 256x784x500 ${small.toFixed(3)} TFLOP/s`);
  const large = sgemmTflops(k, big, big, big, t);
  log(`kernels-resident[${k.name}]: sgemm ${big}^3 ${large.toFixed(3)} TFLOP/s`);
  const draw: Record<string, Record<string, number>> = {};
  // 100 x 500: one hidden layer at batch 100; 4096 x 500: many chains, where a GPU fills up.
  for (const rows of [100, 4096]) {
    const row: Record<string, number> = {};
    for (const [name, type] of [
      ['bernoulli', UnitType.Bernoulli],
      ['ising', UnitType.Ising],
      ['gaussian', UnitType.Gaussian],
    ] as const) {
      row[name] = round(drawNs(k, type, rows, 500, t / 3));
    }
    draw[`${rows}x500`] = row;
    log(`kernels-resident[${k.name}]: draw ${rows}x500 ns/unit ${JSON.stringify(row)}`);
  }
  return {
    sgemm_tflops: { '256x784x500': round(small), [`${big}^3`]: round(large) },
    draw_ns_per_unit: draw,
  };
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('kernels-resident', argv, ['big', 'quick']);
  const big = numArg(args, 'big', 4096);
  if (!Number.isInteger(big) || big < 1) throw new Error('--big must be a positive integer');
  const quick = args.has('quick');
  const k = loadKernels();
  log(`kernels: ${k.describe()}`);
  const result: Record<string, unknown> = { ...environment(k), ...measure(k, big, quick) };
  if (k instanceof CudaKernels && !k.tf32) {
    const t = new CudaKernels({ tf32: true });
    try {
      result['tf32'] = {
        '256x784x500': round(sgemmTflops(t, 256, 500, 784, quick ? 0.2 : 1)),
        [`${big}^3`]: round(sgemmTflops(t, big, big, big, quick ? 0.2 : 1)),
      };
      log(`kernels-resident[cuda, TF32]: sgemm TFLOP/s ${JSON.stringify(result['tf32'])}`);
    } finally {
      new CudaKernels({ tf32: false }); // one math mode per process: back to fp32
    }
  }
  return result;
}
