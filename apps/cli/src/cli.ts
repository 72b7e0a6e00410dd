#!/usr/bin/env node
// The `spinmesh` command line: the dispatcher. Parses the arguments, runs the command
// (commands/), and turns what it threw into a message and an exit code (errors.ts, ExitCode).
import { parseArgs, type Args } from './args.js';
import { TRAIN_OPTIONS, train } from './commands/train.js';
import { exportNpy, importNpy, info } from './commands/local.js';
import { GENERATE_OPTIONS, generate } from './commands/sequence.js';
import {
  CANCEL_OPTIONS,
  LIST_OPTIONS,
  PULL_OPTIONS,
  SUBMIT_OPTIONS,
  WATCH_OPTIONS,
  cancel,
  list,
  pull,
  submit,
  watch,
} from './commands/remote.js';
import {
  COMPLETE_OPTIONS,
  EVAL_OPTIONS,
  FILTERS_OPTIONS,
  SAMPLE_OPTIONS,
  complete,
  evaluate,
  filters,
  sample,
} from './commands/model.js';
import { Context, DEFAULT_ADDRESS } from './context.js';
import { ExitCode, InterruptedError, UsageError, exitCodeOf, isKnownError } from './errors.js';
import { Output } from './output.js';

const USAGE = `spinmesh: train, run and use Boltzmann machines with local learning rules

usage: spinmesh <command> [options]

in this process (no coordinator needed):
  train <spec.yaml|json>      run a training job and save the model: in this process, or, when
                              --workers is given or the spec has a cluster field (workers,
                              staleness, checkpointEverySteps), on an embedded local cluster (a
                              coordinator and one worker process per shard, over loopback gRPC)
      --out <file>            model file to write (default: <spec name>.smm); in this process it
                              is written after every evaluation and at the end, with the training
                              state; on the cluster once, at the end
      --resume <file>         continue training from a model file written by train (in this
                              process only)
      --epochs <n>            override spec.epochs
      --workers <n>           override spec.workers and run on the embedded local cluster
      --plot <file.png>       at the end, the learning curves (exact LL, AIS LL with its
                              interval, pseudo-LL, reconstruction error against the epoch) as
                              a PNG, with an SVG beside it
                              a sequence job (rule: stdp) trains its DyBM here and writes
                              <name>.dybm.json
  info <model>                print a model file's spec and training state
  export-npy <model> <dir>    write each parameter array as <dir>/<name>.npy (+ manifest.json)
  import-npy <dir> <model>    build a model file from arrays written by export-npy (or by hand)

jobs on a coordinator (--address):
  submit <spec.yaml|json>     queue a job; prints its id
      --id <id>               the job's id (default: the coordinator makes one up)
      --epochs <n>, --workers <n>   override the spec's fields
      --watch                 then follow it, as watch does
      --plot <file.png>       with --watch: the learning curves, as watch --plot writes them
  watch <job>                 follow a job to its end: a progress bar on a terminal (plain lines
                              otherwise), evaluations, state and worker changes; exit code 1
                              when it failed or was cancelled
      --plot <file.png>       at the end, the learning curves of the evaluations seen (PNG,
                              and an SVG beside it)
  list                        the jobs, oldest first, one page (the next page's token on stderr)
      --state <s>             only jobs in this state (queued, running, completed, failed,
                              cancelled); repeat it or separate with commas for several
      --page-size <n>         jobs per page, 1-1000 (default 100)
      --page-token <t>        the page after the one that gave this token
      --all                   every page
  cancel <job>                cancel a queued or running job (exit code 1 when it is final)
  pull <job>                  download a completed job's model (sizes checked)
      --out <file>            the model file (default: <job name>.smm, as the server names it)
      --npy <dir>             instead, its arrays as <dir>/<name>.npy + manifest.json

using a trained model: a completed job's (--job <id>, on the coordinator) or a model file's
(--model <file>, in this process); the same seed gives the same answer either way:
  sample --png <file>         samples drawn by block Gibbs sampling, as a grid of images
      --count <n>             samples (default 64)
      --sweeps <n>            Gibbs sweeps from the start state (default 1000)
      --temperature <T>       sample p(x)^(1/T), T > 0 (default 1)
      --seed <s>              seed of the draws (default 0)
      --states                draw the sampled states (default: their probabilities / means)
      --csv <file>            also (or instead) the values, one sample per line
  filters --png <file>        the receptive fields (weights) of the hidden units, one tile each,
                              each tile scaled to its own largest |weight| (0 is mid-grey)
      --count <n>             fields (default 100, at most the hidden layer's size)
  complete --png <file>       complete partial patterns; the image has one row per cue:
                              [original |] cue | completion | [sweeps of the trajectory]
      cues from the job's evaluation data (read on this machine; default) or --data:
      --count <n>             rows (default 8), from --offset <k> (default 0)
      --hide <half>           hide bottom|top|left|right|none of each image (default bottom);
                              the rest is clamped
      --flip <p>              flip a fraction p of the shown units (then nothing is clamped)
      or from a file:
      --cue-rows <file.csv>   one cue per line, a value per unit; '?' or empty: unknown
      --sweeps <n>            most sweeps (default 50); --temperature <T> (0 = greedy; default
                              0 for a Hopfield memory, 1 otherwise); --seed <s>
      --trajectory [n]        also n frames of the settling, evenly spaced (default 8)
      --csv <file>            also (or instead) the completed values, one row per line
  eval [<model>] [<data>]     evaluate: a model file, or --job / --model; the data as
                              bas:<n> | fashion-mnist:<train|test>[:<limit>] | idx:<images>[,<labels>]
                              | csv:<path> | a data spec in YAML ('{kind: bas, size: 4}'), as
                              <data> or --data (default: the job's evaluation data; for a job,
                              paths are read on the coordinator)
      --exact --pseudo --recon --probe
      --ais [runs[,steps]]    AIS log-likelihood (default 100 runs, 14500 temperatures)
      --recall-flip <p>       recall accuracy from cues with a fraction p of the units flipped
      --limit <n>             at most n rows; --seed <s>; --binarize threshold|none|bernoulli
                              (default: recall 0.1 for a Hopfield memory, recon otherwise)
  generate                    continue a cue with a sequence model (rule: stdp; --job or --model):
                              prints cue | generated frames as a picture, one line per unit
      --cue-word <word>       the cue: a word of the 7-pixel font, read column by column
      --cue-csv <file>        the cue: one frame per line (default: no cue, a blank past)
      --steps <n>             frames to generate (default 60)
      --sample                sample the frames (seeded by --seed) instead of the most likely
      --csv <file>            also the generated frames, one per line
  image options: --scale <n> (pixels per unit; default: tiles of about 20 pixels), --cols <n>
  (tiles per row), --layer <name> (default: the first layer)

global options:
  --address <host:port>   the coordinator (default: env SPINMESH_ADDRESS or ${DEFAULT_ADDRESS})
  --token <token>         API token, sent as 'authorization: Bearer <token>' (env SPINMESH_TOKEN)
  --tls                   TLS, checking the server against the system's CAs
  --tls-ca <file>         TLS, checking the server against this CA (PEM; env SPINMESH_TLS_CA)
  --deadline <seconds>    give up a call (a whole watch or download) after this long
  --kernels <cuda|native|portable|auto> dense kernels here (default: env SPINMESH_KERNELS or auto)
  --json                  machine-readable output: one JSON object per line on stdout
  -h, --help              this text

exit codes:
  0    success
  1    failure: the job failed or was cancelled (watch, train), the job's state does not allow
       the request (cancelling a finished job, the model of a job not completed), a server error
  2    bad usage, spec, option or input file, or a request the server calls invalid
  3    no such job
  4    the coordinator is unreachable or unavailable, or the deadline passed
  5    the token is missing or not valid
  130  interrupted (Ctrl-C; 143 for SIGTERM); every process the command started is stopped

an unexpected error (a bug) prints its message on one line; SPINMESH_DEBUG=1 adds the stack trace`;

