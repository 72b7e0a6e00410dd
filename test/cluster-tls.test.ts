// TLS on every gRPC listener and channel of a real local cluster: the coordinator, two workers
// and the API client all on TLS with a self-signed certificate (made by openssl here); the job
// completes with the single-process model, and a plaintext client cannot talk to the cluster.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '@spinmesh/coordinator';
import { JobServiceClient } from '@spinmesh/proto';
import { COMPLETED, Jobs, basJob, startCluster } from './cluster-helpers.js';
import { selfSignedCert } from './support/tls.js';

const dir = mkdtempSync(join(tmpdir(), 'spinmesh-tls-'));
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');

describe('a cluster on TLS', () => {
  let cluster: LocalCluster;

  beforeAll(async () => {
    // A self-signed certificate for the loopback address, its own CA.
    selfSignedCert(dir);
    cluster = await startCluster(2, {
      env: { SPINMESH_TLS_CERT: cert, SPINMESH_TLS_KEY: key, SPINMESH_TLS_CA: cert },
    });
  });
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('trains a job over TLS end to end and refuses plaintext', async () => {
    const jobs = new Jobs(cluster.address, grpc.credentials.createSsl(readFileSync(cert)));
    try {
      const { jobId } = await jobs.submit(basJob(40, { workers: 2 }));
      const { job } = await jobs.follow(jobId);
      expect(job.state).toBe(COMPLETED);
      expect(job.evaluation?.exactLogLikelihood).toBeLessThan(0);
    } finally {
      jobs.close();
    }
    const plain = new JobServiceClient(cluster.address, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      plain.submitJob(
        { spec: JSON.stringify(basJob(1)), jobId: '' },
        new grpc.Metadata(),
        { deadline: Date.now() + 3000 },
        (e: grpc.ServiceError | null) => resolve(e!),
      ),
    );
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(err.code);
    plain.close();
  });
});
