// The compose end-to-end test on its own (`npm run test:compose`): the aliases of the main
// configuration, one file, and limits for a first run that builds base images and the project's.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

import main from '../vitest.config.js';

export default defineConfig({
  root: fileURLToPath(new URL('../', import.meta.url)),
  resolve: main.resolve,
  test: {
    include: ['test/compose-e2e.test.ts'],
    testTimeout: 35 * 60_000,
    hookTimeout: 45 * 60_000,
    pool: 'forks',
  },
});
