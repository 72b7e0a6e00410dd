// A Trainer's state besides the network's parameters, as named arrays for a model file:
// counters, velocities, centring offsets and persistent chains.
import type { Kernels } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import type { StateArray } from './io/modelfile.js';
import type { Network } from './network.js';
import type { PersistentChains } from './chains.js';
import type { TrainedParameter } from './train-update.js';

/** The parts of a Trainer its state holds (shared arrays: restoring writes into them). */
export interface TrainerStateParts {
  kernels: Kernels;
  network: Network;
  params: readonly TrainedParameter[];
  velocities: readonly Float32Array[];
  offsets: readonly Float32Array[];
  offsetSet: Uint8Array;
  chains: PersistentChains | null;
}

/** A 48-bit counter as three 16-bit floats (exact in a Float32Array). */
function split48(v: number): Float32Array {
  return Float32Array.of(v % 65536, Math.floor(v / 65536) % 65536, Math.floor(v / 4294967296));
}

function join48(a: Float32Array): number {
  return a[0]! + a[1]! * 65536 + a[2]! * 4294967296;
}

/** Trainer.state(): see there for the names. */
export function trainerState(
  p: TrainerStateParts,
  step: number,
  epoch: number,
): Record<string, StateArray> {
  const k = p.kernels;
  const out: Record<string, StateArray> = {};
  out['trainer.step'] = { data: split48(step), shape: [3] };
  out['trainer.epoch'] = { data: split48(epoch), shape: [3] };
  p.params.forEach((param, i) => {
    k.download(p.velocities[i]!);
    out[`velocity.${param.name}`] = { data: p.velocities[i]!.slice(), shape: [...param.shape] };
  });
  for (const l of p.network.layers) {
    k.download(p.offsets[l.index]!);
    out[`offset.${l.name}`] = { data: p.offsets[l.index]!.slice(), shape: [l.size] };
  }
  out['trainer.offsetsSet'] = {
    data: Float32Array.from(p.offsetSet),
    shape: [p.offsetSet.length],
  };
  if (p.chains) {
    for (const l of p.network.layers) {
      const x = p.chains.state[l.index]!;
      k.download(x);
      out[`chains.${l.name}`] = { data: x.slice(), shape: [p.chains.count, l.size] };
    }
  }
  return out;
}

/**
 * Trainer.restoreState(): writes `s` into the parts, after checking every array against
 * `expected` (the trainer's own state); returns the counters. @throws SpecError
 */
export function restoreTrainerState(
  p: TrainerStateParts,
  s: Readonly<Record<string, StateArray>>,
  expected: Record<string, StateArray>,
): { step: number; epoch: number } {
  const k = p.kernels;
  for (const [name, e] of Object.entries(expected)) {
    const got = s[name];
    if (!got) throw new SpecError(`state.${name}`, 'is missing');
    if (
      got.shape.length !== e.shape.length ||
      got.shape.some((v, i) => v !== e.shape[i]) ||
      got.data.length !== e.data.length
    ) {
      throw new SpecError(
        `state.${name}`,
        `has shape [${got.shape.join(', ')}], expected [${e.shape.join(', ')}]`,
      );
    }
  }
  p.params.forEach((param, i) => {
    p.velocities[i]!.set(s[`velocity.${param.name}`]!.data);
    k.upload(p.velocities[i]!);
  });
  for (const l of p.network.layers) {
    p.offsets[l.index]!.set(s[`offset.${l.name}`]!.data);
    k.upload(p.offsets[l.index]!);
  }
  p.offsetSet.set(s['trainer.offsetsSet']!.data);
  if (p.chains) {
    for (const l of p.network.layers) {
      p.chains.state[l.index]!.set(s[`chains.${l.name}`]!.data);
      k.upload(p.chains.state[l.index]!);
    }
  }
  return { step: join48(s['trainer.step']!.data), epoch: join48(s['trainer.epoch']!.data) };
}
