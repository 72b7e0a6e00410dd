// Reading job data as a service does (confined to data roots, regular files, bounded) and as the
// CLI does (any path, relative to the spec's directory); and no error about a file, whatever it
// holds, quotes it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import {
  DataFileError,
  FormatError,
  SpecError,
  confinedAccess,
  decodeIdx,
  decodeModel,
  decodeNpy,
  decodeSequenceModel,
  loadData,
  loadSequences,
  readDataFile,
  unconfinedAccess,
  validateSequenceJob,
  type DataAccess,
} from '../src/index.js';

const CANARY = 'canary-7f3a9c1e-do-not-echo';

let tmp: string;
let root: string;
let outside: string;
let access: DataAccess;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'spinmesh-source-'));
  root = join(tmp, 'root');
  outside = join(tmp, 'outside');
  mkdirSync(join(root, 'sub'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(root, 'ok.csv'), '1,0\n0,1\n');
  writeFileSync(join(root, 'sub', 'nested.csv'), '1,1\n');
  writeFileSync(join(root, 'secret.txt'), `TOKEN=${CANARY}\nPASSWORD=${CANARY}\n`);
  writeFileSync(join(root, 'big.csv'), '1,0\n'.repeat(1000));
  writeFileSync(join(outside, 'secret.txt'), `${CANARY}\n`);
  symlinkSync(join(outside, 'secret.txt'), join(root, 'link.csv'));
  symlinkSync(outside, join(root, 'dirlink'));
  symlinkSync(join(root, 'ok.csv'), join(root, 'inner-link.csv'));
  execFileSync('mkfifo', [join(root, 'fifo.csv')]);
  access = confinedAccess([root], 1000);
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The error `p` rejects with, which must be a SpecError naming `field` and quoting nothing. */
async function refusal(p: Promise<unknown>, field = 'spec.data.path'): Promise<SpecError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SpecError);
  const e = err as SpecError;
  expect(e.field).toBe(field);
  expect(e.message).not.toContain(CANARY);
  return e;
}

describe('readDataFile, confined to data roots', () => {
  it('reads regular files inside a root, by relative or absolute path, through inner symlinks', async () => {
    expect((await readDataFile('ok.csv', 'f', access)).toString()).toBe('1,0\n0,1\n');
    expect((await readDataFile(join(root, 'sub/nested.csv'), 'f', access)).toString()).toBe(
      '1,1\n',
    );
    expect((await readDataFile('inner-link.csv', 'f', access)).toString()).toBe('1,0\n0,1\n');
    expect((await readDataFile('sub/../ok.csv', 'f', access)).length).toBe(8);
  });

  it.each([
    ['a .. escape', () => `../outside/secret.txt`],
    ['an absolute path outside', () => join(outside, 'secret.txt')],
    ['a symlink leaving the root', () => 'link.csv'],
    ['a path through a symlinked directory', () => 'dirlink/secret.txt'],
    ['/proc/self/environ', () => '/proc/self/environ'],
    ['/etc/passwd', () => '/etc/passwd'],
    ['/dev/zero', () => '/dev/zero'],
    ['/dev/urandom', () => '/dev/urandom'],
    ['/proc/self/fd/1', () => '/proc/self/fd/1'],
  ])('refuses %s as outside the data roots', async (_what, path) => {
    const e = await refusal(readDataFile(path(), 'spec.data.path', access));
    expect(e.message).toBe('spec.data.path is outside the data roots');
  });

  it('says the same of a path outside whether it exists or not', async () => {
    const there = await refusal(
      readDataFile(join(outside, 'secret.txt'), 'spec.data.path', access),
    );
    const absent = await refusal(
      readDataFile(join(outside, 'absent.txt'), 'spec.data.path', access),
    );
    const absentDir = await refusal(readDataFile('/nonexistent/x.csv', 'spec.data.path', access));
    expect(absent.message).toBe(there.message);
    expect(absentDir.message).toBe(there.message);
  });

  it('says that a file inside a root does not exist', async () => {
    const e = await refusal(readDataFile('absent.csv', 'spec.data.path', access));
    expect(e).toBeInstanceOf(DataFileError);
    expect((e as DataFileError).problem).toBe('missing');
    expect(e.message).toBe('spec.data.path cannot be read (ENOENT)');
  });

  it('refuses a FIFO at once (no writer needed), and a directory', async () => {
    const fifo = await refusal(readDataFile('fifo.csv', 'spec.data.path', access));
    expect(fifo.message).toMatch(/is not a regular file/);
    const dir = await refusal(readDataFile('sub', 'spec.data.path', access));
    expect(dir.message).toMatch(/is not a regular file/);
  });

  it('refuses a file over the size limit', async () => {
    const e = await refusal(readDataFile('big.csv', 'spec.data.path', access));
    expect(e.message).toBe('spec.data.path is larger than the data size limit (1000 bytes)');
    expect((await readDataFile('big.csv', 'f', confinedAccess([root], 4000))).length).toBe(4000);
  });

  it('reads nothing at all with no roots', async () => {
    await refusal(readDataFile('ok.csv', 'spec.data.path', confinedAccess([], 1000)));
    await refusal(readDataFile(join(root, 'ok.csv'), 'spec.data.path', confinedAccess([], 1000)));
  });
});

