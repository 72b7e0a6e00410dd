// `npm run bench -- scaling [--visible=N] [--hidden=N] [--rows=N] [--max-k=N] [--link-gbps=X]
// [--quick]`: the inputs of the cluster's step-time model, measured here, and the model's
// prediction of a PCD-1 step of a dense bipartite RBM for K = 1, 2, 4, ... shards.
//
// Measured: the per-shard kernel work of one step at each K (one BLAS thread: a worker owns a
// core), and the peer transport (PeerLink -> PeerServer between two processes): the one-way time
// of a frame, and the cost per frame when frames stream back to back, both against the frame's
// size. The model (docs/cluster-scaling.md) adds them up for two designs:
//  - replicated (today's): shard s holds the row band W[V_s, :] and the column band W[:, H_s], so
//    a cross-shard tile is held and updated twice; only 1-bit spins travel;
//  - owned: shard s holds only its row band W[V_s, :]; it sends the other shards its partial
//    hidden fields (float32) and broadcasts its hidden spins (1 bit) to every row-band owner.
// Figures only; nothing is asserted.
import { fork } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { UnitType, bitWords, loadKernels, type Kernels } from '@spinmesh/kernels';
import { PeerLink, PeerServer } from '@spinmesh/worker';
import { environment, log, median, numArg, parseArgs } from './_common.js';
import { FrameReader, frameHeader } from './_frames.js';

/** The shapes of one PCD-1 step of a bipartite RBM split K ways. */
interface Shape {
  visible: number;
  hidden: number;
  /** Rows of a stage: batch rows (positive phase) and persistent chains (negative phase). */
  rows: number;
}

/** Seconds per call of fn: one warm-up call, then repeats until minSeconds (at least one). */
function timeIt(fn: () => void, minSeconds: number): number {
  fn();
  let reps = 0;
  const start = performance.now();
  do {
    fn();
    reps++;
  } while (performance.now() - start < minSeconds * 1000);
  return (performance.now() - start) / 1000 / reps;
}

function filled(n: number, seed: number, binary: boolean): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    out[i] = binary ? (u < 0.4 ? 1 : 0) : u - 0.5;
  }
  return out;
}

/** Seconds of an rows x n x k product (C = A B), one call. */
function gemmSeconds(K: Kernels, m: number, n: number, k: number, minSeconds: number): number {
  const a = filled(m * k, 1, true);
  const b = filled(k * n, 2, false);
  const c = new Float32Array(m * n);
  return timeIt(() => K.sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n), minSeconds);
}

/** Seconds of the centred weight correlation of an m x w block from bits, R + C rows. */
function correlationSeconds(
  K: Kernels,
  m: number,
  w: number,
  rows: number,
  minSec: number,
): number {
  const X = filled(2 * rows * m, 5, true);
  const Y = filled(2 * rows * w, 6, true);
  const words = (n: number): Uint32Array => new Uint32Array(n * bitWords(rows));
  const [xp, xn, yp, yn] = [words(m), words(m), words(w), words(w)];
  const [ox, oy] = [new Uint8Array(m), new Uint8Array(w)];
  const mu = new Float32Array(m).fill(0.4);
  const lam = new Float32Array(w).fill(0.4);
  const out = new Float32Array(m * w);
  return timeIt(() => {
    K.packColumns(rows, m, X, m, xp, ox);
    K.packColumns(rows, m, X.subarray(rows * m), m, xn, ox);
    K.packColumns(rows, w, Y, w, yp, oy);
    K.packColumns(rows, w, Y.subarray(rows * w), w, yn, oy);
    K.bitCorrelation(m, w, rows, rows, xp, xn, yp, yn, mu, lam, null, null, out, w);
  }, minSec);
}

/** Seconds of applying an update to n weights: momentum into the velocity, then the weights. */
function applySeconds(K: Kernels, n: number, minSeconds: number): number {
  const g = filled(n, 7, false);
  const v = new Float32Array(n);
  const w = filled(n, 8, false);
  return timeIt(() => {
    K.axpby(n, 0.01, g, 0.9, v);
    K.axpby(n, 1, v, 1, w);
  }, minSeconds);
}

