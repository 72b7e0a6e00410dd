// Command-line arguments: positional words and --options, each option of a known kind, checked
// against what the command takes so that a typo is an error, not a silently ignored flag.
import { UsageError } from './errors.js';

/**
 * 'flag': present or not. 'value': takes a value (`--out m.smm` or `--out=m.smm`). 'list': a
 * value, repeatable, and comma-separated values count one by one. 'optional': a value only
 * when written with '=' or when the next word starts with a digit (`--ais`, `--ais 100`).
 */
export type OptionKind = 'flag' | 'value' | 'list' | 'optional';

/** Every option of the command line and its kind. */
export const OPTIONS: Readonly<Record<string, OptionKind>> = {
  // global
  help: 'flag',
  json: 'flag',
  kernels: 'value',
  address: 'value',
  token: 'value',
  tls: 'flag',
  'tls-ca': 'value',
  deadline: 'value',
  // train
  out: 'value',
  resume: 'value',
  epochs: 'value',
  workers: 'value',
  // train, submit --watch, watch
  plot: 'value',
  // submit, list, pull
  id: 'value',
  watch: 'flag',
  state: 'list',
  'page-size': 'value',
  'page-token': 'value',
  all: 'flag',
  npy: 'value',
  // model operations
  job: 'value',
  model: 'value',
  png: 'value',
  csv: 'value',
  count: 'value',
  sweeps: 'value',
  temperature: 'value',
  seed: 'value',
  layer: 'value',
  states: 'flag',
  scale: 'value',
  cols: 'value',
  'cue-rows': 'value',
  data: 'value',
  offset: 'value',
  hide: 'value',
  flip: 'value',
  trajectory: 'optional',
  // generate
  'cue-word': 'value',
  'cue-csv': 'value',
  steps: 'value',
  sample: 'flag',
  // eval
  exact: 'flag',
  ais: 'optional',
  pseudo: 'flag',
  recon: 'flag',
  probe: 'flag',
  'recall-flip': 'value',
  limit: 'value',
  binarize: 'value',
};

/** The options every command takes. */
export const GLOBAL_OPTIONS = [
  'help',
  'json',
  'kernels',
  'address',
  'token',
  'tls',
  'tls-ca',
  'deadline',
] as const;

interface NumberRule {
  min?: number;
  max?: number;
  integer?: boolean;
  /** The bound min is excluded (a temperature > 0). */
  minExclusive?: boolean;
}

/** A parsed command line. */
export class Args {
  constructor(
    readonly positional: readonly string[],
    private readonly values: ReadonlyMap<string, readonly string[] | true>,
  ) {}

  /** The command: the first positional word. */
  get command(): string | undefined {
    return this.positional[0];
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** The names of the options given. */
  names(): string[] {
    return [...this.values.keys()];
  }

  /** The option's value (the last one given); undefined when absent or given without one. */
  str(name: string): string | undefined {
    const v = this.values.get(name);
    return v === undefined || v === true ? undefined : v[v.length - 1];
  }

  /** Every value of a 'list' option, in order. */
  list(name: string): string[] {
    const v = this.values.get(name);
    return v === undefined || v === true ? [] : [...v];
  }

  /** A numeric option, checked; undefined when absent. */
  num(name: string, rule: NumberRule = {}): number | undefined {
    const s = this.str(name);
    if (s === undefined) {
      if (this.has(name)) throw new UsageError(`--${name} needs a value`);
      return undefined;
    }
    const v = Number(s);
    const what = rule.integer ? 'an integer' : 'a number';
    const range =
      rule.min !== undefined && rule.max !== undefined
        ? ` in [${rule.min}, ${rule.max}]`
        : rule.min !== undefined
          ? ` ${rule.minExclusive ? '>' : '>='} ${rule.min}`
          : '';
    if (
      s.trim() === '' ||
      !Number.isFinite(v) ||
      (rule.integer && !Number.isSafeInteger(v)) ||
      (rule.min !== undefined && (rule.minExclusive ? v <= rule.min : v < rule.min)) ||
      (rule.max !== undefined && v > rule.max)
    )
      throw new UsageError(`--${name} must be ${what}${range} (got '${s}')`);
    return v;
  }

  int(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    return this.num(name, { integer: true, min, max });
  }

  /** Refuses options the command does not take, and more positional words than it takes. */
  check(command: string, options: readonly string[], maxPositional: number): void {
    for (const name of this.values.keys())
      if (!options.includes(name) && !(GLOBAL_OPTIONS as readonly string[]).includes(name))
        throw new UsageError(
          `${command} takes no option --${name} (spinmesh --help lists its options)`,
        );
    if (this.positional.length - 1 > maxPositional)
      throw new UsageError(
        `${command} takes ${maxPositional === 0 ? 'no' : `at most ${maxPositional}`} argument${maxPositional === 1 ? '' : 's'} (got '${this.positional.slice(1).join(' ')}')`,
      );
  }
}

/** Parses argv (without the node and script paths). @throws UsageError */
export function parseArgs(argv: readonly string[]): Args {
  const positional: string[] = [];
  const values = new Map<string, string[] | true>();
  const add = (name: string, value: string | true): void => {
    const kind = OPTIONS[name];
    if (value === true) {
      if (!values.has(name)) values.set(name, true);
      return;
    }
    const parts = kind === 'list' ? value.split(',').filter((p) => p !== '') : [value];
    const prev = values.get(name);
    values.set(name, kind === 'list' && Array.isArray(prev) ? [...prev, ...parts] : parts);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h') {
      add('help', true);
      continue;
    }
    if (!a.startsWith('--') || a === '--') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const kind = OPTIONS[name];
    if (kind === undefined)
      throw new UsageError(`unknown option --${name} (spinmesh --help lists them)`);
    if (eq >= 0) {
      if (kind === 'flag') throw new UsageError(`--${name} takes no value`);
      add(name, a.slice(eq + 1));
    } else if (kind === 'value' || kind === 'list') {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      add(name, v);
    } else if (kind === 'optional' && /^\d/.test(argv[i + 1] ?? '')) add(name, argv[++i]!);
    else add(name, true);
  }
  return new Args(positional, values);
}
