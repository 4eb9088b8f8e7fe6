import { ErrorCode, ImagineError } from '../../src/errors.js';
import type { RgbImage } from '../../src/engine/engine.js';
import { decodeImage, encodeImage, fitToLimit } from '../../src/image/encode.js';
import { composeGrid, defaultGutter, gridLayout } from '../../src/image/grid.js';
import { meanColour, solidImage } from '../fakes/fake-engine.js';

/** Deterministic noise over a colour gradient: hard to compress, easy to recognise on average. */
function noisyImage(width: number, height: number, seed = 1): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let state = seed >>> 0;
  for (let index = 0; index < data.length; index += 1) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const base = index % 3 === 0 ? 200 : index % 3 === 1 ? 80 : 40;
    data[index] = Math.max(0, Math.min(255, base + ((state >>> 24) % 80) - 40));
  }
  return { width, height, data };
}

function near(actual: number[], expected: number[], tolerance: number): boolean {
  return actual.every((value, index) => Math.abs(value - expected[index]!) <= tolerance);
}

describe('encodeImage and decodeImage', () => {
  test('PNG round-trips exactly', async () => {
    const image = noisyImage(17, 9);
    const decoded = await decodeImage(await encodeImage(image));
    expect([decoded.width, decoded.height]).toEqual([17, 9]);
    expect(Buffer.from(decoded.data).equals(Buffer.from(image.data))).toBe(true);
  });

  test('WebP and JPEG keep the colours within a tolerance', async () => {
    const image = solidImage(32, 32, [200, 30, 90]);
    for (const format of ['webp', 'jpeg'] as const) {
      const decoded = await decodeImage(await encodeImage(image, format));
      expect(near(meanColour(decoded), [200, 30, 90], 6)).toBe(true);
    }
  });

  test('a buffer of the wrong length is refused with a clear message', async () => {
    await expect(encodeImage({ width: 4, height: 4, data: new Uint8Array(10) })).rejects.toThrow('An RGB image of 4×4 needs 48 bytes, not 10.');
  });
});

describe('composeGrid', () => {
  const colours: Array<[number, number, number]> = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]];

  test('puts four images in a 2×2 grid with a gutter, in reading order', async () => {
    const grid = await composeGrid(colours.map((colour) => solidImage(40, 24, colour)));
    const gutter = defaultGutter(40, 24);
    const layout = gridLayout(40, 24, gutter);
    expect([grid.width, grid.height, grid.contentType]).toEqual([layout.width, layout.height, 'image/png']);
    expect(layout.width).toBe(80 + 3 * gutter);
    const decoded = await decodeImage(grid.data);
    layout.cells.forEach((cell, index) => {
      expect(near(meanColour(decoded, { left: cell.left, top: cell.top, width: 40, height: 24 }), colours[index]!, 1)).toBe(true);
    });
    // The gutter between the first two images is the background, not image colour.
    const gutterColour = meanColour(decoded, { left: 40 + gutter, top: gutter, width: gutter, height: 24 });
    expect(near(gutterColour, [32, 34, 37], 1)).toBe(true);
  });

  test('accepts encoded files and writes WebP when asked', async () => {
    const files = await Promise.all(colours.map((colour) => encodeImage(solidImage(16, 16, colour))));
    const grid = await composeGrid(files, { format: 'webp', gutter: 4 });
    expect(grid.contentType).toBe('image/webp');
    expect([grid.width, grid.height]).toEqual([44, 44]);
    const decoded = await decodeImage(grid.data);
    expect(near(meanColour(decoded, { left: 26, top: 26, width: 12, height: 12 }), [255, 255, 0], 12)).toBe(true);
  });

  test('needs exactly four images', async () => {
    await expect(composeGrid([solidImage(8, 8, [0, 0, 0])])).rejects.toThrow('A grid needs 4 images, not 1.');
  });
});

describe('fitToLimit', () => {
  test('returns a file that already fits unchanged', async () => {
    const data = await encodeImage(solidImage(64, 64, [1, 2, 3]));
    const file = { data, width: 64, height: 64, contentType: 'image/png' };
    expect(await fitToLimit(file, data.length)).toBe(file);
  });

  test('re-encodes a file that is too large, keeping its size and look', async () => {
    const image = noisyImage(256, 256);
    const data = await encodeImage(image);
    const limit = Math.floor(data.length / 4);
    const fitted = await fitToLimit({ data, width: 256, height: 256, contentType: 'image/png' }, limit);
    expect(fitted.data.length).toBeLessThanOrEqual(limit);
    expect(['image/webp', 'image/jpeg']).toContain(fitted.contentType);
    const decoded = await decodeImage(fitted.data);
    expect([decoded.width, decoded.height]).toEqual([fitted.width, fitted.height]);
    expect(near(meanColour(decoded), meanColour(image), 8)).toBe(true);
  });

  test('scales down when re-encoding is not enough', async () => {
    const image = noisyImage(256, 256);
    const data = await encodeImage(image);
    const fitted = await fitToLimit({ data, width: 256, height: 256, contentType: 'image/png' }, 4000);
    expect(fitted.data.length).toBeLessThanOrEqual(4000);
    expect(fitted.width).toBeLessThan(256);
    expect(fitted.width / fitted.height).toBeCloseTo(1, 1);
  });

  test('a limit nothing fits is an upload error', async () => {
    const data = await encodeImage(noisyImage(128, 128));
    const error = await fitToLimit({ data, width: 128, height: 128, contentType: 'image/png' }, 50).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ImagineError);
    expect((error as ImagineError).code).toBe(ErrorCode.Upload);
  });
});
