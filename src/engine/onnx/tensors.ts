/**
 * Plain-array tensor helpers shared by the pipelines: images to and from NCHW floats in [-1, 1],
 * bilinear resizing (as torch's `F.interpolate(mode="bilinear", align_corners=False)` without
 * antialiasing, which is how the models were trained), batching, guidance and normalisation.
 */
import type { RgbImage } from '../engine.js';
import { Random } from '../random.js';

/** One image's pixels as float32 CHW in [-1, 1]. */
export function imageToTensor(image: RgbImage): Float32Array {
  const { width, height, data } = image;
  const plane = width * height;
  const tensor = new Float32Array(3 * plane);
  for (let index = 0; index < plane; index += 1) {
    tensor[index] = data[index * 3]! / 127.5 - 1;
    tensor[plane + index] = data[index * 3 + 1]! / 127.5 - 1;
    tensor[2 * plane + index] = data[index * 3 + 2]! / 127.5 - 1;
  }
  return tensor;
}

/** Image `index` of an NCHW batch in [-1, 1] as 8-bit RGB (clamped). */
export function tensorToImage(batch: Float32Array, index: number, width: number, height: number): RgbImage {
  const plane = width * height;
  const offset = index * 3 * plane;
  const data = new Uint8Array(plane * 3);
  for (let pixel = 0; pixel < plane; pixel += 1) {
    for (let channel = 0; channel < 3; channel += 1) {
      const value = (batch[offset + channel * plane + pixel]! + 1) * 127.5;
      data[pixel * 3 + channel] = value <= 0 ? 0 : value >= 255 ? 255 : Math.round(value);
    }
  }
  return { width, height, data };
}

