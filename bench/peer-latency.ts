// `npm run bench -- peer-latency [--frames=N] [--units=N] [--chains=N]`: round-trip time of a
// spin frame between two processes over the workers' transport (PeerLink -> PeerServer, echoed
// back), one frame in flight at a time: the latency a lockstep exchange pays at least.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PeerLink, PeerServer } from '@spinmesh/worker';
import { log, numArg, parseArgs } from './_common.js';

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('peer-latency', argv, ['frames', 'units', 'chains']);
  const frames = numArg(args, 'frames', 2000);
  const units = numArg(args, 'units', 250);
  const chains = numArg(args, 'chains', 64);
  const packed = new Uint8Array(Math.ceil((units * chains) / 8));
  let arrived: (() => void) | undefined;
  const server = await PeerServer.start({
    jobId: 'bench',
    generation: 1,
    health: false,
    onFrame: () => arrived?.(),
  });
  const child = fork(fileURLToPath(new URL('./_peer-echo.js', import.meta.url)), [server.address]);
  const link = new PeerLink({
    address: await new Promise<string>((r) => child.once('message', (m) => r(String(m)))),
    jobId: 'bench',
    generation: 1,
    fromShard: 0,
  });
  const rtt: number[] = [];
  try {
    for (let i = 0; i < frames; i++) {
      const t = process.hrtime.bigint();
      const back = new Promise<void>((r) => (arrived = r));
      await link.send({
        step: i,
        phase: 0,
        layer: 0,
        unitStart: 0,
        unitCount: units,
        chains,
        packed,
      });
      await back;
      rtt.push(Number(process.hrtime.bigint() - t) / 1e3);
    }
  } finally {
    child.disconnect();
    await link.close();
    await server.close();
  }
  rtt.sort((a, b) => a - b);
  const q = (p: number): number => rtt[Math.min(rtt.length - 1, Math.floor(p * rtt.length))]!;
  log(`round trip: median ${q(0.5).toFixed(0)} us, p90 ${q(0.9).toFixed(0)} us`);
  return {
    frames,
    frame_spins: units * chains,
    round_trip_us_median: q(0.5),
    round_trip_us_p90: q(0.9),
    round_trip_us_p99: q(0.99),
  };
}
