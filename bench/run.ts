// `npm run bench -- <name> [args]`: runs one benchmark. Progress goes to stderr; the last line on
// stdout is the result as one JSON object. Benchmarks print figures; they never assert timings.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Bench {
  run(args: string[]): Promise<Record<string, unknown>>;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const names = readdirSync(here)
  .filter((f) => f.endsWith('.js') && f !== 'run.js' && !f.startsWith('_'))
  .map((f) => f.slice(0, -3))
  .sort();

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  if (!name || name === '--help' || !names.includes(name)) {
    process.stderr.write(
      `${name && name !== '--help' ? `unknown benchmark '${name}'. ` : ''}usage: npm run bench -- <name> [args]\nbenchmarks: ${names.join(', ')}\n`,
    );
    process.exitCode = name === '--help' ? 0 : 2;
    return;
  }
  const mod = (await import(`./${name}.js`)) as Bench;
  const started = Date.now();
  const result = await mod.run(args);
  const out = {
    bench: name,
    ...result,
    wall_s: (Date.now() - started) / 1000,
    date: new Date().toISOString(),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
