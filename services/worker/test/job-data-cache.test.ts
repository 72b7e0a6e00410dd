// The worker keeps a job's data across the job's generations (a rebalance or a recovery
// reassigns the same job), reads it again for another job, and never keeps a failed load.
import { describe, expect, it } from 'vitest';
import type { Dataset } from '@spinmesh/model';

import { JobDataCache } from '../src/job.js';

const dataset = (name: string): Dataset => ({ x: new Float32Array(4), rows: 2, dims: 2, name });

describe('JobDataCache', () => {
  it('loads once per key and again after clear or for another key', async () => {
    const cache = new JobDataCache();
    let loads = 0;
    const load = (name: string) => async () => {
      loads++;
      return dataset(name);
    };
    const first = await cache.get('job-a', load('a'));
    expect(first.kept).toBe(false);
    const again = await cache.get('job-a', load('a'));
    expect(again).toMatchObject({ kept: true });
    expect(again.data).toBe(first.data);
    expect(loads).toBe(1);

    const other = await cache.get('job-b', load('b'));
    expect(other).toMatchObject({ kept: false, data: { name: 'b' } });
    expect((await cache.get('job-a', load('a'))).kept).toBe(false);
    expect(loads).toBe(3);

    cache.clear();
    expect((await cache.get('job-a', load('a'))).kept).toBe(false);
    expect(loads).toBe(4);
  });

  it('does not keep a load that failed', async () => {
    const cache = new JobDataCache();
    await cache.get('job-a', async () => dataset('a'));
    await expect(
      cache.get('job-b', async () => {
        throw new Error('no such file');
      }),
    ).rejects.toThrow('no such file');
    // neither the failed key nor the one it replaced is served from the cache
    expect((await cache.get('job-b', async () => dataset('b'))).kept).toBe(false);
    expect((await cache.get('job-a', async () => dataset('a'))).kept).toBe(false);
  });
});
