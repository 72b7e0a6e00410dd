#!/usr/bin/env node
// The coordinator container's healthcheck (the images carry no grpc_health_probe): asks its own
// gRPC server, at the address SPINMESH_COORDINATOR_LISTEN binds, whether it serves
// (grpc.health.v1; NOT_SERVING while the bus does not answer), over TLS when the server speaks
// it. Exit code 0: serving; 1: not serving or unreachable; 2: a bad setting.
import { checkHealth, ownServerRoots, probeAddress } from '@spinmesh/telemetry';

import { configFromEnv } from './config.js';

let address: string;
let rootCerts: Buffer | undefined;
try {
  address = probeAddress(configFromEnv().listen);
  rootCerts = ownServerRoots();
} catch (err) {
  process.stderr.write(`spinmesh-coordinator healthcheck: ${(err as Error).message}\n`);
  process.exit(2);
}
const result = await checkHealth(address, rootCerts ? { rootCerts } : {});
process.stdout.write(`${address}: ${result.detail}\n`);
process.exit(result.serving ? 0 : 1);
