// Units stay small enough to read: no source file over MAX_FILE_LINES lines and no function over
// MAX_FUNCTION_LINES lines, except the functions EXEMPT names with their reason (validators,
// decoders and numeric kernels, long by nature). Generated code is not counted.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const MAX_FILE_LINES = 600;
const MAX_FUNCTION_LINES = 80;

/** The source that is measured: what git tracks of the workspaces' src and the benchmarks. */
const SOURCES = ['packages/*/src/**.ts', 'services/*/src/**.ts', 'apps/*/src/**.ts', 'bench/*.ts'];
/** Code that a script writes (buf generate) and nobody edits. */
const GENERATED = /^packages\/[^/]+\/src\/gen\//;

/**
 * Functions allowed over MAX_FUNCTION_LINES, as 'file name', each with why. Each says so in a
 * comment at its start. A validator or decoder checks one field or section after another, each
 * check naming what is wrong; a numeric kernel is one hot loop, split only at a cost in speed.
 */
const EXEMPT: Readonly<Record<string, string>> = {
  'packages/model/src/network.ts validateNetworkSpec': 'validator of a network spec',
  'packages/model/src/job-spec.ts validateJobSpec': 'validator of a job spec',
  'packages/model/src/train-options.ts validateTrainOptions': "validator of a spec's train options",
  'packages/model/src/dybm/job.ts validateSequenceJob': 'validator of a sequence job spec',
  'packages/model/src/limits.ts checkJobLimits': "validator of a job's size limits",
  'packages/bus/src/redis-options.ts resolveOptions': "validator of the Redis bus's options",
  'packages/model/src/io/npy.ts decodeNpy': 'decoder of .npy files',
  'packages/model/src/data/idx.ts decodeIdx': 'decoder of IDX files',
  'packages/model/src/io/modelfile.ts decodeModel': 'decoder of model files',
  'packages/model/src/data/csv.ts parseCsv': 'decoder of CSV files',
  'packages/model/src/eval/exact.ts exactLogZ': 'numeric kernel: exact enumeration of log Z',
  'packages/model/src/eval/pseudo.ts pseudoLogLikelihood': 'numeric kernel: one pass over rows',
  'packages/kernels/src/portable-gemm.ts macroKernel': 'numeric kernel: the GEMM micro-kernel',
};

function sourceFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '--', ...SOURCES], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return out
    .split('\n')
    .filter((f) => f.endsWith('.ts') && !GENERATED.test(f))
    .sort();
}

interface Measured {
  file: string;
  lines: number;
  /** Every function with a body: its name ('<anon>' if none) and its body's lines. */
  functions: { name: string; line: number; lines: number }[];
}

function nameOf(node: ts.Node): string {
  if (
    (ts.isFunctionDeclaration(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isGetAccessorDeclaration(node) ||
      ts.isFunctionExpression(node)) &&
    node.name
  )
    return node.name.getText();
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent))
    return parent.name.getText();
  return '<anon>';
}

function measure(file: string): Measured {
  return measureText(file, readFileSync(join(ROOT, file), 'utf8'));
}

function measureText(file: string, text: string): Measured {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lineOf = (pos: number): number => source.getLineAndCharacterOfPosition(pos).line;
  const functions: Measured['functions'] = [];
  const visit = (node: ts.Node): void => {
    const isFunction =
      ts.isFunctionDeclaration(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isArrowFunction(node) ||
      ts.isFunctionExpression(node) ||
      ts.isConstructorDeclaration(node) ||
      ts.isGetAccessorDeclaration(node);
    if (isFunction && node.body) {
      const start = lineOf(node.body.getStart(source));
      functions.push({
        name: nameOf(node),
        line: start + 1,
        lines: lineOf(node.body.getEnd()) - start,
      });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  return { file, lines, functions };
}

describe('source shape', () => {
  const measured = sourceFiles().map(measure);

  it('measures the source it should', () => {
    const files = measured.map((m) => m.file);
    expect(files).toContain('packages/bus/src/redis.ts');
    expect(files).toContain('bench/cluster.ts');
    expect(files.some((f) => GENERATED.test(f))).toBe(false);
  });

  it(`no file over ${MAX_FILE_LINES} lines, no function over ${MAX_FUNCTION_LINES} but the exempt`, () => {
    const offences: string[] = [];
    for (const m of measured) {
      if (m.lines > MAX_FILE_LINES) offences.push(`${m.file}: ${m.lines} lines`);
      for (const f of m.functions)
        if (f.lines > MAX_FUNCTION_LINES && EXEMPT[`${m.file} ${f.name}`] === undefined)
          offences.push(`${m.file}:${f.line} ${f.name}: ${f.lines} lines`);
    }
    expect(offences).toEqual([]);
  });

  it('every exemption names a function that is still long (else it goes from the list)', () => {
    const stale = Object.keys(EXEMPT).filter((key) => {
      const [file, name] = key.split(' ') as [string, string];
      const m = measured.find((x) => x.file === file);
      return !m?.functions.some((f) => f.name === name && f.lines > MAX_FUNCTION_LINES);
    });
    expect(stale).toEqual([]);
  });

  it('the measure counts lines and names functions as it should', () => {
    const body = (n: number): string => Array.from({ length: n - 1 }, () => '  f();\n').join('');
    const text =
      `function long(): void {\n${body(81)}}\n` +
      `const arrow = (): void => {\n${body(80)}};\n` +
      `class K {\n  method(): void {\n${body(3)}  }\n}\n`;
    const m = measureText('x.ts', text);
    expect(m.lines).toBe(82 + 81 + 6);
    expect(m.functions.map((f) => [f.name, f.line, f.lines])).toEqual([
      ['long', 1, 81],
      ['arrow', 83, 80],
      ['method', 165, 3],
    ]);
  });
});
