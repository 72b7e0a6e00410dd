// The Redis bus's blocking connections: a blocked XREAD holds its connection, so each waiting
// reader gets one of its own, and a few idle ones are kept for reuse.
import type { Redis } from 'ioredis';

/** Most idle blocking connections kept for reuse; more are opened while needed. */
const MAX_IDLE_BLOCKERS = 4;

export class BlockerPool {
  private closed = false;
  private readonly idle: Redis[] = [];
  private readonly all = new Set<Redis>();

  constructor(
    private readonly redis: Redis,
    private readonly connectionName: string,
    private readonly commandTimeoutMs: number,
    private readonly onError: ((err: Error) => void) | undefined,
  ) {}

  acquire(): Redis {
    const idle = this.idle.pop();
    if (idle) return idle;
    const conn = this.redis.duplicate({
      connectionName: `${this.connectionName}-block`,
      // The command timeout would cut a long BLOCK short; the blocking time-out (BLOCK plus
      // this much) guards against a connection that died silently.
      commandTimeout: undefined,
      blockingTimeout: this.commandTimeoutMs,
      blockingTimeoutGrace: this.commandTimeoutMs,
    });
    conn.on('error', (err: Error) => this.onError?.(err));
    this.all.add(conn);
    return conn;
  }

  release(conn: Redis): void {
    if (!this.closed && this.idle.length < MAX_IDLE_BLOCKERS && conn.status !== 'end') {
      this.idle.push(conn);
      return;
    }
    this.all.delete(conn);
    conn.disconnect();
  }

  /** Disconnects every blocking connection, idle or in use. */
  close(): void {
    this.closed = true;
    for (const conn of this.all) conn.disconnect();
    this.all.clear();
    this.idle.length = 0;
  }
}
