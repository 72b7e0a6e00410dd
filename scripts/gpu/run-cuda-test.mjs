// Runs packages/kernels/test/cuda.test.ts (transpiled by scripts/gpu-check.sh prepare) under
// vitest-shim.mjs and prints { passed, failed, device_comparisons } as one JSON line: the last
// counts the passed tests that ran on a device (without one, the file runs its no-device tests).
import { runTests } from './vitest-shim.mjs';

await import('./cuda.test.mjs');
const r = runTests();
const deviceComparisons = r.passedNames.filter((n) => / against the /.test(n)).length;
process.stdout.write(
  `${JSON.stringify({ passed: r.passed, failed: r.failed, device_comparisons: deviceComparisons })}\n`,
);
process.exitCode = r.failed.length > 0 ? 1 : 0;
