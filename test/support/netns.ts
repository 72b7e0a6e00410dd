// A small network of "hosts" for tests, each a Linux network namespace with its own address on a
// veth link to a bridge, which lives in a namespace of its own; one more veth gives the test
// process (the root namespace) an address on the same network. Needs root and iproute2. Every
// name carries a per-run tag and the /24 is picked per run among those no route of this machine
// uses, so two runs side by side do not collide; remove() deletes it all, also from an exit hook.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';

export interface Host {
  /** The namespace's name. */
  readonly netns: string;
  /** Its IPv4 address on the network. */
  readonly address: string;
  /** The veth end on the bridge's side (in the bridge's namespace), the one setLink takes down and up. */
  readonly hostSideLink: string;
}

/** A started process of a host; its output kept for diagnostics. */
export interface HostProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** The last lines it wrote (stdout and stderr). */
  tail(): string;
  /** Resolves when it has exited. */
  readonly exited: Promise<void>;
  /** Resolves when a line of its stdout matches; rejects if it exits first or on timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves with the first JSON log line that `match` accepts; rejects as waitForLine. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<Record<string, unknown>>;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The IPv4 prefixes this machine routes to, as [network, prefix length]. */
function routedPrefixes(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const line of ip('-4', 'route', 'show', 'table', 'all').split('\n')) {
    const m = /^(?:\S+\s+)?(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?\s/.exec(line);
    if (m) out.push([toNumber(m[1]!), m[2] === undefined ? 32 : Number(m[2])]);
  }
  return out;
}