/** Seconds of drawing rows x n Bernoulli units from their fields. */
function drawSeconds(K: Kernels, rows: number, n: number, minSeconds: number): number {
  const field = filled(rows * n, 9, false);
  const bias = new Float32Array(n);
  const out = new Float32Array(rows * n);
  const site = { seedLo: 1, seedHi: 2, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
  return timeIt(() => {
    site.step++;
    K.sampleUnits(UnitType.Bernoulli, rows, n, field, n, bias, 1, null, out, site);
  }, minSeconds);
}

/** One shard's kernel seconds of a PCD-1 step (exact positive phase), by design. */
interface ShardCompute {
  k: number;
  /** Owned design: each tile held, and updated, once. */
  owned_s: number;
  /** Replicated design: cross-shard tiles held, and updated, by both of their shards. */
  replicated_s: number;
  parts: Record<string, number>;
}

function measureCompute(K: Kernels, s: Shape, k: number, minSec: number): ShardCompute {
  const vk = Math.ceil(s.visible / k);
  const hk = Math.ceil(s.hidden / k);
  // Owned: hidden partials from the shard's own visible rows (positive and negative stage),
  // visible fields from every hidden unit's spins, the sum of K partials, the row band's
  // correlation and update.
  const partial = gemmSeconds(K, s.rows, s.hidden, vk, minSec);
  const visibleField = gemmSeconds(K, s.rows, vk, s.hidden, minSec);
  const sumPartials = k > 1 ? addSeconds(K, s.rows * hk, minSec) : 0;
  const drawHidden = drawSeconds(K, s.rows, hk, minSec);
  const drawVisible = drawSeconds(K, s.rows, vk, minSec);
  const correlation = correlationSeconds(K, vk, s.hidden, s.rows, minSec);
  const apply = applySeconds(K, vk * s.hidden, minSec);
  const owned =
    2 * partial +
    visibleField +
    2 * (k - 1) * sumPartials +
    2 * drawHidden +
    drawVisible +
    correlation +
    apply;
  // Replicated: the hidden fields of the shard's own hidden units from every visible spin, the
  // same visible fields, and the correlation and update of its row band and its column band
  // (the tile they share counted once): (2K - 1) tiles of K^2.
  const hiddenField = gemmSeconds(K, s.rows, hk, s.visible, minSec);
  const held = (2 * k - 1) / k;
  const replicated =
    k === 1
      ? owned // the same work: one shard holds every weight once
      : 2 * hiddenField +
        visibleField +
        2 * drawHidden +
        drawVisible +
        held * (correlation + apply);
  return {
    k,
    owned_s: owned,
    replicated_s: replicated,
    parts: {
      partial_fields_s: partial,
      hidden_fields_s: hiddenField,
      visible_fields_s: visibleField,
      sum_partials_s: sumPartials,
      draw_hidden_s: drawHidden,
      draw_visible_s: drawVisible,
      row_band_correlation_s: correlation,
      row_band_apply_s: apply,
    },
  };
}

function addSeconds(K: Kernels, n: number, minSeconds: number): number {
  const x = filled(n, 10, false);
  const y = filled(n, 11, false);
  return timeIt(() => K.axpby(n, 1, x, 1, y), minSeconds);
}

/** The peer transport against frame size: one-way latency, and streamed cost per frame. */
interface Transport {
  bytes: number;
  one_way_us: number;
  streamed_us_per_frame: number;
}

/** A transport to an echoing child: send a frame of n bytes; arrivals are counted. */
interface EchoLink {
  send(bytes: number): Promise<void>;
  close(): Promise<void>;
}

/** Times frames of each size to an echoing peer: one at a time, then back to back. */
async function timeEcho(
  open: (onEcho: () => void) => Promise<EchoLink>,
  sizes: number[],
  frames: number,
  name: string,
): Promise<Transport[]> {
  let arrived: (() => void) | undefined;
  let count = 0;
  let want = 0;
  const link = await open(() => {
    count++;
    if (count >= want) arrived?.();
  });
  const exchange = async (bytes: number, n: number): Promise<void> => {
    count = 0;
    want = n;
    const all = new Promise<void>((r) => (arrived = r));
    const sends: Promise<void>[] = [];
    for (let i = 0; i < n; i++) sends.push(link.send(bytes));
    await Promise.all(sends);
    await all;
  };
  const out: Transport[] = [];
  try {
    for (let i = 0; i < 100; i++) await exchange(1024, 1); // warm-up: JIT, windows, buffers
    for (const bytes of sizes) {
      const roundTrips: number[] = [];
      for (let i = 0; i < frames; i++) {
        const t = performance.now();
        await exchange(bytes, 1);
        roundTrips.push(performance.now() - t);
      }
      const t = performance.now();
      await exchange(bytes, frames);
      const streamed = ((performance.now() - t) * 1000) / frames;
      out.push({
        bytes,
        one_way_us: (median(roundTrips) * 1000) / 2,
        streamed_us_per_frame: streamed,
      });
      log(
        `${name} frame ${bytes} B: one way ${out.at(-1)!.one_way_us.toFixed(0)} us, streamed ${streamed.toFixed(0)} us/frame`,
      );
    }
  } finally {
    await link.close();
  }
  return out;
}

/** The workers' transport: PeerLink -> PeerServer (gRPC), echoed by a child process. */
async function openPeerLink(onEcho: () => void): Promise<EchoLink> {
  const server = await PeerServer.start({
    jobId: 'bench',
    generation: 1,
    health: false,
    onFrame: onEcho,
  });
  const child = fork(fileURLToPath(new URL('./_peer-echo.js', import.meta.url)), [server.address]);
  const link = new PeerLink({
    address: await new Promise<string>((r) => child.once('message', (m) => r(String(m)))),
    jobId: 'bench',
    generation: 1,
    fromShard: 0,
  });
  let step = 0;
  return {
    send: (bytes) =>
      link.send({
        step: step++,
        phase: 0,
        layer: 0,
        unitStart: 0,
        unitCount: (bytes * 8) / 64,
        chains: 64,
        packed: new Uint8Array(bytes),
      }),
    close: async () => {
      child.disconnect();
      await link.close();
      await server.close();
    },
  };
}

/** A raw TCP connection with length-prefixed frames, echoed by a child process. */
async function openTcp(onEcho: () => void): Promise<EchoLink> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const child = fork(fileURLToPath(new URL('./_tcp-echo.js', import.meta.url)), [String(port)]);
  const socket = await new Promise<Socket>((r) => server.once('connection', r));
  socket.setNoDelay(true);
  const reader = new FrameReader(onEcho);
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
  const payloads = new Map<number, Buffer>();
  return {
    send: (bytes) => {
      let p = payloads.get(bytes);
      if (!p) payloads.set(bytes, (p = Buffer.alloc(bytes)));
      socket.cork();
      socket.write(frameHeader(bytes));
      socket.write(p);
      socket.uncork();
      return Promise.resolve();
    },
    close: async () => {
      child.disconnect();
      socket.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Least-squares line y = a + b x. */
function fitLine(xs: number[], ys: number[]): { a: number; b: number } {
  const n = xs.length;
  const mx = xs.reduce((p, x) => p + x, 0) / n;
  const my = ys.reduce((p, y) => p + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const b = sxy / sxx;
  return { a: my - b * mx, b };
}

/** The transport model: per-frame CPU cost and wire time, one-way latency. */
export interface LinkModel {
  /** Sender's and receiver's cost of one frame beyond its bytes, seconds. */
  perFrameS: number;
  /** Seconds per byte streamed (the slower of the transport's encoding and the link). */
  perByteS: number;
  /** One-way latency of a small frame, seconds. */
  latencyS: number;
}

/** Predicted seconds of a PCD-1 step on K shards (docs/cluster-scaling.md). */
export interface StepPrediction {
  /** Every exchanging stage waits for its frames: compute + transport CPU + a latency a stage. */
  lockstep_s: number;
  /** Rows in groups, a group's frames in flight while the next computes: one latency is left. */
  pipelined_s: number;
  /** As pipelined, with the transport's CPU off the computing core (a thread of its own). */
  offloaded_s: number;
  /** Bytes a shard sends a step. */
  wire_bytes_out: number;
  /** Frames a shard sends a step. */
  frames_out: number;
}

export function predictStep(
  s: Shape,
  k: number,
  computeS: number,
  link: LinkModel,
  design: 'owned' | 'replicated',
): StepPrediction {
  const none = { wire_bytes_out: 0, frames_out: 0 };
  if (k === 1)
    return { lockstep_s: computeS, pipelined_s: computeS, offloaded_s: computeS, ...none };
  const hk = Math.ceil(s.hidden / k);
  const vk = Math.ceil(s.visible / k);
  const peers = k - 1;
  // What a shard sends at each stage of a step: [positive hidden, negative visible, negative
  // hidden]. Owned: its partial fields (float32) to each hidden shard, then its drawn hidden
  // spins to every row band (each reads all hidden units); a visible unit is read only by its
  // own row band, so the visible stage sends nothing. Replicated: its drawn spins to each peer.
  const hiddenOwned = { frames: 2 * peers, bytes: peers * s.rows * hk * (4 + 1 / 8) };
  const stages =
    design === 'owned'
      ? [hiddenOwned, { frames: 0, bytes: 0 }, hiddenOwned]
      : [
          { frames: peers, bytes: (peers * s.rows * hk) / 8 },
          { frames: peers, bytes: (peers * s.rows * vk) / 8 },
          { frames: peers, bytes: (peers * s.rows * hk) / 8 },
        ];
  let transport = 0;
  let exchanging = 0;
  let wire = 0;
  let frames = 0;
  for (const st of stages) {
    if (st.frames === 0) continue;
    exchanging++;
    wire += st.bytes;
    frames += st.frames;
    transport += st.frames * link.perFrameS + st.bytes * link.perByteS;
  }
  return {
    lockstep_s: computeS + transport + exchanging * link.latencyS,
    pipelined_s: computeS + transport + link.latencyS,
    offloaded_s: Math.max(computeS, transport) + link.latencyS,
    wire_bytes_out: wire,
    frames_out: frames,
  };
}

/** Fits a LinkModel to echo timings; bandwidth is capped by a link of linkGbps. */
function linkModel(t: Transport[], linkGbps: number): LinkModel {
  const fit = fitLine(
    t.map((x) => x.bytes),
    t.map((x) => x.streamed_us_per_frame * 1e-6),
  );
  return {
    perFrameS: Math.max(0, fit.a),
    perByteS: Math.max(fit.b, 8 / (linkGbps * 1e9)),
    latencyS: t[0]!.one_way_us * 1e-6,
  };
}

/** Both transports timed against frame size, and the link model fitted to each. */
async function measureLinks(
  quick: boolean,
  linkGbps: number,
): Promise<{
  measured: { grpc: Transport[]; tcp: Transport[] };
  links: { grpc: LinkModel; tcp: LinkModel };
}> {
  const sizes = quick ? [128, 8192, 65536] : [128, 1024, 8192, 65536, 262144, 1048576];
  const frames = quick ? 20 : 200;
  const measured = {
    grpc: await timeEcho(openPeerLink, sizes, frames, 'grpc'),
    tcp: await timeEcho(openTcp, sizes, frames, 'tcp'),
  };
  const links = {
    grpc: linkModel(measured.grpc, linkGbps),
    tcp: linkModel(measured.tcp, linkGbps),
  };
  for (const [name, l] of Object.entries(links))
    log(
      `${name}: ${(l.perFrameS * 1e6).toFixed(1)} us/frame, ${(1 / l.perByteS / 1e6).toFixed(0)} MB/s, latency ${(l.latencyS * 1e6).toFixed(0)} us`,
    );

  return { measured, links };
}

/** The model at one K: the compute-only bounds and speedups by design and transport. */
interface Prediction {
  k: number;
  compute_owned_ms: number;
  compute_replicated_ms: number;
  compute_only_bound_owned: number;
  compute_only_bound_replicated: number;
  speedup_replicated_grpc_lockstep: number;
  speedup_owned_grpc_lockstep: number;
  speedup_owned_grpc_pipelined: number;
  speedup_owned_tcp_lockstep: number;
  speedup_owned_tcp_pipelined: number;
  speedup_owned_tcp_offloaded: number;
  wire_bytes_out_owned: number;
  wire_bytes_out_replicated: number;
  frames_out_owned: number;
  parts_ms: Record<string, number>;
}

/** The model's step times and speedups at each K measured, for both designs and transports. */
function predict(
  shape: Shape,
  compute: ShardCompute[],
  links: { grpc: LinkModel; tcp: LinkModel },
): Prediction[] {
  const one = compute[0]!.owned_s;
  return compute.map((c) => {
    const step = (design: 'owned' | 'replicated', link: LinkModel): StepPrediction =>
      predictStep(shape, c.k, design === 'owned' ? c.owned_s : c.replicated_s, link, design);
    const [rep, ownGrpc, ownTcp] = [
      step('replicated', links.grpc),
      step('owned', links.grpc),
      step('owned', links.tcp),
    ];
    return {
      k: c.k,
      compute_owned_ms: c.owned_s * 1e3,
      compute_replicated_ms: c.replicated_s * 1e3,
      compute_only_bound_owned: one / c.owned_s,
      compute_only_bound_replicated: one / c.replicated_s,
      speedup_replicated_grpc_lockstep: one / rep.lockstep_s,
      speedup_owned_grpc_lockstep: one / ownGrpc.lockstep_s,
      speedup_owned_grpc_pipelined: one / ownGrpc.pipelined_s,
      speedup_owned_tcp_lockstep: one / ownTcp.lockstep_s,
      speedup_owned_tcp_pipelined: one / ownTcp.pipelined_s,
      speedup_owned_tcp_offloaded: one / ownTcp.offloaded_s,
      wire_bytes_out_owned: ownTcp.wire_bytes_out,
      wire_bytes_out_replicated: rep.wire_bytes_out,
      frames_out_owned: ownTcp.frames_out,
      parts_ms: Object.fromEntries(Object.entries(c.parts).map(([n, v]) => [n, v * 1e3])),
    };
  });
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('scaling', argv, [
    'visible',
    'hidden',
    'rows',
    'max-k',
    'link-gbps',
    'quick',
  ]);
  const quick = args.has('quick');
  const shape: Shape = {
    visible: numArg(args, 'visible', quick ? 512 : 8192),
    hidden: numArg(args, 'hidden', quick ? 512 : 8192),
    rows: numArg(args, 'rows', 64),
  };
  const maxK = numArg(args, 'max-k', quick ? 4 : 64);
  const linkGbps = numArg(args, 'link-gbps', 10);
  const minSec = quick ? 0.01 : 0.2;
  const K = loadKernels('auto', { threads: 1 });
  log(`scaling: ${shape.visible}+${shape.hidden}, ${shape.rows} rows, kernels ${K.describe()}`);

  const compute: ShardCompute[] = [];
  for (let k = 1; k <= maxK; k *= 2) {
    compute.push(measureCompute(K, shape, k, minSec));
    const c = compute.at(-1)!;
    log(
      `K=${k}: owned ${(c.owned_s * 1e3).toFixed(2)} ms, replicated ${(c.replicated_s * 1e3).toFixed(2)} ms`,
    );
  }

  const { measured, links } = await measureLinks(quick, linkGbps);
  const predictions = predict(shape, compute, links);
  for (const p of predictions)
    log(
      `K=${p.k}: compute-only x${p.compute_only_bound_owned.toFixed(2)} owned, x${p.compute_only_bound_replicated.toFixed(2)} replicated; ` +
        `replicated/grpc x${p.speedup_replicated_grpc_lockstep.toFixed(2)}; owned/grpc x${p.speedup_owned_grpc_lockstep.toFixed(2)} ` +
        `(pipelined x${p.speedup_owned_grpc_pipelined.toFixed(2)}); owned/tcp x${p.speedup_owned_tcp_lockstep.toFixed(2)} ` +
        `(pipelined x${p.speedup_owned_tcp_pipelined.toFixed(2)}, offloaded x${p.speedup_owned_tcp_offloaded.toFixed(2)})`,
    );
  return {
    ...environment(K),
    network: `RBM ${shape.visible}+${shape.hidden}, ${shape.rows} batch rows and ${shape.rows} chains, PCD-1`,
    link_assumed_gbps: linkGbps,
    links: Object.fromEntries(
      Object.entries(links).map(([name, l]) => [
        name,
        {
          per_frame_us: l.perFrameS * 1e6,
          bandwidth_mb_s: 1 / l.perByteS / 1e6,
          latency_us: l.latencyS * 1e6,
        },
      ]),
    ),
    transport: measured,
    predictions,
  };
}
