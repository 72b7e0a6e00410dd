// The part of vitest's API that packages/kernels/test/cuda.test.ts uses, for the GPU machine,
// where carrying vitest and its dependencies would not fit (scripts/gpu-check.sh). Tests run
// in order, synchronously, after the file has registered them; runTests() reports them.
import { isDeepStrictEqual } from 'node:util';

const tests = [];
const afterEachHooks = [];
const prefix = [];

export function describe(name, fn) {
  prefix.push(name);
  try {
    fn();
  } finally {
    prefix.pop();
  }
}

export function it(name, fn) {
  tests.push({ name: [...prefix, name].join(' > '), fn });
}

export function afterEach(fn) {
  afterEachHooks.push(fn);
}

class AssertionError extends Error {}

function show(v) {
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${v.length})`;
  try {
    return JSON.stringify(v)?.slice(0, 120) ?? String(v);
  } catch {
    return String(v);
  }
}

function check(ok, what, message) {
  if (!ok) throw new AssertionError(message ? `${message}: ${what}` : what);
}

export function expect(actual, message) {
  return {
    toBe: (want) =>
      check(Object.is(actual, want), `expected ${show(actual)} to be ${show(want)}`, message),
    toEqual: (want) =>
      check(
        isDeepStrictEqual(actual, want),
        `expected ${show(actual)} to equal ${show(want)}`,
        message,
      ),
    toBeLessThan: (x) => check(actual < x, `expected ${actual} < ${x}`, message),
    toBeLessThanOrEqual: (x) => check(actual <= x, `expected ${actual} <= ${x}`, message),
    toBeGreaterThan: (x) => check(actual > x, `expected ${actual} > ${x}`, message),
    toMatch: (re) =>
      check(re.test(String(actual)), `expected ${show(actual)} to match ${re}`, message),
    toThrow: (want) => {
      let thrown;
      try {
        actual();
      } catch (e) {
        thrown = e;
      }
      check(thrown !== undefined, 'expected a throw', message);
      if (want instanceof RegExp)
        check(
          want.test(String(thrown?.message)),
          `threw '${thrown?.message}', not ${want}`,
          message,
        );
    },
  };
}
expect.fail = (message) => {
  throw new AssertionError(message);
};

/** Runs what was registered; returns { passed, passedNames, failed: [{ name, error }] }. */
export function runTests() {
  const failed = [];
  const passedNames = [];
  let passed = 0;
  for (const t of tests) {
    const started = performance.now();
    try {
      t.fn();
      passed++;
      passedNames.push(t.name);
      process.stderr.write(`  ok   ${t.name} (${(performance.now() - started).toFixed(0)} ms)\n`);
    } catch (e) {
      const error = String(e?.message ?? e).slice(0, 400);
      failed.push({ name: t.name, error });
      process.stderr.write(`  FAIL ${t.name}: ${error}\n`);
    } finally {
      for (const h of afterEachHooks) h();
    }
  }
  return { passed, passedNames, failed };
}
