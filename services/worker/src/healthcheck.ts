#!/usr/bin/env node
// The worker container's healthcheck (the images carry no grpc_health_probe): asks its own gRPC
// server, at the address SPINMESH_WORKER_LISTEN binds, whether it serves (grpc.health.v1), over
// TLS when SPINMESH_TLS_CERT and SPINMESH_TLS_KEY are set. Exit code 0: serving; 1: not serving
// or unreachable; 2: a bad setting (port 0 included: nothing fixed to probe).
import { runHealthcheck } from '@spinmesh/telemetry';

import { configFromEnv } from './config.js';

await runHealthcheck('spinmesh-worker', () => configFromEnv().listen);
