import { describe, expect, it } from 'vitest';
import { SpecError, encodePng, plot, plotFrame, stackImages } from '../src/index.js';

const at = (img: { width: number; data: Uint8Array }, x: number, y: number): number[] =>
  Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));

describe('plot', () => {
  const red = [200, 0, 0] as const;
  const blue = [0, 0, 200] as const;
  const opts = { width: 110, height: 70, margin: 5, xRange: [0, 10], yRange: [-1, 1] } as const;

  it('maps data to pixels: left/bottom edges, zero line, bars up and down', () => {
    const f = plotFrame(110, 70, 5, [0, 10], [-1, 1]);
    expect([f.px(0), f.px(10), f.py(-1), f.py(1), f.py(0)]).toEqual([5, 104, 64, 5, 35]);
    const img = plot(
      [{ x: [2, 6], y: [1, -0.5], style: 'bars', color: red, negativeColor: blue }],
      opts,
    );
    expect([img.width, img.height, img.channels]).toEqual([110, 70, 3]);
    // bar at x = 2 rises from the zero line (row 35) to the top (row 5)
    expect(at(img, f.px(2), 10)).toEqual([...red]);
    expect(at(img, f.px(2), 40)).toEqual([255, 255, 255]);
    // bar at x = 6 goes down to y = -0.5 (row 50), in the negative colour
    expect(at(img, f.px(6), 45)).toEqual([...blue]);
    expect(at(img, f.px(6), 55)).toEqual([255, 255, 255]);
    // axes and the zero line are black
    expect(at(img, 5, 20)).toEqual([0, 0, 0]);
    expect(at(img, 50, 64)).toEqual([0, 0, 0]);
    expect(at(img, 90, 35)).toEqual([0, 0, 0]);
    expect(encodePng(img).subarray(1, 4).toString('latin1')).toBe('PNG');
  });

  it('draws points, lines, ticks and dashed markers', () => {
    const f = plotFrame(110, 70, 5, [0, 10], [-1, 1]);
    const img = plot(
      [
        { x: [5], y: [0.5], color: red, radius: 1 },
        { x: [0, 10], y: [-1, 1], style: 'line', color: blue },
      ],
      { ...opts, zeroLine: false, xTicks: [5], markers: [{ x: 8, color: [0, 150, 0] }] },
    );
    expect(at(img, f.px(5) + 1, f.py(0.5) - 1)).toEqual([...red]);
    expect(at(img, f.px(5) + 2, f.py(0.5))).toEqual([255, 255, 255]);
    expect(at(img, 55, 34)).toEqual([...blue]); // the diagonal passes (near) the centre
    expect(at(img, f.px(5), 67)).toEqual([0, 0, 0]); // tick below the axis
    expect(at(img, f.px(8), 6)).toEqual([0, 150, 0]); // marker, dashed: on...
    expect(at(img, f.px(8), 9)).toEqual([255, 255, 255]); // ...and off
  });

  it('picks ranges that include zero, and stacks images', () => {
    const img = plot([{ x: [1, 2, 3], y: [2, 3, 4], style: 'bars' }], {
      width: 60,
      height: 50,
      margin: 4,
    });
    // the zero line is inside the plot although every y > 0
    const zeroRow = plotFrame(60, 50, 4, [0.9, 3.1], [-0.2, 4.2]).py(0);
    expect(at(img, 30, zeroRow)).toEqual([0, 0, 0]);
    const s = stackImages([img, img], 3);
    expect([s.width, s.height]).toEqual([60, 103]);
    expect(at(s, 30, 50)).toEqual([255, 255, 255]);
    expect(at(s, 30, 53 + zeroRow)).toEqual([0, 0, 0]);
  });

  it('rejects what it cannot draw', () => {
    expect(() => plot([{ x: [1, 2], y: [1] }])).toThrow(SpecError);
    expect(() => plot([], { xRange: [1, 1] })).toThrow(/xRange/);
    expect(() => plot([], { width: 10, height: 10, margin: 5 })).toThrow(/no room/);
    expect(() => stackImages([])).toThrow(/empty/);
  });
});
