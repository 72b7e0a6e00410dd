// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 greyscale images of clothing in 10
// classes, 60000 training and 10000 test images, in the IDX format of MNIST. Debian ships it
// as the package dataset-fashion-mnist under /usr/share/datasets/fashion-mnist.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError, SpecError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { readIdx, type IdxArray } from './idx.js';

/** Where Debian's dataset-fashion-mnist package installs the files. */
export const FASHION_MNIST_DEFAULT_DIR = '/usr/share/datasets/fashion-mnist';

const FILES = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
} as const;

const HINT = `(Debian's package dataset-fashion-mnist provides it: apt-get install dataset-fashion-mnist; or set SPINMESH_DATA_DIR to a directory holding the four IDX files)`;

export interface FashionMnistOptions {
  /**
   * Directory holding the four standard files, each raw or with a .gz suffix.
   * @defaultValue process.env.SPINMESH_DATA_DIR, else /usr/share/datasets/fashion-mnist
   */
  dir?: string;
  split: 'train' | 'test';
  /** Keep only the first `limit` images. @defaultValue all */
  limit?: number;
}

function locate(dir: string, base: string): string {
  for (const name of [base, `${base}.gz`]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new FormatError(
      join(dir, `${base}.gz`),
      `not found: directory ${dir} does not exist ${HINT}`,
    );
  }
  throw new FormatError(join(dir, `${base}.gz`), `not found (nor ${base} uncompressed) ${HINT}`);
}

/** Fashion-MNIST images scaled to [0,1] (rows x 784, shape [28, 28]) with labels 0..9. */
export function loadFashionMnist(opts: FashionMnistOptions): Dataset {
  const dir = opts.dir ?? fashionMnistDefaultDir();
  const split = checkSplit(opts.split);
  checkLimit(opts.limit);
  const files = FILES[split];
  const imagesPath = locate(dir, files.images);
  const labelsPath = locate(dir, files.labels);
  return fashionMnistFrom(
    readIdx(imagesPath),
    imagesPath,
    readIdx(labelsPath),
    labelsPath,
    split,
    opts.limit,
  );
}

/** The directory of the Fashion-MNIST files when a spec names none. */
export function fashionMnistDefaultDir(): string {
  return process.env['SPINMESH_DATA_DIR'] ?? FASHION_MNIST_DEFAULT_DIR;
}

/** The names of a split's two files (each may also carry a .gz suffix). */
export function fashionMnistFiles(split: 'train' | 'test'): { images: string; labels: string } {
  return FILES[checkSplit(split)];
}

/** What may follow a message that a Fashion-MNIST file is missing. */
export const FASHION_MNIST_HINT = HINT;

function checkSplit(split: unknown): 'train' | 'test' {
  if (split !== 'train' && split !== 'test')
    throw new SpecError('split', `must be 'train' or 'test', got ${String(split)}`);
  return split;
}

/** Fashion-MNIST from its decoded IDX files, checked. */
export function fashionMnistFrom(
  images: IdxArray,
  imagesPath: string,
  labels: IdxArray,
  labelsPath: string,
  split: 'train' | 'test',
  limit?: number,
): Dataset {
  if (images.dims.length !== 3 || images.dims[1] !== 28 || images.dims[2] !== 28) {
    throw new FormatError(
      imagesPath,
      `has dimensions ${images.dims.join(' x ')}, expected N x 28 x 28`,
    );
  }
  if (images.type !== 'ubyte')
    throw new FormatError(imagesPath, `has type ${images.type}, expected ubyte`);
  const ds = idxToDataset(
    images,
    imagesPath,
    { array: labels, path: labelsPath },
    `fashion-mnist-${split}`,
    limit,
  );
  for (let i = 0; i < ds.rows; i++) {
    const l = ds.labels![i]!;
    if (l < 0 || l > 9) throw new FormatError(labelsPath, `label ${i} is not in 0..9`);
  }
  return ds;
}

/**
 * A dataset from an IDX image file (N x d1 x d2 ...) and an optional IDX label file (N
 * integers). ubyte images are scaled by 1/255 to [0,1]; other types are kept as stored.
 */
export function loadIdxDataset(imagesPath: string, labelsPath?: string): Dataset {
  return idxDatasetFrom(
    readIdx(imagesPath),
    imagesPath,
    labelsPath === undefined ? undefined : { array: readIdx(labelsPath), path: labelsPath },
  );
}

/** loadIdxDataset's dataset from the decoded files. */
export function idxDatasetFrom(
  images: IdxArray,
  imagesPath: string,
  labels?: { array: IdxArray; path: string },
): Dataset {
  const name = imagesPath.replace(/^.*[\\/]/, '').replace(/\.gz$/, '');
  return idxToDataset(images, imagesPath, labels, name);
}

function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
    throw new SpecError('limit', `must be a non-negative integer, got ${limit}`);
  }
}

function idxToDataset(
  images: IdxArray,
  imagesPath: string,
  labelsIn: { array: IdxArray; path: string } | undefined,
  name: string,
  limit?: number,
): Dataset {
  if (images.dims.length < 2) {
    throw new FormatError(
      imagesPath,
      `has dimensions ${images.dims.join(' x ')}, expected N x d1 [x d2 ...]`,
    );
  }
  checkLimit(limit);
  const total = images.dims[0]!;
  const shape = images.dims.slice(1);
  const dims = shape.reduce((a, b) => a * b, 1);
  const rows = limit === undefined ? total : Math.min(limit, total);
  const x = new Float32Array(rows * dims);
  const src = images.data;
  if (images.type === 'ubyte') {
    for (let i = 0; i < x.length; i++) x[i] = src[i]! / 255;
  } else {
    x.set(src.subarray(0, x.length));
  }
  const ds: Dataset = { x, rows, dims, shape, name };
  if (labelsIn !== undefined) {
    const { array: lab, path: labelsPath } = labelsIn;
    if (lab.dims.length !== 1 || lab.dims[0] !== total) {
      throw new FormatError(
        labelsPath,
        `has dimensions ${lab.dims.join(' x ')}, expected ${total} labels to match ${imagesPath}`,
      );
    }
    if (lab.type === 'float' || lab.type === 'double') {
      throw new FormatError(
        labelsPath,
        `has type ${lab.type}, expected an integer type for labels`,
      );
    }
    const labels = new Int32Array(rows);
    for (let i = 0; i < rows; i++) labels[i] = lab.data[i]!;
    ds.labels = labels;
  }
  return ds;
}
