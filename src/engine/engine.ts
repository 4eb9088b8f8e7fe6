/**
 * The engine contract: what every image backend implements (the ONNX unCLIP and Stable Diffusion
 * pipelines, the worker-thread proxy, and the fakes in test/). The engine knows nothing of users,
 * queues or platforms.
 */
import { ErrorCode, UserError } from '../errors.js';

/** An 8-bit RGB image, row-major, three bytes a pixel, no padding. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * What a later variation or upscale of an image needs besides its pixels, such as the CLIP image
 * embedding for unCLIP. Plain data so that it can be stored with the job and cross threads.
 */
export interface ImageArtifact {
  /** What the values are, e.g. `clip-image-embedding`. */
  kind: string;
  /** The tensor's dimensions. */
  dims: number[];
  values: Float32Array;
}

/** One image an engine made, with what is needed to vary or upscale it later. */
export interface EngineImage {
  image: RgbImage;
  /** The seed that made this image. */
  seed: number;
  artifact?: ImageArtifact;
}

/** Reported after every denoising step. */
export interface EngineProgress {
  /** The stage running now, e.g. `prior`, `decoder`, `upsampler-1`, `unet`. */
  stage: string;
  /** Steps done in this stage, and in all of it. */
  step: number;
  steps: number;
  /** Fraction of the whole request done, 0..1, monotonic. */
  fraction: number;
}

/** What every request may carry. */
export interface EngineCallOptions {
  /** Checked between steps; an aborted request rejects with an AbortError. */
  signal?: AbortSignal;
  onProgress?: (progress: EngineProgress) => void;
}

/** Text to image. */
export interface GenerateRequest extends EngineCallOptions {
  prompt: string;
  negativePrompt?: string;
  width: number;
  height: number;
  /** One seed per image; the number of images is `seeds.length`. */
  seeds: number[];
  /** Denoising steps of the main stage; the engine's default when absent. */
  steps?: number;
  /** Classifier-free guidance scale; the engine's default when absent. */
  guidance?: number;
  /** 0..100: how different the images of one request may be from each other. */
  chaos?: number;
}

/** How far a variation may drift from its source. */
export type VariationStrength = 'subtle' | 'strong';

/** New images like one earlier image. */
export interface VariationRequest extends EngineCallOptions {
  source: EngineImage;
  prompt: string;
  negativePrompt?: string;
  strength: VariationStrength;
  seeds: number[];
  steps?: number;
  guidance?: number;
}

/** A higher-resolution version of one earlier image. */
export interface UpscaleRequest extends EngineCallOptions {
  source: EngineImage;
  prompt: string;
  negativePrompt?: string;
  seed: number;
  steps?: number;
}

/** What a request returns. */
export interface EngineResult {
  images: EngineImage[];
  /** True when the prompt was longer than the text encoder's context and was cut. */
  promptTruncated: boolean;
}

/** An image size the engine makes for a named aspect ratio. */
export interface EngineSize {
  width: number;
  height: number;
}

/** What an engine can do; plain data so that it crosses threads. */
export interface EngineCapabilities {
  /** Shown to users by `info`, e.g. `imagine-shapes (unCLIP, onnxruntime cpu)`. */
  name: string;
  family: 'unclip' | 'stable-diffusion' | (string & {});
  /** Sizes by aspect ratio (`1:1`, `3:2`, `16:9`, ...); must include 1:1, 3:2, 2:3, 4:3, 3:4, 16:9 and 9:16. */
  sizes: Record<string, EngineSize>;
  /** Images one batched call makes at most. */
  maxBatch: number;
  defaults: { steps: number; guidance: number };
  limits: { minSteps: number; maxSteps: number; minGuidance: number; maxGuidance: number };
  /** How many times larger an upscale is than its source. */
  upscaleFactor: number;
  negativePrompt: boolean;
}

/** An image backend. Implementations must be safe to call again after a rejected call. */
export interface ImageEngine {
  readonly capabilities: EngineCapabilities;
  generate(request: GenerateRequest): Promise<EngineResult>;
  vary(request: VariationRequest): Promise<EngineResult>;
  upscale(request: UpscaleRequest): Promise<EngineResult>;
  /** Frees sessions and threads; later calls reject. */
  close(): Promise<void>;
}

/** The steps to run: the engine's default, or `steps` when it is within the engine's limits. */
export function resolveSteps(capabilities: EngineCapabilities, steps: number | undefined): number {
  if (steps === undefined) return capabilities.defaults.steps;
  const { minSteps, maxSteps } = capabilities.limits;
  if (!Number.isInteger(steps) || steps < minSteps || steps > maxSteps) {
    throw new UserError(ErrorCode.FlagInvalid, `Steps must be a whole number from ${minSteps} to ${maxSteps}.`, { field: 'steps' });
  }
  return steps;
}

/** The guidance scale to use: the engine's default, or `guidance` when it is within the engine's limits. */
export function resolveGuidance(capabilities: EngineCapabilities, guidance: number | undefined): number {
  if (guidance === undefined) return capabilities.defaults.guidance;
  const { minGuidance, maxGuidance } = capabilities.limits;
  if (!Number.isFinite(guidance) || guidance < minGuidance || guidance > maxGuidance) {
    throw new UserError(ErrorCode.FlagInvalid, `Guidance must be a number from ${minGuidance} to ${maxGuidance}.`, { field: 'guidance' });
  }
  return guidance;
}

/** The aspect ratios every engine offers. */
export const standardAspectRatios = ['1:1', '3:2', '2:3', '4:3', '3:4', '16:9', '9:16'] as const;

/**
 * Sizes for the standard aspect ratios with about the area of `base`×`base`, each side a multiple
 * of `multipleOf`, for engines whose models are fully convolutional.
 */
export function sizesForArea(base: number, multipleOf: number): Record<string, EngineSize> {
  const sizes: Record<string, EngineSize> = {};
  for (const ratio of standardAspectRatios) {
    const [w, h] = ratio.split(':').map(Number) as [number, number];
    const scale = Math.sqrt((base * base) / (w * h));
    const round = (value: number): number => Math.max(multipleOf, Math.round(value / multipleOf) * multipleOf);
    sizes[ratio] = { width: round(w * scale), height: round(h * scale) };
  }
  return sizes;
}

/** Throws the signal's reason (an AbortError) when it has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const error = new Error('The operation was aborted.');
    error.name = 'AbortError';
    throw error;
  }
}
