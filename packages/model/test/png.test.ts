import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createImage, encodePng, imageGrid, SpecError } from '../src/index.js';

/** Reads back what encodePng wrote: chunk types, CRCs checked by zlib's crc32, pixels. */
function decode(png: Buffer): { width: number; height: number; colour: number; pixels: Buffer } {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let off = 8;
  const types: string[] = [];
  let ihdr: Buffer | null = null;
  const idat: Buffer[] = [];
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    const body = png.subarray(off + 8, off + 8 + len);
    // An independent CRC-32: bitwise, no table.
    let c = 0xffffffff;
    for (const b of png.subarray(off + 4, off + 8 + len)) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    }
    expect(png.readUInt32BE(off + 8 + len)).toBe((c ^ 0xffffffff) >>> 0);
    types.push(type);
    if (type === 'IHDR') ihdr = body;
    if (type === 'IDAT') idat.push(body);
    off += 12 + len;
  }
  expect(types).toEqual(['IHDR', 'IDAT', 'IEND']);
  const width = ihdr!.readUInt32BE(0);
  const height = ihdr!.readUInt32BE(4);
  const colour = ihdr![9]!;
  const ch = colour === 0 ? 1 : 3;
  const raw = inflateSync(Buffer.concat(idat));
  const pixels = Buffer.alloc(width * height * ch);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (width * ch + 1)]).toBe(0);
    raw.copy(pixels, y * width * ch, y * (width * ch + 1) + 1, (y + 1) * (width * ch + 1));
  }
  return { width, height, colour, pixels };
}

describe('png', () => {
  it('round-trips grey and RGB pixels', () => {
    const g = createImage(5, 3, 1, 7);
    g.data[4] = 255;
    const d = decode(encodePng(g));
    expect([d.width, d.height, d.colour]).toEqual([5, 3, 0]);
    expect([...d.pixels]).toEqual([...g.data]);
    const rgb = createImage(2, 2, 3, [1, 2, 3]);
    rgb.data[11] = 200;
    const e = decode(encodePng(rgb));
    expect(e.colour).toBe(2);
    expect([...e.pixels]).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 200]);
  });

  it('lays out tiles with padding and normalisation', () => {
    // Two 2x2 tiles, one row, pad 1: 7 x 4 pixels.
    const img = imageGrid([0, 1, 0.5, 2, -1, 0, 1, 3], 2, 2, 2, { cols: 2, normalize: 'tile' });
    expect([img.width, img.height]).toEqual([7, 4]);
    const at = (x: number, y: number): number => img.data[y * img.width + x]!;
    expect(at(0, 0)).toBe(128);
    // Tile 0: min 0, max 2.
    expect([at(1, 1), at(2, 1), at(1, 2), at(2, 2)]).toEqual([0, 128, 64, 255]);
    // Tile 1: min -1, max 3.
    expect([at(4, 1), at(5, 1), at(4, 2), at(5, 2)]).toEqual([0, 64, 128, 255]);
    const unit = imageGrid([2, -1, 0.5, 0], 1, 2, 2, { pad: 0, scale: 2 });
    expect([unit.width, unit.height]).toEqual([4, 4]);
    expect([...unit.data.subarray(0, 4)]).toEqual([255, 255, 0, 0]);
    const sym = imageGrid([-2, 0, 1, 2], 1, 2, 2, { pad: 0, normalize: 'symmetric' });
    expect([...sym.data]).toEqual([0, 128, 191, 255]);
  });

  it('rejects sizes that do not add up', () => {
    expect(() => imageGrid([1, 2, 3], 1, 2, 2)).toThrow(SpecError);
    expect(() => encodePng({ width: 2, height: 2, channels: 1, data: new Uint8Array(3) })).toThrow(
      /expected 2x2x1/,
    );
    expect(() => createImage(0, 1)).toThrow(/positive integers/);
  });
});
