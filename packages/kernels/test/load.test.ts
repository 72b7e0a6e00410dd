import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  NativeKernels,
  PortableKernels,
  cudaAvailable,
  loadKernels,
  nativeAvailable,
} from '../src/index.js';

const saved = {
  kernels: process.env.SPINMESH_KERNELS,
  threads: process.env.OPENBLAS_NUM_THREADS,
};

function restore(name: string, v: string | undefined): void {
  if (v === undefined) delete process.env[name];
  else process.env[name] = v;
}

afterEach(() => {
  restore('SPINMESH_KERNELS', saved.kernels);
  restore('OPENBLAS_NUM_THREADS', saved.threads);
});

describe('loadKernels', () => {
  it('takes the choice from SPINMESH_KERNELS', () => {
    process.env.SPINMESH_KERNELS = 'portable';
    expect(loadKernels()).toBeInstanceOf(PortableKernels);
  });

  it('lets an explicit choice win over the environment', () => {
    process.env.SPINMESH_KERNELS = 'native';
    expect(loadKernels('portable')).toBeInstanceOf(PortableKernels);
  });

  it('rejects an invalid SPINMESH_KERNELS naming the variable and the allowed values', () => {
    process.env.SPINMESH_KERNELS = 'opencl';
    expect(() => loadKernels()).toThrow(/SPINMESH_KERNELS.*'opencl'.*cuda, native, portable, auto/);
  });

  it('rejects an invalid choice argument', () => {
    expect(() => loadKernels('fast' as 'auto')).toThrow(/cuda, native, portable, auto/);
  });

  it('auto picks cuda when a device answers, else native exactly when its addon is available', () => {
    delete process.env.SPINMESH_KERNELS;
    const k = loadKernels();
    expect(k.name).toBe(cudaAvailable().ok ? 'cuda' : nativeAvailable().ok ? 'native' : 'portable');
  });

  it('native without the addon says how to build it, and auto falls back to portable', async () => {
    // A fresh copy of the module that looks for the addon where there is none.
    process.env.SPINMESH_NATIVE_ADDON = '/nonexistent/spinmesh_kernels.node';
    delete process.env.SPINMESH_KERNELS;
    try {
      vi.resetModules();
      const fresh = await import('../src/index.js');
      expect(fresh.nativeAvailable().ok).toBe(false);
      expect(() => fresh.loadKernels('native')).toThrow(/npm run build:native.*libopenblas-dev/);
      expect(fresh.loadKernels('auto').name).toBe(fresh.cudaAvailable().ok ? 'cuda' : 'portable');
    } finally {
      delete process.env.SPINMESH_NATIVE_ADDON;
      vi.resetModules();
    }
  });

  it.runIf(nativeAvailable().ok)('sets the OpenBLAS threads from the option or the env', () => {
    const before = new NativeKernels().threads;
    try {
      expect(loadKernels('native', { threads: 1 }).threads).toBe(1);
      process.env.OPENBLAS_NUM_THREADS = '2';
      expect(loadKernels('native').threads).toBe(2);
      process.env.OPENBLAS_NUM_THREADS = 'lots';
      expect(() => loadKernels('native')).toThrow(/OPENBLAS_NUM_THREADS/);
    } finally {
      new NativeKernels({ threads: before });
    }
  });
});

describe('the native addon', () => {
  // The native variants of other tests skip where the addon is absent; where OpenBLAS's headers
  // are installed (as scripts/setup.sh does, so on CI) its absence is a broken build, not a skip.
  const headers = ['/usr/include/x86_64-linux-gnu/cblas.h', '/usr/include/cblas.h'].find((f) =>
    existsSync(f),
  );
  it.runIf(headers !== undefined)('is built wherever OpenBLAS is installed', () => {
    const a = nativeAvailable();
    expect(a.ok, `${headers} exists but the addon is not loaded: ${a.ok ? '' : a.reason}`).toBe(
      true,
    );
  });
});
