// The coordinator's calls to workers (WorkerControl: Assign, Stop, Status, CheckpointAt): one channel per
// worker address, a deadline on every call, the cluster secret in the metadata.
import * as grpc from '@grpc/grpc-js';
import { BUS_SECRET_METADATA } from '@spinmesh/bus';
import {
  WorkerControlClient,
  type AssignResponse,
  type CheckpointAtRequest,
  type CheckpointAtResponse,
  type ShardAssignment,
  type StopResponse,
  type WorkerStatus,
} from '@spinmesh/proto';

/** A failed WorkerControl call: the gRPC status code and what the worker (or grpc-js) said. */
export class WorkerCallError extends Error {
  override readonly name = 'WorkerCallError';
  constructor(
    readonly address: string,
    readonly method: string,
    readonly code: grpc.status,
    details: string,
  ) {
    super(`${method} on worker ${address} failed: ${grpc.status[code] ?? code} ${details}`);
  }
}

export interface WorkerClientsOptions {
  /** Sent with every call; null: none. */
  clusterSecret: string | null;
  /** Deadline of each call, in milliseconds. */
  timeoutMs: number;
  /** The channels' credentials (TLS). @defaultValue plaintext */
  credentials?: grpc.ChannelCredentials;
}

/** WorkerControl clients by address. */
export class WorkerClients {
  private readonly clients = new Map<string, WorkerControlClient>();

  constructor(private readonly opts: WorkerClientsOptions) {}

  assign(address: string, a: ShardAssignment): Promise<AssignResponse> {
    return this.call(address, 'Assign', (c, md, o, cb) => c.assign(a, md, o, cb));
  }

  stop(address: string, jobId: string, checkpoint = false): Promise<StopResponse> {
    return this.call(address, 'Stop', (c, md, o, cb) => c.stop({ jobId, checkpoint }, md, o, cb));
  }

  checkpointAt(address: string, r: CheckpointAtRequest): Promise<CheckpointAtResponse> {
    return this.call(address, 'CheckpointAt', (c, md, o, cb) => c.checkpointAt(r, md, o, cb));
  }

  status(address: string): Promise<WorkerStatus> {
    return this.call(address, 'Status', (c, md, o, cb) => c.status({}, md, o, cb));
  }

  /** Drops the channel of a worker that is gone. */
  forget(address: string): void {
    this.clients.get(address)?.close();
    this.clients.delete(address);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private call<T>(
    address: string,
    method: string,
    run: (
      c: WorkerControlClient,
      md: grpc.Metadata,
      options: Partial<grpc.CallOptions>,
      cb: (err: grpc.ServiceError | null, res: T) => void,
    ) => void,
  ): Promise<T> {
    let client = this.clients.get(address);
    if (!client) {
      client = new WorkerControlClient(
        address,
        this.opts.credentials ?? grpc.credentials.createInsecure(),
        {
          // Fail fast on a dead worker instead of waiting out the reconnection backoff.
          'grpc.initial_reconnect_backoff_ms': 200,
          'grpc.max_reconnect_backoff_ms': 2000,
        },
      );
      this.clients.set(address, client);
    }
    const md = new grpc.Metadata();
    if (this.opts.clusterSecret !== null) md.set(BUS_SECRET_METADATA, this.opts.clusterSecret);
    const deadline = Date.now() + this.opts.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      run(client, md, { deadline }, (err, res) => {
        if (err) reject(new WorkerCallError(address, method, err.code, err.details));
        else resolve(res);
      });
    });
  }
}
