// The server end of the remote bus: serveBus puts any Bus on a grpc.Server.
import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { BusReply, BusServiceService, type BusServiceServer } from '@spinmesh/proto';
import type { Bus } from './bus.js';
import { errorToStatus } from './remote-errors.js';
import {
  BUS_ERROR_METADATA,
  BUS_SECRET_METADATA,
  decodeCall,
  encodeResult,
} from './remote-wire.js';

const Status = grpc.status;

/** What a blocked readEvents leaves of the call's deadline, so its empty answer arrives in time. */
const DEADLINE_MARGIN_MS = 100;

/** Options of serveBus. */
export interface ServeBusOptions {
  /**
   * The cluster secret: calls must carry it as the `spinmesh-cluster-secret` metadata entry,
   * else they fail with UNAUTHENTICATED. Unset or empty: no check.
   */
  secret?: string;
  /** Receives what a handler threw that is not a bus error (answered INTERNAL). */
  onError?: (err: unknown, method: string) => void;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Adds spinmesh.v1.BusService to `server` (before it is bound), serving `bus`. The caller owns
 * both: it binds and shuts down the server and closes the bus. Make the server with
 * {@link BUS_SERVER_OPTIONS} so that checkpoints larger than 4 MiB pass.
 */
export function serveBus(server: grpc.Server, bus: Bus, opts: ServeBusOptions = {}): void {
  const secret = opts.secret !== undefined && opts.secret !== '' ? digest(opts.secret) : null;
  const impl: BusServiceServer = {
    call(call, callback) {
      if (secret !== null) {
        const given = call.metadata.get(BUS_SECRET_METADATA)[0];
        const ok = typeof given === 'string' && timingSafeEqual(digest(given), secret);
        if (!ok) {
          callback({
            code: Status.UNAUTHENTICATED,
            details: 'bus: missing or wrong cluster secret',
          });
          return;
        }
      }
      const method = call.request.method;
      const run = async (): Promise<BusReply> => {
        const { method, args } = decodeCall(call.request);
        if (method === 'readEvents') capBlock(args, call.getDeadline());
        const fn = bus[method] as (...a: unknown[]) => Promise<unknown>;
        return encodeResult(method, await fn.apply(bus, args));
      };
      run().then(
        (reply) => callback(null, reply),
        (err: unknown) => {
          const { code, json } = errorToStatus(err);
          const metadata = new grpc.Metadata();
          if (json !== null) {
            metadata.set(BUS_ERROR_METADATA, Buffer.from(JSON.stringify(json), 'utf8'));
          } else {
            opts.onError?.(err, method);
          }
          const details = json !== null ? json.message : `bus: ${method} failed`;
          callback({ code, details, metadata });
        },
      );
    },
  };
  server.addService(BusServiceService, impl);
}

/** Shortens a readEvents wait so that its answer beats the call's deadline. */
function capBlock(args: unknown[], deadline: grpc.Deadline): void {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return;
  const opts = args[1];
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) return;
  const o = opts as Record<string, unknown>;
  if (typeof o.blockMs !== 'number' || !(o.blockMs > 0)) return;
  const left = Math.max(0, Math.floor(at - Date.now() - DEADLINE_MARGIN_MS));
  args[1] = { ...o, blockMs: Math.min(o.blockMs, left) };
}