function toNumber(a: string): number {
  return a.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function overlaps(a: number, aBits: number, b: number, bBits: number): boolean {
  const bits = Math.min(aBits, bBits);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

/** A /24 within 10.200.0.0/13 that no route of this machine covers or lies in. */
function freeSubnet(): string {
  const routes = routedPrefixes();
  for (let attempt = 0; attempt < 100; attempt++) {
    const second = 200 + randomInt(8);
    const third = randomInt(256);
    const net = toNumber(`10.${second}.${third}.0`);
    if (!routes.some(([n, bits]) => bits > 0 && overlaps(net, 24, n, bits)))
      return `10.${second}.${third}`;
  }
  throw new Error('no free /24 in 10.200.0.0/13: every one tried is routed on this machine');
}

/**
 * The network: one namespace per name, on one bridge. @throws Error saying what failed (not root, no
 * iproute2, no namespace support), after removing whatever it had made
 */
export class HostNetwork {
  readonly tag = randomBytes(3).toString('hex');
  readonly hosts: Host[] = [];
  /** The test process's address on the network (root namespace). */
  testAddress = '';
  private readonly bridgeNs = `sm-${this.tag}-net`;
  private readonly rootLink = `sm${this.tag}t`;
  private readonly namespaces: string[] = [];
  private readonly processes: HostProcess[] = [];
  private readonly onExit = (): void => this.removeNow();

  private constructor() {}

  static create(names: readonly string[]): HostNetwork {
    const n = new HostNetwork();
    process.once('exit', n.onExit);
    try {
      n.build(names);
    } catch (err) {
      n.removeNow();
      const e = err as Error & { stderr?: string };
      throw new Error(
        'cannot build the test network of namespaces (this test needs root, iproute2 and ' +
          `network namespaces: ip netns add, veth, bridge): ${(e.stderr ?? e.message).trim()}`,
      );
    }
    return n;
  }

  private addNamespace(name: string): void {
    ip('netns', 'add', name);
    this.namespaces.push(name);
    ip('-n', name, 'link', 'set', 'lo', 'up');
  }

  private build(names: readonly string[]): void {
    const subnet = freeSubnet();
    this.addNamespace(this.bridgeNs);
    ip('-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.bridgeNs, 'link', 'set', 'br0', 'up');
    names.forEach((name, i) => {
      const netns = `sm-${this.tag}-${name}`;
      const hostSideLink = `h-${name}`.slice(0, 15);
      const address = `${subnet}.${10 + i}`;
      this.addNamespace(netns);
      ip(
        ...['-n', this.bridgeNs, 'link', 'add', hostSideLink, 'type', 'veth'],
        ...['peer', 'name', 'eth0', 'netns', netns],
      );
      ip('-n', this.bridgeNs, 'link', 'set', hostSideLink, 'master', 'br0', 'up');
      ip('-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', netns, 'link', 'set', 'eth0', 'up');
      this.hosts.push({ netns, address, hostSideLink });
    });
    // The test process's own link: created in the bridge's namespace, its far end moved into
    // this process's (named by its pid: it need not be the one of pid 1).
    ip(
      ...['-n', this.bridgeNs, 'link', 'add', 'h-test', 'type', 'veth'],
      ...['peer', 'name', this.rootLink, 'netns', String(process.pid)],
    );
    ip('-n', this.bridgeNs, 'link', 'set', 'h-test', 'master', 'br0', 'up');
    this.testAddress = `${subnet}.254`;
    ip('addr', 'add', `${this.testAddress}/24`, 'dev', this.rootLink);
    ip('link', 'set', this.rootLink, 'up');
  }

  host(name: string): Host {
    const h = this.hosts.find((x) => x.netns === `sm-${this.tag}-${name}`);
    if (!h) throw new Error(`no host '${name}'`);
    return h;
  }

  /** Takes a host's link down (its bridge-side end) or up again. */
  setLink(host: Host, up: boolean): void {
    ip('-n', this.bridgeNs, 'link', 'set', host.hostSideLink, up ? 'up' : 'down');
  }

  /** Whether the host's bridge-side link is administratively up. */
  linkUp(host: Host): boolean {
    return /<[^>]*\bUP\b/.test(ip('-n', this.bridgeNs, 'link', 'show', host.hostSideLink));
  }

  /**
   * Starts `command` in the host's namespace (`ip netns exec`, which execs it: the child's pid
   * is the command's). stdin stays an open pipe for SPINMESH_STOP_ON_STDIN_CLOSE.
   */
  start(name: string, host: Host, command: string[], env: NodeJS.ProcessEnv): HostProcess {
    const child = spawn('ip', ['netns', 'exec', host.netns, ...command], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin!.on('error', () => undefined);
    const lines: string[] = [];
    const listeners = new Set<(line: string) => void>();
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      partial += chunk.toString('utf8');
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        lines.push(line.length > 2000 ? `${line.slice(0, 2000)}...` : line);
        if (lines.length > 300) lines.shift();
        for (const l of listeners) l(line);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      lines.push(chunk.toString('utf8').slice(0, 2000));
      if (lines.length > 300) lines.shift();
    });
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    const tail = (): string => lines.join('\n');
    /** The first line (seen or to come) that `match` maps to a value. */
    const waitFor = <T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T> =>
      new Promise((resolve, reject) => {
        const check = (line: string): boolean => {
          const found = match(line);
          if (found === undefined) return false;
          finish();
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`${name}: no such line within ${timeoutMs} ms:\n${tail()}`));
        }, timeoutMs);
        const finish = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        for (const l of lines) if (check(l)) return;
        listeners.add(check);
        void exited.then(() => {
          if (!listeners.has(check)) return;
          finish();
          reject(new Error(`${name} exited before the line:\n${tail()}`));
        });
      });
    const p: HostProcess = {
      name,
      child,
      exited,
      tail,
      waitForLine: (pattern, timeoutMs) =>
        waitFor((line) => (pattern.test(line) ? line : undefined), timeoutMs),
      waitForLog: (match, timeoutMs) =>
        waitFor((line) => {
          try {
            const o = JSON.parse(line) as unknown;
            if (o !== null && typeof o === 'object' && match(o as Record<string, unknown>))
              return o as Record<string, unknown>;
          } catch {
            // not a log line
          }
          return undefined;
        }, timeoutMs),
    };
    this.processes.push(p);
    return p;
  }

  /** The pids of every process started, for the leftovers check. */
  pids(): number[] {
    return this.processes.flatMap((p) => (p.child.pid ? [p.child.pid] : []));
  }

  /** Every process's tail, for an error report. */
  tails(): string {
    return this.processes
      .map((p) => `--- ${p.name} (pid ${p.child.pid ?? '?'}) ---\n${p.tail()}`)
      .join('\n');
  }

  /**
   * Stops every process (SIGTERM, SIGKILL after `graceMs`), waits for them, then deletes the
   * namespaces (which takes their veths, and the root end of the test's, with them).
   */
  async remove(graceMs = 5000): Promise<void> {
    await Promise.all(
      this.processes.map(async (p) => {
        if (p.child.exitCode !== null || p.child.signalCode !== null) return;
        p.child.kill('SIGTERM');
        const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
        await p.exited;
        clearTimeout(timer);
      }),
    );
    this.removeNow();
  }

  /** Kills what is left and deletes the namespaces and links, synchronously. Idempotent. */
  private removeNow(): void {
    for (const p of this.processes)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    for (const name of this.namespaces.splice(0).reverse()) {
      try {
        ip('netns', 'del', name);
      } catch {
        // already gone
      }
    }
    try {
      ip('link', 'del', this.rootLink);
    } catch {
      // went with its peer's namespace
    }
    process.removeListener('exit', this.onExit);
  }

  /** What of this network is still on the machine: namespaces and links carrying its tag. */
  leftovers(): string[] {
    const ns = ip('netns', 'list')
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.includes(this.tag));
    const links = ip('-o', 'link', 'show')
      .split('\n')
      .filter((l) => l.includes(this.tag))
      .map((l) => l.split(':')[1]!.trim());
    return [...ns, ...links];
  }
}
