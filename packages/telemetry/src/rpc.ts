// RPC metrics of a gRPC server, taken by a server interceptor (grpc-js >= 1.10): every call is
// counted when it starts and when it ends, by service, method, call type and status code, and
// its duration goes into a histogram. Label values come from the server's registered methods
// and the 17 status codes, so they are bounded.
import * as grpc from '@grpc/grpc-js';
import type { Counter, Histogram, Registry } from 'prom-client';

import { RpcMetricDefs } from './names.js';
import { counter, histogram } from './registry.js';

/** unary, client_stream, server_stream or bidi_stream. */
export type RpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

const CODE_NAMES = new Map<number, string>(
  Object.entries(grpc.status)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

/** The name of a status code (`OK`, `UNAVAILABLE`...), `UNKNOWN` for a number outside the enum. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? 'UNKNOWN';
}

/** `/spinmesh.v1.JobService/SubmitJob` as service and method. */
export function splitMethodPath(path: string): { service: string; method: string } {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return m ? { service: m[1]!, method: m[2]! } : { service: 'unknown', method: path };
}

/** The RPC counters and latency histogram of one server. */
export class RpcMetrics {
  readonly started: Counter;
  readonly handled: Counter;
  readonly seconds: Histogram;

  constructor(registry: Registry) {
    this.started = counter(registry, RpcMetricDefs.started);
    this.handled = counter(registry, RpcMetricDefs.handled);
    this.seconds = histogram(registry, RpcMetricDefs.seconds);
  }

  /** A server interceptor that feeds these metrics: `new grpc.Server({interceptors: [it]})`. */
  interceptor(): grpc.ServerInterceptor {
    return (method, call) => {
      const { service, method: name } = splitMethodPath(method.path);
      const type: RpcType = method.requestStream
        ? method.responseStream
          ? 'bidi_stream'
          : 'client_stream'
        : method.responseStream
          ? 'server_stream'
          : 'unary';
      const labels = { grpc_service: service, grpc_method: name, grpc_type: type };
      this.started.inc(labels);
      const t0 = performance.now();
      let ended = false;
      const end = (code: number): void => {
        if (ended) return;
        ended = true;
        this.handled.inc({ ...labels, grpc_code: codeName(code) });
        this.seconds.observe(labels, (performance.now() - t0) / 1000);
      };
      return new grpc.ServerInterceptingCall(call, {
        start: (next) => next({ onCancel: () => end(grpc.status.CANCELLED) }),
        sendStatus: (status, next) => {
          end(status.code ?? grpc.status.OK);
          next(status);
        },
      });
    };
  }
}

/**
 * Server options with the interceptor of `rpc` first, so that it sees every call, refused ones
 * included; the options as they are without `rpc`.
 */
export function withRpcMetrics(
  rpc: RpcMetrics | undefined,
  options: grpc.ServerOptions,
): grpc.ServerOptions {
  if (rpc === undefined) return options;
  return { ...options, interceptors: [rpc.interceptor(), ...(options.interceptors ?? [])] };
}