describe('loadData', () => {
  it('names the field of the file it refuses', async () => {
    await refusal(loadData({ kind: 'csv', path: '/proc/self/environ' }, 0, access));
    await refusal(loadData({ kind: 'idx', images: '/dev/zero' }, 0, access), 'spec.data.images');
    await refusal(
      loadData({ kind: 'idx', images: '/dev/urandom' }, 0, access, 'data'),
      'data.images',
    );
    await refusal(
      loadData({ kind: 'fashion-mnist', dir: outside }, 0, access, 'spec.evaluate.test'),
      'spec.evaluate.test.dir',
    );
  });

  it('never quotes a file it cannot parse', async () => {
    const csv = await loadData({ kind: 'csv', path: 'secret.txt' }, 0, access).catch(
      (e: unknown) => e as Error,
    );
    expect(csv).toBeInstanceOf(FormatError);
    expect((csv as Error).message).toBe('secret.txt: line 2, column 1: not a number');
    const idx = await loadData({ kind: 'idx', images: 'secret.txt' }, 0, access).catch(
      (e: unknown) => e as Error,
    );
    expect(idx).toBeInstanceOf(FormatError);
    expect((idx as Error).message).not.toContain(CANARY);
    expect((idx as Error).message).not.toMatch(/54|4F/); // 'TO', the file's first bytes in hex
  });

  it('reads the CLI user their own paths, relative to the spec directory', async () => {
    const cli = unconfinedAccess(root);
    const ds = await loadData({ kind: 'csv', path: 'ok.csv' }, 0, cli);
    expect([ds.rows, ds.dims]).toEqual([2, 2]);
    expect((await readDataFile('link.csv', 'f', cli)).toString()).toBe(`${CANARY}\n`);
    const e = await loadData({ kind: 'csv', path: join(outside, 'secret.txt') }, 0, cli).catch(
      (x: unknown) => x as Error,
    );
    expect((e as Error).message).not.toContain(CANARY);
  });

  it('reads sequence CSV files under the same rules and checks them against the spec', async () => {
    const spec = validateSequenceJob({
      rule: 'stdp',
      network: { dybm: { units: 2, delays: 2 } },
      data: { kind: 'csv', path: 'ok.csv' },
      epochs: 1,
      evaluate: { cue: 1 },
    });
    expect((await loadSequences(spec, access))[0]!.steps).toBe(2);
    await refusal(loadSequences({ ...spec, data: { kind: 'csv', path: 'link.csv' } }, access));
    const wide = { ...spec, network: { dybm: { ...spec.network.dybm, units: 3 } } };
    await expect(loadSequences(wide, access)).rejects.toThrow(/^spec\.data sequence 0 has 2/);
    const leak = await loadSequences(
      { ...spec, data: { kind: 'csv', path: 'secret.txt' } },
      access,
    ).catch((e: unknown) => e as Error);
    expect(leak).toBeInstanceOf(FormatError);
    expect((leak as Error).message).not.toContain(CANARY);
  });
});

describe('decoders never quote the bytes they refuse', () => {
  const text = Buffer.from(`{"${CANARY}": 1}\n${CANARY}`);

  it('IDX, including a gzip stream past the size limit', () => {
    expect(() => decodeIdx(text, 'f')).toThrow(FormatError);
    expect(() => decodeIdx(text, 'f')).not.toThrow(CANARY);
    const bomb = gzipSync(Buffer.alloc(1 << 20));
    expect(() => decodeIdx(bomb, 'f', 1000)).toThrow('f: decompresses to more than 1000 bytes');
  });

  it('.npy headers', () => {
    const header = `{'descr': '${CANARY}', 'fortran_order': False, 'shape': (1,), }`;
    const bytes = Buffer.concat([
      Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0, header.length, 0]),
      Buffer.from(header),
    ]);
    const err = (() => {
      try {
        decodeNpy(bytes, 'a.npy');
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(FormatError);
    expect(err!.message).not.toContain(CANARY);
    const broken = Buffer.concat([
      Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0, 20, 0]),
      Buffer.from(`{${CANARY.slice(0, 19)}`),
    ]);
    expect(() => decodeNpy(broken, 'b.npy')).not.toThrow(CANARY);
  });

  it('model files and sequence model files', () => {
    const model = Buffer.alloc(16 + text.length + 16);
    model.write('SPINMESH', 0, 'latin1');
    model.writeUInt32LE(1, 8);
    model.writeUInt32LE(text.length, 12);
    text.copy(model, 16);
    expect(() => decodeModel(model, new PortableKernels(), 'm.smm')).toThrow(FormatError);
    expect(() => decodeModel(model, new PortableKernels(), 'm.smm')).not.toThrow(CANARY);
    expect(() => decodeSequenceModel(text)).toThrow(SpecError);
    expect(() => decodeSequenceModel(text)).not.toThrow(CANARY);
  });
});
