// What every command gets: its arguments, the output, the kernels, a client of the coordinator
// the global options name, and the interruption (Ctrl-C) of whatever waits on the network.
import { readFileSync } from 'node:fs';
import { loadKernels, type Kernels, type KernelsChoice } from '@spinmesh/kernels';
import { SpinmeshClient, type ClientOptions } from '@spinmesh/client';
import type { Args } from './args.js';
import { UsageError } from './errors.js';
import type { Output } from './output.js';

const KERNEL_CHOICES: readonly string[] = ['cuda', 'native', 'portable', 'auto'];

/** Whether a --kernels value names an implementation loadKernels knows. */
export function isKernelsChoice(s: string): s is KernelsChoice {
  return KERNEL_CHOICES.includes(s);
}

/** The coordinator's address when neither --address nor SPINMESH_ADDRESS says. */
export const DEFAULT_ADDRESS = '127.0.0.1:7070';

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

type Env = Readonly<Record<string, string | undefined>>;

function env(e: Env, name: string): string | undefined {
  const v = e[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** The client options of the global flags and their variables. @throws UsageError */
export function clientOptions(
  args: Args,
  e: Env = process.env,
): ClientOptions & { address: string } {
  const address = args.str('address') ?? env(e, 'SPINMESH_ADDRESS') ?? DEFAULT_ADDRESS;
  if (!HOST_PORT.test(address))
    throw new UsageError(
      `${args.has('address') ? '--address' : 'SPINMESH_ADDRESS'} must be host:port (got '${address}')`,
    );
  const opts: ClientOptions & { address: string } = { address };
  const token = args.str('token') ?? env(e, 'SPINMESH_TOKEN');
  if (args.has('token') && !token) throw new UsageError('--token needs a value');
  if (token !== undefined) opts.token = token;
  const caFile = args.str('tls-ca') ?? env(e, 'SPINMESH_TLS_CA');
  if (caFile !== undefined) {
    let ca: Buffer;
    try {
      ca = readFileSync(caFile);
    } catch (err) {
      throw new UsageError(
        `cannot read the TLS CA file ${caFile} (${args.has('tls-ca') ? '--tls-ca' : 'SPINMESH_TLS_CA'}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    opts.tls = { ca };
  } else if (args.has('tls')) opts.tls = true;
  const deadline = args.num('deadline', { min: 0, minExclusive: true });
  if (deadline !== undefined) opts.deadlineMs = Math.round(deadline * 1000);
  return opts;
}

export class Context {
  private client_: SpinmeshClient | null = null;
  private kernels_: Kernels | null = null;
  private readonly listeners = new Set<(signal: NodeJS.Signals) => void>();
  /** The signal that interrupted the command, once one did. */
  interrupted: NodeJS.Signals | null = null;

  constructor(
    readonly args: Args,
    readonly out: Output,
  ) {}

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.interrupted ??= signal;
    for (const fn of [...this.listeners]) fn(signal);
  };

  /**
   * Calls `fn` on SIGINT or SIGTERM while registered (returns the function that unregisters
   * it). Without a listener the signals keep their default (the process ends): a command that
   * computes in this process is not left running when Ctrl-C cannot reach it.
   */
  onInterrupt(fn: (signal: NodeJS.Signals) => void): () => void {
    if (this.listeners.size === 0) {
      process.on('SIGINT', this.onSignal);
      process.on('SIGTERM', this.onSignal);
    }
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0) {
        process.off('SIGINT', this.onSignal);
        process.off('SIGTERM', this.onSignal);
      }
    };
  }

  /** The --kernels choice (or SPINMESH_KERNELS), said once on stderr. */
  kernels(): Kernels {
    if (this.kernels_) return this.kernels_;
    const choice = this.args.str('kernels');
    if (choice !== undefined && !isKernelsChoice(choice))
      throw new UsageError('--kernels must be cuda, native, portable or auto');
    this.kernels_ = loadKernels(choice);
    this.out.say(`kernels: ${this.kernels_.describe()}`);
    return this.kernels_;
  }

  /** The client of the coordinator the global options name; Ctrl-C gives up its calls. */
  client(): SpinmeshClient {
    if (this.client_) return this.client_;
    const client = new SpinmeshClient(clientOptions(this.args));
    this.client_ = client;
    this.onInterrupt(() => client.cancelAll());
    return client;
  }

  close(): void {
    this.client_?.close();
    this.client_ = null;
    for (const fn of [...this.listeners]) this.listeners.delete(fn);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}