/** Bilinear resize of an NCHW batch (`count` = N·C planes), half-pixel centres, no antialiasing. */
export function resizeBilinear(source: Float32Array, planes: number, height: number, width: number, targetHeight: number, targetWidth: number): Float32Array {
  if (height === targetHeight && width === targetWidth) return source.slice();
  const target = new Float32Array(planes * targetHeight * targetWidth);
  const scaleY = height / targetHeight;
  const scaleX = width / targetWidth;
  const xs0 = new Int32Array(targetWidth);
  const xs1 = new Int32Array(targetWidth);
  const xWeights = new Float32Array(targetWidth);
  for (let x = 0; x < targetWidth; x += 1) {
    const sourceX = Math.max(0, (x + 0.5) * scaleX - 0.5);
    const x0 = Math.min(Math.floor(sourceX), width - 1);
    xs0[x] = x0;
    xs1[x] = Math.min(x0 + 1, width - 1);
    xWeights[x] = sourceX - x0;
  }
  for (let plane = 0; plane < planes; plane += 1) {
    const sourceOffset = plane * height * width;
    const targetOffset = plane * targetHeight * targetWidth;
    for (let y = 0; y < targetHeight; y += 1) {
      const sourceY = Math.max(0, (y + 0.5) * scaleY - 0.5);
      const y0 = Math.min(Math.floor(sourceY), height - 1);
      const y1 = Math.min(y0 + 1, height - 1);
      const wy = sourceY - y0;
      const row0 = sourceOffset + y0 * width;
      const row1 = sourceOffset + y1 * width;
      for (let x = 0; x < targetWidth; x += 1) {
        const wx = xWeights[x]!;
        const top = source[row0 + xs0[x]!]! * (1 - wx) + source[row0 + xs1[x]!]! * wx;
        const bottom = source[row1 + xs0[x]!]! * (1 - wx) + source[row1 + xs1[x]!]! * wx;
        target[targetOffset + y * targetWidth + x] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return target;
}

/**
 * Resize for a model input: an exact box (area) average when shrinking by whole factors, as the
 * training data was made (PIL BOX, avg_pool2d), otherwise bilinear.
 */
export function resizeForModel(source: Float32Array, planes: number, height: number, width: number, targetHeight: number, targetWidth: number): Float32Array {
  if (height % targetHeight !== 0 || width % targetWidth !== 0 || height < targetHeight || width < targetWidth) {
    return resizeBilinear(source, planes, height, width, targetHeight, targetWidth);
  }
  const factorY = height / targetHeight;
  const factorX = width / targetWidth;
  const target = new Float32Array(planes * targetHeight * targetWidth);
  const area = factorY * factorX;
  for (let plane = 0; plane < planes; plane += 1) {
    const sourceOffset = plane * height * width;
    const targetOffset = plane * targetHeight * targetWidth;
    for (let y = 0; y < targetHeight; y += 1) {
      for (let x = 0; x < targetWidth; x += 1) {
        let sum = 0;
        for (let dy = 0; dy < factorY; dy += 1) {
          const row = sourceOffset + (y * factorY + dy) * width + x * factorX;
          for (let dx = 0; dx < factorX; dx += 1) sum += source[row + dx]!;
        }
        target[targetOffset + y * targetWidth + x] = sum / area;
      }
    }
  }
  return target;
}

/** Nearest-neighbour ×factor enlargement of an NCHW batch (a "sharp" upscale). */
export function resizeNearest(source: Float32Array, planes: number, height: number, width: number, targetHeight: number, targetWidth: number): Float32Array {
  const target = new Float32Array(planes * targetHeight * targetWidth);
  for (let plane = 0; plane < planes; plane += 1) {
    for (let y = 0; y < targetHeight; y += 1) {
      const sourceY = Math.min(height - 1, Math.floor((y * height) / targetHeight));
      for (let x = 0; x < targetWidth; x += 1) {
        const sourceX = Math.min(width - 1, Math.floor((x * width) / targetWidth));
        target[plane * targetHeight * targetWidth + y * targetWidth + x] = source[plane * height * width + sourceY * width + sourceX]!;
      }
    }
  }
  return target;
}

/** `count` copies of `item` one after another. */
export function repeat(item: Float32Array, count: number): Float32Array {
  const result = new Float32Array(item.length * count);
  for (let index = 0; index < count; index += 1) result.set(item, index * item.length);
  return result;
}

/** Arrays one after another. */
export function concat(parts: Float32Array[]): Float32Array {
  const result = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.length;
  }
  return result;
}

/** `target` holding `input` twice: the unconditional and conditional halves of a guided batch. */
export function fillTwice(target: Float32Array, input: Float32Array): Float32Array {
  target.set(input, 0);
  target.set(input, input.length);
  return target;
}

/** Item `index` of a batch of items of `size` values (a copy). */
export function itemOf(batch: Float32Array, index: number, size: number): Float32Array {
  return batch.slice(index * size, (index + 1) * size);
}

/**
 * Classifier-free guidance on the output of a doubled batch (unconditional items first, then
 * conditional): uncond + scale·(cond − uncond).
 */
export function applyGuidance(output: Float32Array, scale: number): Float32Array {
  const half = output.length / 2;
  const result = new Float32Array(half);
  for (let index = 0; index < half; index += 1) {
    const unconditional = output[index]!;
    result[index] = unconditional + scale * (output[half + index]! - unconditional);
  }
  return result;
}

/** L2-normalises each row of a [rows, size] matrix in place and returns it. */
export function normalizeRows(matrix: Float32Array, size: number): Float32Array {
  for (let offset = 0; offset < matrix.length; offset += size) {
    let sum = 0;
    for (let index = 0; index < size; index += 1) sum += matrix[offset + index]! ** 2;
    const norm = Math.sqrt(sum) || 1;
    for (let index = 0; index < size; index += 1) matrix[offset + index] = matrix[offset + index]! / norm;
  }
  return matrix;
}

/** Gaussian noise for a batch: item `index` from its own generator, so batching never changes it. */
export function batchNoise(generators: Random[], itemSize: number): Float32Array {
  const noise = new Float32Array(generators.length * itemSize);
  generators.forEach((generator, index) => generator.fillGaussian(noise.subarray(index * itemSize, (index + 1) * itemSize)));
  return noise;
}

/** Values clamped to [-1, 1] (a copy). */
export function clampUnit(values: Float32Array): Float32Array {
  const result = new Float32Array(values.length);
  for (let index = 0; index < values.length; index += 1) result[index] = Math.max(-1, Math.min(1, values[index]!));
  return result;
}
