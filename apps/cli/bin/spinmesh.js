#!/usr/bin/env node
// The `spinmesh` executable: a committed shim, so npm can link it at install time before the
// TypeScript is compiled; the command itself is apps/cli/src/cli.ts.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('spinmesh: not built yet: run `npm run build` in the repository first\n');
  process.exit(1);
}
await import(cli.href);
