// A sequence job (rule stdp: a dynamic Boltzmann machine) across worker processes: the shards
// exchange spikes over gRPC, run up to `staleness` steps apart, and give exactly the model a
// single process trains, as long as the staleness stays below the smallest conduction delay.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { LocalCluster } from '@spinmesh/coordinator';
import { decodeSequenceModel, runSequenceJob, type DyBM } from '@spinmesh/model';
import { ModelFormat, ModelServiceClient, type ModelChunk } from '@spinmesh/proto';
import { COMPLETED, Jobs, startCluster } from './cluster-helpers.js';

const spec = parse(
  readFileSync(fileURLToPath(new URL('../examples/science-cluster.yaml', import.meta.url)), 'utf8'),
) as Record<string, unknown>;

function download(address: string, jobId: string): Promise<Buffer> {
  const c = new ModelServiceClient(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = c.getModel({ jobId, format: ModelFormat.MODEL_FORMAT_SMM, chunkBytes: 0 });
    s.on('data', (m: ModelChunk) => parts.push(Buffer.from(m.data)));
    s.on('error', reject);
    s.on('end', () => {
      c.close();
      resolve(Buffer.concat(parts));
    });
  });
}

function parameters(m: DyBM): Record<string, number[]> {
  return Object.fromEntries(m.parameters().map((p) => [p.name, Array.from(p.data)]));
}

describe('a sequence job on worker processes', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await startCluster(3);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('gives the single-process model with 2 and 3 workers below the smallest delay', async () => {
    const single = await runSequenceJob({ ...spec, workers: 1, staleness: 0 });
    expect(single.evaluations.at(-1)!.recallExact).toBe(1);
    const jobs = new Jobs(cluster.address);
    try {
      for (const [workers, staleness] of [
        [2, 2],
        [3, 0],
        [3, 2],
      ] as const) {
        const { jobId } = await jobs.submit({ ...spec, workers, staleness });
        const { job } = await jobs.follow(jobId);
        expect(job.state, `${workers} workers, staleness ${staleness}: ${job.error}`).toBe(
          COMPLETED,
        );
        expect(job.evaluation?.recallExact).toBe(1);
        const { model } = decodeSequenceModel(await download(cluster.address, jobId));
        expect(parameters(model)).toEqual(parameters(single.model));
        // Every shard says how far behind its slowest peer it learned each frame: never more
        // than the staleness allows.
        // (A shard appends its event after its export, so the job may complete first.)
        let done: { type: string; staleness?: Record<string, number> }[] = [];
        for (const t = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
          done = (await jobs.follow(jobId)).events
            .map((e) => JSON.parse(e.json) as (typeof done)[number])
            .filter((e) => e.type === 'shard.done');
          if (done.length >= workers || Date.now() - t > 60_000) break;
        }
        expect(done).toHaveLength(workers);
        for (const d of done) {
          expect(d.staleness!['count']).toBe(job.progress!.totalSteps);
          expect(d.staleness!['maxSteps']).toBeLessThanOrEqual(staleness);
        }
      }
    } finally {
      jobs.close();
    }
  });

  it('a worker killed with SIGKILL: the job starts again on the spare and ends with the same model', async () => {
    const long = { ...spec, epochs: 400, evaluate: { every: 400, cue: 12 }, workers: 2 };
    const single = await runSequenceJob({ ...long, workers: 1, staleness: 0 });
    const jobs = new Jobs(cluster.address);
    try {
      const { jobId } = await jobs.submit(long);
      let victim = '';
      let killed: Promise<void> | null = null;
      const { job, events } = await jobs.follow(jobId, (e) => {
        if (e.workers?.kind === 'assigned' && victim === '')
          victim = e.workers.shards.find((s) => s.shardId === 1)!.workerId;
        if (killed || !e.progress || e.progress.step < 2000) return;
        killed = cluster.kill(`worker-${victim.slice(victim.lastIndexOf('-') + 1)}`, 'SIGKILL');
      });
      await killed;
      expect(killed).not.toBeNull();
      expect(job.state, job.error).toBe(COMPLETED);
      expect(events.some((e) => e.workers?.kind === 'worker-lost')).toBe(true);
      const again = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
      expect(again.generation).toBeGreaterThanOrEqual(2);
      expect(again.restoreFromStep).toBe(0);
      const { model } = decodeSequenceModel(await download(cluster.address, jobId));
      expect(parameters(model)).toEqual(parameters(single.model));
    } finally {
      jobs.close();
    }
  });
});
