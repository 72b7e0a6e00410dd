import { LoopbackCluster, Network, evenLayout, networkSource, rbmSpec } from '@spinmesh/model';
import { loadKernels } from '@spinmesh/kernels';
const base = loadKernels(undefined, { threads: 1 });
function data(rows, dims, seed) { let s = seed; const x = new Float32Array(rows * dims); for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) >>> 0; x[i] = (s >>> 16) & 1; } return x; }
const [V, H, B, C, kk, steps] = process.argv[2] === 'dense' ? [2048, 2048, 64, 64, 1, 30] : [784, 500, 100, 100, Number(process.argv[3] ?? 1), 60];
const x = data(640, V, 7);
const train = { batchSize: B, negative: 'pcd', chains: C, k: kk, learningRate: 0.01, momentum: 0.5, centring: true, statistics: 'samples', seed: 1 };
const net = Network.create(rbmSpec(V, H), base, { seed: 1, weightStd: 0.01 });
for (const K of [1, 2]) {
  const times = {}; let counting = false;
  const k = new Proxy(base, { get(t, p) { const v = Reflect.get(t, p, t); if (typeof v !== 'function') return v; return (...a) => { const t0 = performance.now(); const r = v.apply(t, a); if (counting) times[p] = (times[p] ?? 0) + performance.now() - t0; return r; }; } });
  const c = new LoopbackCluster({ network: rbmSpec(V, H), train, layout: evenLayout(rbmSpec(V, H), K), kernels: k, data: { x, rows: 640 }, steps, params: networkSource(net), tiles: process.argv[4] ?? 'owned', rowGroups: Number(process.argv[5] ?? 1), stagesPerTurn: (1 + 2 * kk) * Number(process.argv[5] ?? 1) });
  let busy = 0;
  const tr = c.trainers[0]; const adv = tr.advance.bind(tr); tr.advance = (b) => { counting = true; const t0 = performance.now(); const r = adv(b); busy += performance.now() - t0; counting = false; return r; };
  const warm = 4; c.run({ until: (q) => q.trainers.every((t) => t.position.applied >= warm) }); busy = 0; for (const key in times) delete times[key]; c.run();
  const n = steps - warm; let sum = 0;
  const rows = Object.entries(times).map(([p, t]) => { sum += t; return [p, (t / n).toFixed(3)]; }).sort((a, b) => b[1] - a[1]);
  console.log(`K=${K} shard0 busy ${(busy / n).toFixed(3)} ms/step, kernels ${(sum / n).toFixed(3)}:`, rows.map((r) => r.join(' ')).join(', '));
}
