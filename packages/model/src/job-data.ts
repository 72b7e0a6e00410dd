// The rows a job's data spec names: read, decoded and binarized.
import { philoxW0, seedHalves, wordToUniform } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import { barsAndStripes } from './data/bas.js';
import { binarize, type Dataset } from './data/dataset.js';
import { join } from 'node:path';
import {
  FASHION_MNIST_DEFAULT_DIR,
  FASHION_MNIST_HINT,
  fashionMnistDefaultDir,
  fashionMnistFiles,
  fashionMnistFrom,
  idxDatasetFrom,
} from './data/fashion.js';
import { parseCsv } from './data/csv.js';
import { decodeIdx, type IdxArray } from './data/idx.js';
import {
  DataFileError,
  readDataFile,
  unconfinedAccess,
  withRoot,
  type DataAccess,
} from './data/source.js';
import type { DataSpec } from './job-spec.js';

/**
 * Loads the rows a data spec names (values in [0,1], binarized as the spec says), reading its
 * files as `access` allows (relative paths against its base directory); `field` names the data
 * spec in errors. @throws SpecError naming the field, FormatError naming the file
 */
export async function loadData(
  d: DataSpec,
  seed = 0,
  access: DataAccess = unconfinedAccess(),
  field = 'spec.data',
): Promise<Dataset> {
  let ds: Dataset;
  switch (d.kind) {
    case 'bas':
      return barsAndStripes(d.size);
    case 'fashion-mnist':
      ds = await readFashionMnist(d, access, field);
      break;
    case 'idx': {
      const images = await readIdxFile(d.images, `${field}.images`, access);
      const labels =
        d.labels === undefined
          ? undefined
          : { array: await readIdxFile(d.labels, `${field}.labels`, access), path: d.labels };
      ds = idxDatasetFrom(images, d.images, labels);
      break;
    }
    case 'csv': {
      const bytes = await readDataFile(d.path, `${field}.path`, access);
      ds = parseCsv(
        bytes.toString('utf8'),
        d.label === undefined ? {} : { label: d.label },
        d.path,
      );
      break;
    }
    case 'random':
      return randomPatterns(d.rows, d.dims, d.p ?? 0.5, d.seed ?? seed);
  }
  const mode = d.binarize ?? (d.kind === 'fashion-mnist' ? 'threshold' : 'none');
  return mode === 'none' ? ds : binarize(ds, mode, d.threshold ?? 0.5, seed);
}

async function readIdxFile(path: string, field: string, access: DataAccess): Promise<IdxArray> {
  return decodeIdx(await readDataFile(path, field, access), path, access.maxBytes);
}

/** Fashion-MNIST from `dir`, which a confined reader may also find in the package's directory. */
async function readFashionMnist(
  d: Extract<DataSpec, { kind: 'fashion-mnist' }>,
  access: DataAccess,
  field: string,
): Promise<Dataset> {
  const dirField = `${field}.dir`;
  const dir = d.dir ?? fashionMnistDefaultDir();
  // The package's directory, and the one the service's administrator named, for this kind only.
  const allowed = withRoot(withRoot(access, FASHION_MNIST_DEFAULT_DIR), fashionMnistDefaultDir());
  const split = d.split ?? 'train';
  const files = fashionMnistFiles(split);
  const read = async (base: string): Promise<{ array: IdxArray; path: string }> => {
    for (const name of [base, `${base}.gz`]) {
      const path = join(dir, name);
      try {
        return { array: await readIdxFile(path, dirField, allowed), path };
      } catch (e) {
        if (!(e instanceof DataFileError && e.problem === 'missing')) throw e;
      }
    }
    throw new SpecError(dirField, `holds no ${base} (nor ${base}.gz) ${FASHION_MNIST_HINT}`);
  };
  const images = await read(files.images);
  const labels = await read(files.labels);
  return fashionMnistFrom(images.array, images.path, labels.array, labels.path, split, d.limit);
}

// Stream word of the random patterns; arbitrary, fixed.
const STREAM_PATTERNS = 0x524e4450; // 'RNDP'

/** rows x dims independent {0,1} units, each 1 with probability p; draws keyed by (seed, row, unit). */
export function randomPatterns(rows: number, dims: number, p: number, seed: number): Dataset {
  const { seedLo, seedHi } = seedHalves(seed);
  const x = new Float32Array(rows * dims);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < dims; j++)
      x[r * dims + j] =
        wordToUniform(philoxW0(j, r, 0, STREAM_PATTERNS, seedLo, seedHi)) < p ? 1 : 0;
  return { x, rows, dims, name: `random ${rows}x${dims} p=${p}` };
}
