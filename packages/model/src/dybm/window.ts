// The STDP window of the DyBM's learning rule, measured the way it is measured in slices: pair one
// pre-synaptic spike with one post-synaptic spike dt steps later (dt < 0: the post spike comes
// first), let the rule run on the surrounding silence, and read the change of the synapse's
// efficacy, the weight an arriving spike has on the post unit's log-odds (sum_l u_l, the kernel
// at arrival).
import { SpecError } from '../errors.js';
import { DyBM } from './dybm.js';

export interface StdpWindowOptions {
  /** Conduction delay of the pre -> post synapse. @defaultValue 3 */
  delay?: number;
  /** @defaultValue [0.5, 0.8] */
  ltpDecays?: readonly number[];
  /** @defaultValue [0.5, 0.8] */
  ltdDecays?: readonly number[];
  /** Both units' bias, the log-odds of a spike with no input. @defaultValue -3 */
  bias?: number;
  /** SGD learning rate. @defaultValue 0.1 */
  learningRate?: number;
  /** dt runs over -span .. span. @defaultValue 12 */
  span?: number;
  /** Silent steps simulated after the later spike (the traces' tails). @defaultValue 40 */
  tail?: number;
}

export interface StdpWindow {
  /** Spike-time differences t_post - t_pre. */
  dt: number[];
  /** Change of the efficacy sum_l u_l after one pairing at each dt. */
  dw: number[];
  /** The same experiment with the post unit never made to spike (the baseline of dw). */
  unpaired: number;
  delay: number;
}

/**
 * Runs the pairing experiment for every dt in [-span, span] on a fresh two-unit DyBM (unit 0 pre,
 * unit 1 post, one synapse 0 -> 1, weights 0, biases `bias`) trained online with plain SGD.
 */
export function stdpWindow(opts: StdpWindowOptions = {}): StdpWindow {
  const d = opts.delay ?? 3;
  const span = opts.span ?? 12;
  const tail = opts.tail ?? 40;
  const bias = opts.bias ?? -3;
  if (!Number.isInteger(span) || span < 0)
    throw new SpecError('span', `must be a non-negative integer, got ${span}`);
  if (!Number.isInteger(tail) || tail < 0)
    throw new SpecError('tail', `must be a non-negative integer, got ${tail}`);
  if (!Number.isFinite(bias)) throw new SpecError('bias', `must be finite, got ${bias}`);
  const spec = {
    units: 2,
    delays: [[], [d], [], []],
    ltpDecays: opts.ltpDecays ?? [0.5, 0.8],
    ltdDecays: opts.ltdDecays ?? [0.5, 0.8],
  };
  const learn = { optimizer: 'sgd' as const, learningRate: opts.learningRate ?? 0.1 };
  const efficacyChange = (post: number | null): number => {
    const m = new DyBM(spec, learn);
    m.parameters()[0]!.data.fill(bias);
    const pre = span;
    const steps = 2 * span + d + tail + 1;
    for (let t = 0; t < steps; t++) m.learn([t === pre ? 1 : 0, t === post ? 1 : 0]);
    return m.parameters()[1]!.data.reduce((a, b) => a + b, 0);
  };
  const dt: number[] = [];
  const dw: number[] = [];
  for (let k = -span; k <= span; k++) {
    dt.push(k);
    dw.push(efficacyChange(span + k));
  }
  return { dt, dw, unpaired: efficacyChange(null), delay: d };
}
