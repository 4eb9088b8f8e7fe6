/**
 * Encoding images to files with sharp, and fitting a file under a platform's upload limit.
 */
import sharp from 'sharp';

type Pipeline = ReturnType<typeof sharp>;
import type { RgbImage } from '../engine/engine.js';
import { ErrorCode, ImagineError } from '../errors.js';

/** File formats the project writes. */
export type ImageFormat = 'png' | 'webp' | 'jpeg';

/** An encoded image file. */
export interface EncodedImage {
  data: Buffer;
  width: number;
  height: number;
  contentType: string;
}

const contentTypes: Record<ImageFormat, string> = { png: 'image/png', webp: 'image/webp', jpeg: 'image/jpeg' };

/** The file name extension for a content type. */
export function extensionFor(contentType: string): string {
  if (contentType === 'image/webp') return 'webp';
  if (contentType === 'image/jpeg') return 'jpg';
  return 'png';
}

function rawInput(image: RgbImage): Pipeline {
  if (image.data.length !== image.width * image.height * 3) {
    throw new ImagineError(ErrorCode.Internal, `An RGB image of ${image.width}×${image.height} needs ${image.width * image.height * 3} bytes, not ${image.data.length}.`);
  }
  return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels: 3 } });
}

function applyFormat(pipeline: Pipeline, format: ImageFormat, quality?: number): Pipeline {
  if (format === 'webp') return pipeline.webp({ quality: quality ?? 90, effort: 4 });
  if (format === 'jpeg') return pipeline.jpeg({ quality: quality ?? 90, mozjpeg: true });
  return pipeline.png({ compressionLevel: quality === undefined ? 6 : 9, adaptiveFiltering: quality !== undefined });
}

/** Encodes an RGB image as PNG (default), WebP or JPEG. */
export async function encodeImage(image: RgbImage, format: ImageFormat = 'png', options: { quality?: number } = {}): Promise<Buffer> {
  return applyFormat(rawInput(image), format, options.quality).toBuffer();
}

/** Decodes any image file sharp reads into 8-bit RGB (alpha dropped). */
export async function decodeImage(file: Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Options for {@link fitToLimit}. */
export interface FitOptions {
  /** Smallest side the image may be scaled down to before giving up. Default 64. */
  minSide?: number;
}

/**
 * Returns the file unchanged when it fits `limitBytes`; otherwise re-encodes it, first as PNG at
 * maximum compression, then as WebP and JPEG at falling quality, then scaled down step by step.
 * Throws an {@link ImagineError} with code `upload_failed` when nothing fits.
 */
export async function fitToLimit(file: EncodedImage, limitBytes: number, options: FitOptions = {}): Promise<EncodedImage> {
  if (file.data.length <= limitBytes) return file;
  const source = file.data;
  const attempt = async (format: ImageFormat, quality: number | undefined, scale = 1): Promise<EncodedImage> => {
    const width = Math.max(1, Math.round(file.width * scale));
    const height = Math.max(1, Math.round(file.height * scale));
    let pipeline = sharp(source);
    if (scale !== 1) pipeline = pipeline.resize(width, height, { kernel: 'lanczos3' });
    const data = await applyFormat(format === 'jpeg' ? pipeline.flatten({ background: '#ffffff' }) : pipeline, format, quality).toBuffer();
    return { data, width, height, contentType: contentTypes[format] };
  };
  const steps: Array<[ImageFormat, number | undefined]> = [];
  if (file.contentType === 'image/png') steps.push(['png', 9]);
  steps.push(['webp', 90], ['webp', 75], ['jpeg', 85], ['webp', 60], ['jpeg', 70], ['jpeg', 50]);
  for (const [format, quality] of steps) {
    const result = await attempt(format, quality);
    if (result.data.length <= limitBytes) return result;
  }
  const minSide = options.minSide ?? 64;
  for (let scale = 0.75; Math.min(file.width, file.height) * scale >= Math.min(minSide, file.width, file.height); scale *= 0.75) {
    const result = await attempt('jpeg', 75, scale);
    if (result.data.length <= limitBytes) return result;
  }
  throw new ImagineError(ErrorCode.Upload, `The image does not fit the upload limit of ${limitBytes} bytes even when scaled down to ${minSide} px.`);
}
