/**
 * The 2×2 grid of four images that a generation posts, composed with sharp.
 */
import sharp from 'sharp';
import type { RgbImage } from '../engine/engine.js';
import { ErrorCode, ImagineError } from '../errors.js';
import { decodeImage, type EncodedImage } from './encode.js';

export interface GridOptions {
  /** Pixels between the images and around them. Default: about 1/64 of an image side, at least 2. */
  gutter?: number;
  /** Default png. */
  format?: 'png' | 'webp';
  /** Gutter colour. Default a dark grey that suits light and dark chat themes. */
  background?: { r: number; g: number; b: number };
}

/** The grid layout for four images of one size: where image i (0-based) sits. */
export function gridLayout(width: number, height: number, gutter: number): { width: number; height: number; cells: Array<{ left: number; top: number }> } {
  const cells = [0, 1, 2, 3].map((index) => ({ left: gutter + (index % 2) * (width + gutter), top: gutter + Math.floor(index / 2) * (height + gutter) }));
  return { width: width * 2 + gutter * 3, height: height * 2 + gutter * 3, cells };
}

/** The default gutter for images of this size. */
export function defaultGutter(width: number, height: number): number {
  return Math.max(2, Math.round(Math.min(width, height) / 64));
}

/**
 * Composes four images (RGB, or encoded files) into a 2×2 grid with a small gutter. Images of
 * different sizes are fitted into the first image's size.
 */
export async function composeGrid(images: RgbImage[] | Uint8Array[], options: GridOptions = {}): Promise<EncodedImage> {
  if (images.length !== 4) throw new ImagineError(ErrorCode.Internal, `A grid needs 4 images, not ${images.length}.`);
  const decoded: RgbImage[] = [];
  for (const image of images) decoded.push(image instanceof Uint8Array ? await decodeImage(image) : (image as RgbImage));
  const { width, height } = decoded[0]!;
  const gutter = options.gutter ?? defaultGutter(width, height);
  const layout = gridLayout(width, height, gutter);
  const composites = await Promise.all(decoded.map(async (image, index) => {
    let input: Buffer = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
    let raw = { width: image.width, height: image.height, channels: 3 as const };
    if (image.width !== width || image.height !== height) {
      input = await sharp(input, { raw }).resize(width, height, { fit: 'cover' }).raw().toBuffer();
      raw = { width, height, channels: 3 };
    }
    return { input, raw, left: layout.cells[index]!.left, top: layout.cells[index]!.top };
  }));
  const background = options.background ?? { r: 32, g: 34, b: 37 };
  const canvas = sharp({ create: { width: layout.width, height: layout.height, channels: 3, background } }).composite(composites);
  const format = options.format ?? 'png';
  const data = format === 'webp' ? await canvas.webp({ quality: 90 }).toBuffer() : await canvas.png().toBuffer();
  return { data, width: layout.width, height: layout.height, contentType: format === 'webp' ? 'image/webp' : 'image/png' };
}
