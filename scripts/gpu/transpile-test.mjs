// Transpiles the cuda kernels' test and its helpers to plain ES modules for the GPU machine:
// vitest becomes vitest-shim.mjs and the package's source its built entry (@spinmesh/kernels).
// Usage: node scripts/gpu/transpile-test.mjs OUT_DIR
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const out = process.argv[2];
if (!out) throw new Error('usage: transpile-test.mjs OUT_DIR');
const dir = fileURLToPath(new URL('../../packages/kernels/test/', import.meta.url));
for (const name of ['cuda.test', 'helpers']) {
  const src = readFileSync(join(dir, `${name}.ts`), 'utf8');
  const js = ts
    .transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    })
    .outputText.replace(/from 'vitest'/g, "from './vitest-shim.mjs'")
    .replace(/from '\.\.\/src\/index\.js'/g, "from '@spinmesh/kernels'")
    .replace(/from '\.\/helpers\.js'/g, "from './helpers.mjs'");
  writeFileSync(join(out, `${name}.mjs`), js);
}
