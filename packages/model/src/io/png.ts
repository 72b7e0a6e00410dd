import { deflateSync } from 'node:zlib';
import { SpecError } from '../errors.js';

// PNG images (ISO/IEC 15948): 8-bit greyscale or RGB, written with node:zlib. Used for sample
// grids and receptive fields (plots with axes and text are @spinmesh/plot's); nothing here
// reads PNG.

/** An 8-bit image: `channels` bytes per pixel (1 = grey, 3 = RGB), rows top to bottom. */
export interface Image {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'latin1');
  out.set(body, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

/** Creates a blank image filled with `fill` (one value per channel). */
export function createImage(
  width: number,
  height: number,
  channels: 1 | 3 = 1,
  fill: number | readonly number[] = 0,
): Image {
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1)
    throw new SpecError('image', `size must be positive integers, got ${width}x${height}`);
  const data = new Uint8Array(width * height * channels);
  const f = typeof fill === 'number' ? [fill, fill, fill] : fill;
  for (let i = 0; i < width * height; i++)
    for (let c = 0; c < channels; c++) data[i * channels + c] = f[c] ?? 0;
  return { width, height, channels, data };
}

/** The PNG file of an image. */
export function encodePng(img: Image): Buffer {
  const { width, height, channels, data } = img;
  if (data.length !== width * height * channels)
    throw new SpecError(
      'image',
      `has ${data.length} bytes, expected ${width}x${height}x${channels} = ${width * height * channels}`,
    );
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    raw.set(data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 1 ? 0 : 2; // colour type: grey or RGB
  // compression, filter and interlace methods: 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

export interface GridOptions {
  /** Tiles per row. @defaultValue ceil(sqrt(count)) */
  cols?: number;
  /** Pixels between tiles (and around the grid), drawn in `background`. @defaultValue 1 */
  pad?: number;
  /** Each tile pixel drawn as scale x scale pixels. @defaultValue 1 */
  scale?: number;
  /**
   * How values map to grey: 'unit' clamps [0, 1] to 0..255 (probabilities, binary images);
   * 'tile' stretches each tile's own min..max (receptive fields); 'symmetric' maps each tile's
   * [-m, m], m = max |value|, so that 0 is mid-grey. @defaultValue 'unit'
   */
  normalize?: 'unit' | 'tile' | 'symmetric';
  /** Grey level of the padding. @defaultValue 128 */
  background?: number;
}

/**
 * Lays out `count` tiles of tileHeight x tileWidth values each (tile-major, row-major within a
 * tile) as a greyscale grid.
 */
export function imageGrid(
  values: ArrayLike<number>,
  count: number,
  tileHeight: number,
  tileWidth: number,
  opts: GridOptions = {},
): Image {
  const tile = tileHeight * tileWidth;
  if (!Number.isInteger(count) || count < 1)
    throw new SpecError('count', `must be a positive integer, got ${count}`);
  if (values.length < count * tile)
    throw new SpecError(
      'values',
      `has ${values.length} values, fewer than ${count} tiles of ${tileHeight}x${tileWidth}`,
    );
  const cols = opts.cols ?? Math.ceil(Math.sqrt(count));
  const rows = Math.ceil(count / cols);
  const pad = opts.pad ?? 1;
  const scale = opts.scale ?? 1;
  const mode = opts.normalize ?? 'unit';
  const tw = tileWidth * scale;
  const th = tileHeight * scale;
  const img = createImage(
    cols * (tw + pad) + pad,
    rows * (th + pad) + pad,
    1,
    opts.background ?? 128,
  );
  for (let t = 0; t < count; t++) {
    const base = t * tile;
    let lo = 0;
    let hi = 1;
    if (mode !== 'unit') {
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < tile; i++) {
        const v = values[base + i]!;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      if (mode === 'tile') {
        lo = min;
        hi = max > min ? max : min + 1;
      } else {
        const m = Math.max(Math.abs(min), Math.abs(max)) || 1;
        lo = -m;
        hi = m;
      }
    }
    const x0 = pad + (t % cols) * (tw + pad);
    const y0 = pad + Math.floor(t / cols) * (th + pad);
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        const v = values[base + Math.floor(y / scale) * tileWidth + Math.floor(x / scale)]!;
        const g = Math.round(((v - lo) / (hi - lo)) * 255);
        img.data[(y0 + y) * img.width + x0 + x] = Math.max(0, Math.min(255, g));
      }
    }
  }
  return img;
}
