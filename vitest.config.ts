import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';

const src = (p: string): string =>
  fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@spinmesh/kernels': src('kernels'),
      '@spinmesh/model': src('model'),
      '@spinmesh/proto': src('proto'),
      '@spinmesh/telemetry': src('telemetry'),
      '@spinmesh/plot': src('plot'),
      '@spinmesh/client': src('client'),
      '@spinmesh/worker': fileURLToPath(new URL('./services/worker/src/index.ts', import.meta.url)),
      '@spinmesh/coordinator': fileURLToPath(
        new URL('./services/coordinator/src/index.ts', import.meta.url),
      ),
      '@spinmesh/bus': src('bus'),
      '@spinmesh/cluster': src('cluster'),
    },
  },
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      'services/*/test/**/*.test.ts',
      'apps/*/test/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    // Its own step of `npm test` (test/vitest.compose.config.ts): its image builds would starve
    // the tests running beside it.
    exclude: [...configDefaults.exclude, 'test/compose-e2e.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
