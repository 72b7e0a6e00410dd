// `npm run bench -- sampling [--visible=784] [--hidden=500] [--chains=64,256,...] [--seconds=1]`:
// block Gibbs sampling of a dense RBM (visible-hidden), many chains at once, on the kernels
// loadKernels picks (SPINMESH_KERNELS), with every buffer from alloc: one sweep is the hidden
// field (sgemm), its draw (sampleUnits), the visible field and its draw. Reports spin updates
// per ns (chains x (visible + hidden) per sweep) for each chain count, and the sgemm rate that
// implies.
import { UnitType, loadKernels, type Kernels } from '@spinmesh/kernels';
import { environment, log, numArg, parseArgs } from './_common.js';
import { residentArray, timeResident } from './_resident.js';

const DEFAULT_CHAINS = [64, 256, 1024, 4096, 16384];

function parseChains(v: string | true | undefined): number[] {
  if (v === undefined) return DEFAULT_CHAINS;
  const list = v === true ? [] : v.split(',').map(Number);
  if (list.length === 0 || !list.every((c) => Number.isInteger(c) && c > 0)) {
    throw new Error('--chains must list positive integers, e.g. --chains=64,4096');
  }
  return list;
}

/** Seconds per sweep of `chains` chains of an nv-nh RBM. */
function sweepSeconds(k: Kernels, nv: number, nh: number, chains: number, seconds: number): number {
  // Small weights, so the chains keep mixing rather than freezing in a mode.
  const w = residentArray(k, nv * nh, 1, -0.05, 0.05);
  const bv = residentArray(k, nv, 2, -0.1, 0.1);
  const bh = residentArray(k, nh, 3, -0.1, 0.1);
  const v = residentArray(k, chains * nv, 4, 0, 1);
  const h = k.alloc(chains * nh);
  const site = { seedLo: 7, seedHi: 11, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
  return timeResident(
    k,
    v,
    () => {
      site.step++;
      k.sgemm(false, false, chains, nh, nv, 1, v, nv, w, nh, 0, h, nh);
      site.stream = 0;
      k.sampleUnits(UnitType.Bernoulli, chains, nh, h, nh, bh, 1, null, h, site);
      k.sgemm(false, true, chains, nv, nh, 1, h, nh, w, nh, 0, v, nv);
      site.stream = 1;
      k.sampleUnits(UnitType.Bernoulli, chains, nv, v, nv, bv, 1, null, v, site);
    },
    seconds,
  );
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('sampling', argv, ['visible', 'hidden', 'chains', 'seconds']);
  const nv = numArg(args, 'visible', 784);
  const nh = numArg(args, 'hidden', 500);
  const seconds = numArg(args, 'seconds', 1);
  for (const [name, x] of [
    ['visible', nv],
    ['hidden', nh],
  ] as const) {
    if (!Number.isInteger(x) || x < 1) throw new Error(`--${name} must be a positive integer`);
  }
  const chainsList = parseChains(args.get('chains'));
  const k = loadKernels();
  log(`kernels: ${k.describe()}`);
  const byChains: Record<string, Record<string, number>> = {};
  let best = 0;
  for (const chains of chainsList) {
    const s = sweepSeconds(k, nv, nh, chains, seconds);
    const perNs = (chains * (nv + nh)) / (s * 1e9);
    best = Math.max(best, perNs);
    byChains[String(chains)] = {
      spin_updates_per_ns: Number(perNs.toPrecision(4)),
      ms_per_sweep: Number((s * 1e3).toPrecision(4)),
      sgemm_tflops: Number(((4 * chains * nv * nh) / s / 1e12).toPrecision(4)),
    };
    log(`sampling ${nv}-${nh}, ${chains} chains: ${perNs.toFixed(3)} spin updates/ns`);
  }
  return {
    ...environment(k),
    network: `dense ${nv}-${nh} RBM, block Gibbs (Bernoulli units)`,
    by_chains: byChains,
    best_spin_updates_per_ns: Number(best.toPrecision(4)),
  };
}