interface Command {
  run(ctx: Context): number | Promise<number>;
  options: readonly string[];
  /** Most positional arguments. */
  args: number;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  train: { run: train, options: TRAIN_OPTIONS, args: 1 },
  info: { run: info, options: [], args: 1 },
  'export-npy': { run: exportNpy, options: [], args: 2 },
  'import-npy': { run: importNpy, options: [], args: 2 },
  submit: { run: submit, options: SUBMIT_OPTIONS, args: 1 },
  watch: { run: watch, options: WATCH_OPTIONS, args: 1 },
  list: { run: list, options: LIST_OPTIONS, args: 0 },
  cancel: { run: cancel, options: CANCEL_OPTIONS, args: 1 },
  pull: { run: pull, options: PULL_OPTIONS, args: 1 },
  sample: { run: sample, options: SAMPLE_OPTIONS, args: 0 },
  filters: { run: filters, options: FILTERS_OPTIONS, args: 0 },
  complete: { run: complete, options: COMPLETE_OPTIONS, args: 0 },
  eval: { run: evaluate, options: EVAL_OPTIONS, args: 2 },
  generate: { run: generate, options: GENERATE_OPTIONS, args: 0 },
};

function report(e: unknown, ctx: Context | null): number {
  // Interrupted: the calls in flight fail as cancelled; the interruption is what happened.
  const err =
    ctx?.interrupted && !(e instanceof InterruptedError)
      ? new InterruptedError(ctx.interrupted)
      : e;
  if (!isKnownError(err)) {
    // Not one of ours: a bug or an environment problem. Its message, one line; the stack, which
    // says where, only when asked for (SPINMESH_DEBUG=1), as it means nothing to a user.
    const debug = process.env['SPINMESH_DEBUG'] === '1';
    const text =
      err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err);
    process.stderr.write(
      `spinmesh: failed: ${text}${debug ? '' : ' (SPINMESH_DEBUG=1 shows where)'}\n`,
    );
  } else process.stderr.write(`spinmesh: ${(err as Error).message}\n`);
  return exitCodeOf(err);
}

async function main(argv: readonly string[]): Promise<number> {
  let ctx: Context | null = null;
  try {
    const args: Args = parseArgs(argv);
    const out = new Output(args.has('json'));
    const name = args.command;
    if (args.has('help') || name === undefined) {
      process.stdout.write(`${USAGE}\n`);
      return name !== undefined || args.has('help') ? ExitCode.ok : ExitCode.usage;
    }
    const command = COMMANDS[name];
    if (!command)
      return report(new UsageError(`unknown command '${name}' (spinmesh --help lists them)`), null);
    args.check(name, command.options, command.args);
    ctx = new Context(args, out);
    const code = await command.run(ctx);
    return ctx.interrupted ? report(new InterruptedError(ctx.interrupted), ctx) : code;
  } catch (e) {
    return report(e, ctx);
  } finally {
    ctx?.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = report(e, null);
  },
);
