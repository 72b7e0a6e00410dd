// The README is a front door into docs/: it stays short, every relative link of the README and
// of the documentation pages leads to a file that exists, and docs/configuration.md, the one
// table of environment variables, lists every variable the code reads.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COORDINATOR_ENV_VARS } from '@spinmesh/coordinator';
import { WORKER_ENV_VARS } from '@spinmesh/worker';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Markdown files whose links must resolve: the README, docs/, and the READMEs beside code. */
function markdownFiles(): string[] {
  const files = ['README.md', 'deploy/README.md'];
  for (const f of readdirSync(join(ROOT, 'docs'))) if (f.endsWith('.md')) files.push(`docs/${f}`);
  for (const group of ['packages', 'services'])
    for (const d of readdirSync(join(ROOT, group)))
      if (existsSync(join(ROOT, group, d, 'README.md'))) files.push(`${group}/${d}/README.md`);
  return files;
}

/** Targets of inline links and images (`[t](x)`, `![a](x)`) outside fenced code blocks. */
export function linkTargets(markdown: string): string[] {
  const prose = markdown.replace(/^```[^\n]*\n[\s\S]*?^```/gm, '');
  return [...prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map(
    (m) => m[1]!,
  );
}

function isRelative(target: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('#');
}

/** Quoted names of environment variables in the TypeScript sources under a directory. */
function variablesReadUnder(dir: string, found: Set<string>): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'dist' && entry.name !== 'test')
        variablesReadUnder(path, found);
    } else if (entry.name.endsWith('.ts')) {
      const text = readFileSync(path, 'utf8');
      for (const m of text.matchAll(/'((?:SPINMESH|REDIS|OPENBLAS)_[A-Z0-9_]+)'/g))
        found.add(m[1]!);
    }
  }
}

describe('README.md', () => {
  it('is under 10 KB', () => {
    expect(statSync(join(ROOT, 'README.md')).size).toBeLessThan(10 * 1024);
  });

  it('keeps the two quick-start commands', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(
      'bash scripts/setup.sh && npx spinmesh train examples/bas-rbm-cluster.yaml',
    );
    expect(readme).toMatch(/^npm test\b/m);
  });
});

describe('markdown links', () => {
  it('finds inline links and images, not those in code blocks', () => {
    expect(
      linkTargets(
        'a [b](c.md#d) ![e](img/f.png) [g](https://h) [i](<j k.md>)\n```\n[x](y.md)\n```\n',
      ),
    ).toEqual(['c.md#d', 'img/f.png', 'https://h']);
  });

  const files = markdownFiles();
  it('covers the README and docs/', () => {
    expect(files).toContain('README.md');
    expect(files).toContain('docs/configuration.md');
    expect(files.length).toBeGreaterThan(10);
  });

  it.each(files)('%s: every relative link leads to a file that exists', (file) => {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const broken = linkTargets(text)
      .filter(isRelative)
      .map((t) => decodeURIComponent(t.split('#')[0]!))
      .filter((t) => t !== '')
      .filter((t) => !existsSync(resolve(ROOT, dirname(file), t)))
      .map((t) => relative(ROOT, resolve(ROOT, dirname(file), t)));
    expect(broken).toEqual([]);
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
  const tableRows = doc.split('\n').filter((l) => l.startsWith('| `'));
  const documented = new Set(
    tableRows.flatMap((row) =>
      [...row.split(' | ')[0]!.matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]!),
    ),
  );

  it('lists in its table every variable the services read', () => {
    const read = [...COORDINATOR_ENV_VARS, ...WORKER_ENV_VARS];
    expect(read.length).toBeGreaterThan(20);
    expect(read.filter((v) => !documented.has(v))).toEqual([]);
  });

  it('lists in its table every variable the packages, services and benchmarks name', () => {
    const found = new Set<string>();
    for (const dir of ['packages', 'services', 'bench']) variablesReadUnder(join(ROOT, dir), found);
    expect(found.size).toBeGreaterThan(30);
    expect([...found].filter((v) => !documented.has(v)).sort()).toEqual([]);
  });

  it('is the only table of variables: the services and deploy READMEs link to it', () => {
    for (const file of [
      'services/coordinator/README.md',
      'services/worker/README.md',
      'deploy/README.md',
      'packages/bus/README.md',
    ]) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text, file).toMatch(/\]\((\.\.\/)+docs\/configuration\.md\)/);
      expect(text, file).not.toMatch(/^\|\s*`(SPINMESH|REDIS)_[A-Z0-9_]+`/m);
    }
  });
});
