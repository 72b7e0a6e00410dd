// `npm run bench -- dybm-science [--seeds=N] [--first-seed=S] [--cue=12] [--max-rounds=N]
// [--network=ours|paper]`: the SCIENCE task of Osogami & Otsuka (2015). Seven visible units learn
// the bitmap of SCIENCE read column by column (40 frames of 7 bits) and its reverse, in rounds of
// one episode of each (forget the past, learn one period and the cue again); after each round
// both are recalled from their first `cue` frames. Prints, per seed, the rounds (and frames
// learned) until each sequence was first recalled exactly and until both were.
//
// --network=paper: one synapse per pair, delays uniform in 1..9, three LTP and three LTD decays
// (0.25, 0.5, 0.75), AdaGrad with rate 1, no centring: the paper's settings, for comparison.
// --network=one-per-pair: ours, but one synapse per pair with a delay uniform in 3..11.
// --uncentred: without centring.
import { cpus } from 'node:os';
import {
  DyBM,
  type DyBMOptions,
  type DyBMSpec,
  SCIENCE_CUE_STEPS,
  SCIENCE_OPTIONS,
  framesToText,
  memorizeSequences,
  randomDelays,
  recallErrors,
  reverseFrames,
  scienceSpec,
  wordFrames,
} from '@spinmesh/model';
import { log, numArg, parseArgs } from './_common.js';

function network(kind: string, seed: number): { spec: DyBMSpec; opts: DyBMOptions } {
  if (kind === 'ours') return { spec: scienceSpec(), opts: { ...SCIENCE_OPTIONS, seed } };
  if (kind === 'one-per-pair')
    return {
      spec: { ...scienceSpec(), delays: randomDelays(7, 3, 11, seed) },
      opts: { ...SCIENCE_OPTIONS, seed },
    };
  if (kind === 'paper')
    return {
      spec: {
        units: 7,
        delays: randomDelays(7, 1, 9, seed),
        ltpDecays: [0.25, 0.5, 0.75],
        ltdDecays: [0.25, 0.5, 0.75],
      },
      opts: { optimizer: 'adagrad', learningRate: 1, initStd: 0.1, seed },
    };
  throw new Error(
    `bench dybm-science: --network must be 'ours', 'one-per-pair' or 'paper', got '${kind}'`,
  );
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('dybm-science', argv, [
    'seeds',
    'first-seed',
    'cue',
    'max-rounds',
    'network',
    'uncentred',
  ]);
  const seeds = numArg(args, 'seeds', 3);
  const first = numArg(args, 'first-seed', 1);
  const cue = numArg(args, 'cue', SCIENCE_CUE_STEPS);
  const maxRounds = numArg(args, 'max-rounds', 2000);
  const kind = String(args.get('network') ?? 'ours');
  const uncentred = args.get('uncentred') === true;
  const fwd = wordFrames('SCIENCE');
  const rev = reverseFrames(fwd);
  log(
    `SCIENCE, ${fwd.steps} frames of ${fwd.units} bits:\n${framesToText(fwd.data, fwd.steps, 7)}`,
  );
  const runs = [];
  for (let seed = first; seed < first + seeds; seed++) {
    const { spec, opts } = network(kind, seed);
    const t0 = performance.now();
    const m = new DyBM(spec, uncentred ? { ...opts, centring: false } : opts);
    const res = memorizeSequences(m, [fwd, rev], { cueSteps: cue, maxRounds });
    const seconds = (performance.now() - t0) / 1000;
    const errors = [fwd, rev].map((s) => recallErrors(m, s, cue));
    log(
      `seed ${seed}: ${res.recalled ? 'both recalled' : 'NOT recalled'} after ${res.rounds} rounds ` +
        `(forward first at ${res.firstRecalled[0]}, reverse at ${res.firstRecalled[1]}), ${seconds.toFixed(2)} s`,
    );
    if (seed === first)
      errors.forEach((e, q) =>
        log(
          `${q ? 'reverse' : 'forward'} recalled from a ${cue}-frame cue:\n${framesToText(e.generated, fwd.steps, 7)}`,
        ),
      );
    runs.push({
      seed,
      recalled: res.recalled,
      rounds: res.rounds,
      forward_first_recalled_round: res.firstRecalled[0],
      reverse_first_recalled_round: res.firstRecalled[1],
      steps_per_sequence: res.steps[0],
      wrong_frames: errors.map((e) => e.wrongFrames),
      seconds,
    });
  }
  const { spec, opts } = network(kind, first);
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    task: 'SCIENCE and its reverse, 40 frames x 7 units each',
    network: kind,
    synapses: new DyBM(spec, opts).synapses().pre.length,
    spec: {
      ...spec,
      delays:
        kind === 'ours'
          ? 'every pair: [3, 7, 11]'
          : `one per pair, uniform in ${kind === 'paper' ? '1..9' : '3..11'}, by seed`,
    },
    options: { ...opts, centring: !uncentred && opts.centring === true, seed: undefined },
    protocol:
      'rounds; a round = for each sequence: reset, learn one period + the cue frames; then recall both from reset + cue',
    cue_steps: cue,
    max_rounds: maxRounds,
    seeds: runs.map((r) => r.seed),
    all_recalled: runs.every((r) => r.recalled),
    rounds_to_recall_both: runs.map((r) => r.rounds),
    forward_rounds: runs.map((r) => r.forward_first_recalled_round),
    reverse_rounds: runs.map((r) => r.reverse_first_recalled_round),
    steps_per_sequence: runs.map((r) => r.steps_per_sequence),
    runs,
  };
}
