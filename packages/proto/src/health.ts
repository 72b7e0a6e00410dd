// The gRPC health-checking protocol (grpc.health.v1.Health: Check, List, Watch) for any spinmesh
// server, so that probes, load balancers and compose healthchecks can ask it whether it serves.
import { status as Status, type Server, type ServerWritableStream } from '@grpc/grpc-js';

import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthService,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthServer,
} from './gen/grpc/health/v1/health.js';

export { ServingStatus };

/** The status of the server as a whole, by the protocol's convention. */
export const OVERALL_HEALTH = '';

/** The health service of one server: what it answers, and the means to change it. */
export interface HealthReporter {
  /**
   * Sets the status of a service (its fully qualified name, or OVERALL_HEALTH for the whole
   * server); watchers of the service get the new status when it changed.
   */
  setStatus(service: string, status: ServingStatus): void;
  /** The status a Check would answer now; undefined for a service it does not know. */
  getStatus(service: string): ServingStatus | undefined;
  /**
   * Marks every service NOT_SERVING, tells the watchers, and ends their streams, so that the
   * server's tryShutdown is not held up by them. Later setStatus calls are ignored.
   */
  shutdown(): void;
}

/**
 * Adds grpc.health.v1.Health to `server` (before it starts) and returns its reporter. The
 * overall status ('') starts SERVING unless `initial` says otherwise; services not in `initial`
 * are unknown (Check: NOT_FOUND) until setStatus names them.
 */
export function addHealthService(
  server: Server,
  initial: Readonly<Record<string, ServingStatus>> = {},
): HealthReporter {
  const statuses = new Map<string, ServingStatus>([[OVERALL_HEALTH, ServingStatus.SERVING]]);
  for (const [service, status] of Object.entries(initial)) statuses.set(service, status);
  const watchers = new Map<
    string,
    Set<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>
  >();
  let shutDown = false;

  const notify = (service: string, status: ServingStatus): void => {
    for (const call of watchers.get(service) ?? []) call.write({ status });
  };

  const impl: HealthServer = {
    check(call, callback) {
      const status = statuses.get(call.request.service);
      if (status === undefined) {
        callback({ code: Status.NOT_FOUND, details: `unknown service '${call.request.service}'` });
      } else {
        callback(null, { status });
      }
    },
    list(_call, callback) {
      const out: Record<string, HealthCheckResponse> = {};
      for (const [service, status] of statuses) out[service] = { status };
      callback(null, { statuses: out });
    },
    watch(call) {
      const service = call.request.service;
      if (shutDown) {
        call.write({ status: statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN });
        call.end();
        return;
      }
      let set = watchers.get(service);
      if (set === undefined) watchers.set(service, (set = new Set()));
      set.add(call);
      const forget = (): void => {
        set.delete(call);
        if (set.size === 0 && watchers.get(service) === set) watchers.delete(service);
      };
      call.on('cancelled', forget);
      call.on('close', forget);
      call.write({ status: statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN });
    },
  };
  server.addService(HealthService, impl);

  return {
    setStatus(service, status) {
      if (shutDown || statuses.get(service) === status) return;
      statuses.set(service, status);
      notify(service, status);
    },
    getStatus(service) {
      return statuses.get(service);
    },
    shutdown() {
      if (shutDown) return;
      for (const [service, status] of statuses) {
        if (status === ServingStatus.NOT_SERVING) continue;
        statuses.set(service, ServingStatus.NOT_SERVING);
        notify(service, ServingStatus.NOT_SERVING);
      }
      shutDown = true;
      for (const set of watchers.values()) for (const call of set) call.end();
      watchers.clear();
    },
  };
}
