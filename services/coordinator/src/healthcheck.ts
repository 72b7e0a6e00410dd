#!/usr/bin/env node
// The coordinator container's healthcheck (the images carry no grpc_health_probe): asks its own
// gRPC server, at the address SPINMESH_COORDINATOR_LISTEN binds, whether it serves
// (grpc.health.v1; NOT_SERVING while the bus does not answer), over TLS when the server speaks
// it. Exit code 0: serving; 1: not serving or unreachable; 2: a bad setting.
import { runHealthcheck } from '@spinmesh/telemetry';

import { configFromEnv } from './config.js';

await runHealthcheck('spinmesh-coordinator', () => configFromEnv().listen);
