/**
 * Stable Diffusion (1.x, 2.x, SD-Turbo, LCM) as exported to ONNX by optimum or by diffusers'
 * conversion script: text_encoder, unet, vae_decoder, vae_encoder, tokenizer and scheduler folders
 * next to model_index.json.
 *
 * - Text to image: latents 4×H/8×W/8 from per-image seeds, classifier-free guidance in one batched
 *   UNet call (skipped when guidance ≤ 1, as SD-Turbo needs), VAE decode one image at a time.
 * - Chaos (0..100, c = chaos/100): each image's text conditioning gets its own Gaussian noise in the
 *   early, noisy steps, annealed away by the later ones (CADS, Sadat et al. 2024): the four images
 *   take different compositions yet still follow the prompt. Noise scale 0.25·c, rescaled to the
 *   conditioning's mean and spread.
 * - Variation: img2img from the chosen image (strength 0.35 subtle, 0.7 strong).
 * - Upscale: bilinear ×2, then img2img at strength 0.3 (a "hires fix").
 *
 * Scheduler: the scheduler_config's `_class_name` picks DDIM, Euler ancestral, DPM-Solver++ or
 * LCM; anything else (PNDM, SD 1.x's default) runs as DDIM with the same config.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EngineError, ErrorCode, ImagineError, ModelError, UserError } from '../../errors.js';
import {
  type EngineCapabilities,
  type EngineImage,
  type EngineResult,
  type EngineSize,
  type GenerateRequest,
  type ImageEngine,
  resolveGuidance,
  resolveSteps,
  sizesForArea,
  throwIfAborted,
  type UpscaleRequest,
  type VariationRequest,
} from '../engine.js';
import type { EngineProgress } from '../engine.js';
import type { SchedulerConfig, SchedulerKind } from '../schedulers/index.js';
import { ClipTokenizer } from '../tokenizer/clip-tokenizer.js';
import { chunks, denoise, generatorFor, loadStageScheduler, makeScheduler, NoiseStream, ProgressTracker, type StagePlan } from '../onnx/diffusion.js';
import { detectModelFolder, readJsonFile } from '../onnx/model-folder.js';
import { defaultSessionSettings, type SessionSettings } from '../onnx/providers.js';
import type { Random } from '../random.js';
import { isFixed, loadSession, type ModelSession, RunClock } from '../onnx/session.js';
import { applyGuidance, batchNoise, clampUnit, concat, fillTwice, imageToTensor, repeat, resizeBilinear, tensorToImage } from '../onnx/tensors.js';

/** img2img strength of each variation strength. */
export const variationStrength = { subtle: 0.35, strong: 0.7 } as const;
/** img2img strength of the upscale's second pass. */
export const upscaleStrength = 0.3;
const defaultScalingFactor = 0.18215;
const latentChannels = 4;
const vaeFactor = 8;

/** Options for {@link StableDiffusionEngine.load}. */
export interface StableDiffusionEngineOptions {
  settings?: SessionSettings;
  /** Images per batched UNet call (a guided call runs twice as many). Default 4. */
  maxBatch?: number;
  clock?: RunClock;
}

/** The files of a diffusers ONNX export, by role. */
export function stableDiffusionFiles(folder: string): Array<{ role: string; file: string }> {
  const at = (...parts: string[]): string => path.join(folder, ...parts);
  return [
    { role: 'tokenizer vocabulary', file: at('tokenizer', 'vocab.json') },
    { role: 'tokenizer merges', file: at('tokenizer', 'merges.txt') },
    { role: 'text encoder', file: at('text_encoder', 'model.onnx') },
    { role: 'UNet', file: at('unet', 'model.onnx') },
    { role: 'VAE decoder', file: at('vae_decoder', 'model.onnx') },
    { role: 'VAE encoder', file: at('vae_encoder', 'model.onnx') },
    { role: 'scheduler', file: at('scheduler', 'scheduler_config.json') },
  ];
}

interface Flavour {
  label: string;
  steps: number;
  guidance: number;
}

/** Stable Diffusion on onnxruntime. */
export class StableDiffusionEngine implements ImageEngine {
  readonly capabilities: EngineCapabilities;
  private closed = false;
  private readonly multipleOf: number;

  private constructor(
    readonly folder: string,
    private readonly tokenizer: ClipTokenizer,
    private readonly padId: number,
    private readonly contextLength: number,
    private readonly textEncoder: ModelSession,
    private readonly unet: ModelSession,
    private readonly vaeDecoder: ModelSession,
    private readonly vaeEncoder: ModelSession | undefined,
    private readonly scheduler: { config: SchedulerConfig; kind: SchedulerKind; file: string },
    private readonly scalingFactor: number,
    private readonly hiddenOutput: string,
    private readonly unetOutput: string,
    baseSize: number,
    flavour: Flavour,
    private readonly maxBatch: number,
    settings: SessionSettings,
    readonly clock: RunClock,
  ) {
    this.multipleOf = baseSize >= 256 ? 64 : vaeFactor;
    this.capabilities = {
      name: `${path.basename(folder)} (Stable Diffusion${flavour.label}, onnxruntime ${settings.executionProviders.join('/')})`,
      family: 'stable-diffusion',
      sizes: sizesForArea(baseSize, this.multipleOf),
      maxBatch,
      defaults: { steps: flavour.steps, guidance: flavour.guidance },
      limits: { minSteps: 1, maxSteps: 150, minGuidance: 0, maxGuidance: 30 },
      upscaleFactor: 2,
      negativePrompt: true,
    };
  }

  /** Loads the folder's models and checks that they fit together. */
  static async load(folder: string, options: StableDiffusionEngineOptions = {}): Promise<StableDiffusionEngine> {
    const layout = await detectModelFolder(folder);
    if (layout.family !== 'stable-diffusion') throw new ModelError(layout.indexFile, 'a diffusers model_index.json', 'this is an imagine-unclip folder');
    const root = layout.folder;
    const settings = options.settings ?? defaultSessionSettings;
    const clock = options.clock ?? new RunClock();
    for (const { role, file } of stableDiffusionFiles(root)) {
      if (role === 'VAE encoder') continue;
      if (!existsSync(file)) throw new ModelError(file, `the ${role} of the Stable Diffusion export in ${root}`, 'the file does not exist');
    }
    const sessions: ModelSession[] = [];
    const open = async (relative: string, role: string): Promise<ModelSession> => {
      const session = await loadSession(path.join(root, relative), role, settings, clock);
      sessions.push(session);
      return session;
    };
    try {
      const tokenizerFolder = path.join(root, 'tokenizer');
      const tokenizer = await ClipTokenizer.fromFolder(tokenizerFolder);
      const { padId, contextLength } = await readPadding(tokenizerFolder, tokenizer);
      const schedulerFile = path.join(root, 'scheduler', 'scheduler_config.json');
      const { config: schedulerConfig, kind } = await loadStageScheduler(schedulerFile, 'Stable Diffusion');
      const textEncoder = await open('text_encoder/model.onnx', 'the Stable Diffusion text encoder');
      const unet = await open('unet/model.onnx', 'the Stable Diffusion UNet');
      const vaeDecoder = await open('vae_decoder/model.onnx', 'the Stable Diffusion VAE decoder');
      const vaeEncoder = existsSync(path.join(root, 'vae_encoder', 'model.onnx')) ? await open('vae_encoder/model.onnx', 'the Stable Diffusion VAE encoder') : undefined;
      const shapes = checkShapes(textEncoder, unet, vaeDecoder, vaeEncoder, contextLength);
      const scalingFactor = await readScalingFactor(root);
      const baseSize = await readBaseSize(root, unet, schedulerConfig);
      const flavour = flavourOf(root, layout.index, kind, unet);
      const maxBatch = Math.max(1, Math.floor(options.maxBatch ?? 4));
      return new StableDiffusionEngine(root, tokenizer, padId, contextLength, textEncoder, unet, vaeDecoder, vaeEncoder, { config: schedulerConfig, kind, file: schedulerFile }, scalingFactor, shapes.hiddenOutput, shapes.unetOutput, baseSize, flavour, maxBatch, settings, clock);
    } catch (error) {
      await Promise.allSettled(sessions.map((session) => session.close()));
      throw error;
    }
  }

  async generate(request: GenerateRequest): Promise<EngineResult> {
    this.assertOpen();
    throwIfAborted(request.signal);
    const seeds = checkSeeds(request.seeds);
    const steps = resolveSteps(this.capabilities, request.steps);
    const guidance = resolveGuidance(this.capabilities, request.guidance);
    const size = this.sizeFor(request.width, request.height);
    const scheduler = (): ReturnType<typeof makeScheduler> => makeScheduler(this.scheduler.kind, this.scheduler.config, this.scheduler.file, { steps });
    const tracker = new ProgressTracker(this.plan(seeds.length, size, scheduler().timesteps.length, guidance), request.onProgress);
    const text = await this.encodeText(request.prompt, request.negativePrompt ?? '', guidance);
    const latentSize = latentItemSize(size);
    const chaos = Math.max(0, Math.min(100, request.chaos ?? 0)) / 100;
    const latents = await this.denoiseLatents(seeds, size, guidance, text, tracker, request.signal, (chunkSeeds, created) => {
      const noise = batchNoise(chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.latents)), latentSize);
      for (let index = 0; index < noise.length; index += 1) noise[index] = noise[index]! * created.initNoiseSigma;
      return noise;
    }, scheduler, chaos);
    const images = await this.decode(latents, seeds.length, size, tracker, request.signal);
    return { images: seeds.map((seed, index) => ({ seed, image: tensorToImage(images, index, size.width, size.height) })), promptTruncated: text.truncated };
  }

  /** img2img from the chosen image at the variation's strength. */
  async vary(request: VariationRequest): Promise<EngineResult> {
    this.assertOpen();
    throwIfAborted(request.signal);
    const seeds = checkSeeds(request.seeds);
    const strength = variationStrength[request.strength];
    if (strength === undefined) throw new UserError(ErrorCode.FlagInvalid, 'Variation strength must be subtle or strong.', { field: 'strength' });
    const size = this.sizeForAspect(request.source.image.width, request.source.image.height);
    return this.imageToImage(request.source, size, strength, seeds, request.steps, request.guidance, request);
  }

  /** Bilinear ×2, then img2img at low strength. */
  async upscale(request: UpscaleRequest): Promise<EngineResult> {
    this.assertOpen();
    throwIfAborted(request.signal);
    const source = request.source.image;
    const round = (value: number): number => Math.max(this.multipleOf, Math.round((value * 2) / this.multipleOf) * this.multipleOf);
    const size = { width: round(source.width), height: round(source.height) };
    const base = this.capabilities.sizes['1:1']!.width;
    if (size.width * size.height > (base * 2) ** 2 * 1.5) {
      throw new UserError(ErrorCode.FlagInvalid, `This image (${source.width}×${source.height}) is already as large as this model can upscale.`, { field: 'image' });
    }
    return this.imageToImage(request.source, size, upscaleStrength, [request.seed], request.steps, undefined, request);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sessions = [this.textEncoder, this.unet, this.vaeDecoder, ...(this.vaeEncoder ? [this.vaeEncoder] : [])];
    await Promise.allSettled(sessions.map((session) => session.close()));
  }

  // ------------------------------------------------------------------------------------------ stages

  private async imageToImage(
    source: EngineImage,
    size: EngineSize,
    strength: number,
    seeds: number[],
    requestedSteps: number | undefined,
    requestedGuidance: number | undefined,
    call: { prompt: string; negativePrompt?: string; signal?: AbortSignal; onProgress?: (progress: EngineProgress) => void },
  ): Promise<EngineResult> {
    if (!this.vaeEncoder) {
      throw new ImagineError(ErrorCode.Unsupported, `This Stable Diffusion model has no VAE encoder (${path.join(this.folder, 'vae_encoder', 'model.onnx')}), which variations and upscales need.`);
    }
    const guidance = resolveGuidance(this.capabilities, requestedGuidance);
    // At least one step must remain after strength cuts the schedule.
    const steps = Math.max(resolveSteps(this.capabilities, requestedSteps), Math.ceil(1 / strength));
    const scheduler = (): ReturnType<typeof makeScheduler> => makeScheduler(this.scheduler.kind, this.scheduler.config, this.scheduler.file, { steps, strength });
    const tracker = new ProgressTracker(this.plan(seeds.length, size, scheduler().timesteps.length, guidance, true), call.onProgress);
    const pixels = imageToTensor(source.image);
    const resized = resizeBilinear(pixels, 3, source.image.height, source.image.width, size.height, size.width);
    const encoded = await this.encodeImage(resized, size);
    tracker.step('vae-encoder');
    throwIfAborted(call.signal);
    const text = await this.encodeText(call.prompt, call.negativePrompt ?? '', guidance);
    const latentSize = latentItemSize(size);
    const latents = await this.denoiseLatents(seeds, size, guidance, text, tracker, call.signal, (chunkSeeds, created) => {
      const noise = batchNoise(chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.latents)), latentSize);
      const first = created.timesteps[0];
      if (first === undefined) throw new EngineError('img2img has no timesteps to run');
      return created.addNoise(repeat(encoded, chunkSeeds.length), noise, first);
    }, scheduler);
    const images = await this.decode(latents, seeds.length, size, tracker, call.signal);
    return { images: seeds.map((seed, index) => ({ seed, image: tensorToImage(images, index, size.width, size.height) })), promptTruncated: text.truncated };
  }

  /** Hidden states [unconditional?, conditional] for the UNet; the unconditional one only when guided. */
  private async encodeText(prompt: string, negativePrompt: string, guidance: number): Promise<{ conditional: Float32Array; unconditional: Float32Array | undefined; truncated: boolean; width: number }> {
    const options = { contextLength: this.contextLength, padId: this.padId };
    const positive = this.tokenizer.encodeForModel(prompt, options);
    const guided = guidance > 1 && !this.unet.hasInput('timestep_cond');
    const ids = guided ? [...this.tokenizer.encodeForModel(negativePrompt, options).ids, ...positive.ids] : positive.ids;
    const batch = guided ? 2 : 1;
    const outputs = await this.textEncoder.run({ input_ids: { data: ids, dims: [batch, this.contextLength] } }, [this.hiddenOutput]);
    const hidden = outputs[this.hiddenOutput];
    if (!hidden) throw new EngineError(`the text encoder returned no ${this.hiddenOutput}`);
    const itemSize = hidden.data.length / batch;
    const width = itemSize / this.contextLength;
    return guided
      ? { unconditional: hidden.data.slice(0, itemSize), conditional: hidden.data.slice(itemSize), truncated: positive.truncated, width }
      : { unconditional: undefined, conditional: hidden.data, truncated: positive.truncated, width };
  }

  private async denoiseLatents(
    seeds: number[],
    size: EngineSize,
    guidance: number,
    text: { conditional: Float32Array; unconditional: Float32Array | undefined; width: number },
    tracker: ProgressTracker,
    signal: AbortSignal | undefined,
    start: (chunkSeeds: number[], scheduler: ReturnType<typeof makeScheduler>) => Float32Array,
    createScheduler: () => ReturnType<typeof makeScheduler>,
    chaos = 0,
  ): Promise<Float32Array> {
    const latentSize = latentItemSize(size);
    const latentHeight = size.height / vaeFactor;
    const latentWidth = size.width / vaeFactor;
    const guided = text.unconditional !== undefined;
    const guidanceEmbedding = this.unet.hasInput('timestep_cond') ? guidanceScaleEmbedding(guidance, this.timestepCondSize()) : undefined;
    const noisyConditioning = chaos > 0 ? annealedConditioning(text.conditional, chaos) : undefined;
    const trainTimesteps = this.scheduler.config.num_train_timesteps ?? 1000;
    const results: Float32Array[] = [];
    for (const [begin, end] of chunks(seeds.length, this.maxBatch)) {
      const chunkSeeds = seeds.slice(begin, end);
      const count = chunkSeeds.length;
      const scheduler = createScheduler();
      const batch = guided ? 2 * count : count;
      const hidden = guided ? concat([repeat(text.unconditional!, count), repeat(text.conditional, count)]) : repeat(text.conditional, count);
      // Chaos: this chunk's images' conditioning, with each image's own noise, at diffusion time t.
      const chaosGenerators = chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.chaos));
      const conditioningAt = noisyConditioning ? (time: number) => noisyConditioning(hidden, guided ? count * text.conditional.length : 0, chaosGenerators, time) : undefined;
      // One buffer for the doubled (unconditional + conditional) latents, reused by every step.
      const doubled = guided ? new Float32Array(2 * count * latentSize) : undefined;
      const latents = await denoise({
        scheduler,
        sample: start(chunkSeeds, scheduler),
        itemSize: latentSize,
        generators: chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.latentSteps)),
        signal,
        onStep: () => tracker.step('unet'),
        predict: async (input, timestep) => {
          const output = await this.unet.runFor(this.unetOutput, {
            sample: { data: doubled ? fillTwice(doubled, input) : input, dims: [batch, latentChannels, latentHeight, latentWidth] },
            timestep: { data: new Array<number>(batch).fill(timestep), dims: [batch] },
            encoder_hidden_states: { data: conditioningAt ? conditioningAt(timestep / trainTimesteps) : hidden, dims: [batch, this.contextLength, text.width] },
            ...(guidanceEmbedding ? { timestep_cond: { data: repeat(guidanceEmbedding, batch), dims: [batch, guidanceEmbedding.length] } } : {}),
          });
          if (output.data.length !== batch * latentSize) {
            throw new ModelError(this.unet.file, `the UNet to return ${batch * latentSize} values`, `it returned ${output.data.length}`);
          }
          return guided ? applyGuidance(output.data, guidance) : output.data;
        },
      });
      results.push(latents);
    }
    return concat(results);
  }

  /** VAE-decodes latents one image at a time (the decoder is the memory peak); images in [-1, 1]. */
  private async decode(latents: Float32Array, count: number, size: EngineSize, tracker: ProgressTracker, signal: AbortSignal | undefined): Promise<Float32Array> {
    const latentSize = latentItemSize(size);
    const images: Float32Array[] = [];
    for (let index = 0; index < count; index += 1) {
      throwIfAborted(signal);
      const latent = latents.slice(index * latentSize, (index + 1) * latentSize);
      for (let item = 0; item < latent.length; item += 1) latent[item] = latent[item]! / this.scalingFactor;
      const output = await this.vaeDecoder.runFor('sample', { latent_sample: { data: latent, dims: [1, latentChannels, size.height / vaeFactor, size.width / vaeFactor] } });
      if (output.data.length !== 3 * size.width * size.height) {
        throw new ModelError(this.vaeDecoder.file, `the VAE decoder to return a ${size.width}×${size.height} image`, `it returned ${output.data.length} values`);
      }
      images.push(clampUnit(output.data));
      tracker.step('vae-decoder');
    }
    return concat(images);
  }

  /** Scaled latents of one image (the distribution's mean when the encoder returns mean and log-variance). */
  private async encodeImage(pixels: Float32Array, size: EngineSize): Promise<Float32Array> {
    const encoder = this.vaeEncoder!;
    const outputName = encoder.pickOutput(['latent_parameters', 'latent_sample', 'latent_dist']) ?? [...encoder.outputs.keys()][0]!;
    const output = await encoder.runFor(outputName, { sample: { data: pixels, dims: [1, 3, size.height, size.width] } });
    const latentSize = latentItemSize(size);
    // latent_parameters holds the mean's 4 channels, then the log-variance's: take the mean.
    if (output.data.length !== latentSize && output.data.length !== 2 * latentSize) {
      throw new ModelError(encoder.file, `the VAE encoder to return ${latentSize} (or mean and log-variance, ${2 * latentSize}) values`, `it returned ${output.data.length}`);
    }
    const mean = output.data.slice(0, latentSize);
    for (let index = 0; index < mean.length; index += 1) mean[index] = mean[index]! * this.scalingFactor;
    return mean;
  }

  private timestepCondSize(): number {
    const dim = this.unet.inputs.get('timestep_cond')?.dims[1];
    return isFixed(dim) ? dim : 256;
  }

  // ------------------------------------------------------------------------------------------ sizes, limits, plans

  private sizeFor(width: number, height: number): EngineSize {
    if (!Number.isFinite(width) || !Number.isFinite(height) || width <= 0 || height <= 0) {
      throw new UserError(ErrorCode.FlagInvalid, `The image size ${width}×${height} is not valid.`, { field: 'ar' });
    }
    const round = (value: number): number => Math.max(this.multipleOf, Math.round(value / this.multipleOf) * this.multipleOf);
    const size = { width: round(width), height: round(height) };
    const base = this.capabilities.sizes['1:1']!.width;
    if (size.width * size.height > base * base * 4) {
      throw new UserError(ErrorCode.FlagInvalid, `The image size ${width}×${height} is too large for this model.`, { field: 'ar' });
    }
    return size;
  }

  private sizeForAspect(width: number, height: number): EngineSize {
    const ratio = width / height;
    let best = this.capabilities.sizes['1:1']!;
    for (const size of Object.values(this.capabilities.sizes)) {
      if (Math.abs(Math.log(size.width / size.height / ratio)) < Math.abs(Math.log(best.width / best.height / ratio))) best = size;
    }
    return best;
  }


  private plan(images: number, size: EngineSize, steps: number, guidance: number, encode = false): StagePlan[] {
    const latentPixels = (size.width / vaeFactor) * (size.height / vaeFactor);
    const guided = guidance > 1 && !this.unet.hasInput('timestep_cond');
    const chunkCount = Math.ceil(images / this.maxBatch);
    const plan: StagePlan[] = [];
    // The VAE works on 64× the pixels of the latents, with far fewer channels: about as costly as a few UNet steps.
    if (encode) plan.push({ stage: 'vae-encoder', steps: 1, weight: latentPixels * 2 });
    plan.push({ stage: 'unet', steps: steps * chunkCount, weight: latentPixels * Math.min(images, this.maxBatch) * (guided ? 2 : 1) });
    plan.push({ stage: 'vae-decoder', steps: images, weight: latentPixels * 3 });
    return plan;
  }

  private assertOpen(): void {
    if (this.closed) throw new EngineError('The engine was closed.');
  }
}

function latentItemSize(size: EngineSize): number {
  return latentChannels * (size.width / vaeFactor) * (size.height / vaeFactor);
}

function checkSeeds(seeds: number[]): number[] {
  if (!Array.isArray(seeds) || seeds.length === 0) throw new EngineError('A request needs at least one seed.');
  for (const seed of seeds) {
    if (!Number.isFinite(seed)) throw new UserError(ErrorCode.FlagInvalid, `The seed ${seed} is not a number.`, { field: 'seed' });
  }
  return seeds;
}

/** LCM's guidance embedding (diffusers' get_guidance_scale_embedding of w = guidance − 1, × 1000). */
export function guidanceScaleEmbedding(guidance: number, dim: number): Float32Array {
  const w = (guidance - 1) * 1000;
  const half = dim / 2;
  const embedding = new Float32Array(dim);
  const step = Math.log(10000) / (half - 1);
  for (let index = 0; index < half; index += 1) {
    const angle = w * Math.exp(-step * index);
    embedding[index] = Math.sin(angle);
    embedding[half + index] = Math.cos(angle);
  }
  return embedding;
}

/** The pad id and context length from tokenizer_config.json / special_tokens_map.json (SD 1.x pads with <|endoftext|>, SD 2.x with "!"). */
async function readPadding(folder: string, tokenizer: ClipTokenizer): Promise<{ padId: number; contextLength: number }> {
  let padToken: string | undefined;
  let contextLength = 77;
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const file = path.join(folder, name);
    if (!existsSync(file)) continue;
    const config = await readJsonFile(file, 'a Hugging Face tokenizer config (JSON)');
    const pad = config.pad_token;
    const text = typeof pad === 'string' ? pad : typeof pad === 'object' && pad !== null && typeof (pad as { content?: unknown }).content === 'string' ? (pad as { content: string }).content : undefined;
    padToken ??= text;
    const max = config.model_max_length;
    if (name === 'tokenizer_config.json' && typeof max === 'number' && max >= 2 && max <= 4096) contextLength = max;
  }
  if (padToken === undefined || padToken === '<|endoftext|>') return { padId: tokenizer.endId, contextLength };
  const vocabulary = await readJsonFile(path.join(folder, 'vocab.json'), 'a JSON object of token → id');
  const id = vocabulary[padToken];
  return { padId: typeof id === 'number' ? id : tokenizer.endId, contextLength };
}

async function readScalingFactor(root: string): Promise<number> {
  for (const file of [path.join(root, 'vae_decoder', 'config.json'), path.join(root, 'vae', 'config.json')]) {
    if (!existsSync(file)) continue;
    const config = await readJsonFile(file, 'a diffusers VAE config (JSON)');
    if (typeof config.scaling_factor === 'number' && config.scaling_factor > 0) return config.scaling_factor;
  }
  return defaultScalingFactor;
}

/** The image side the UNet was trained for: unet/config.json's sample_size × 8, or a fixed input size, or 512 (768 for v-prediction SD 2). */
async function readBaseSize(root: string, unet: ModelSession, scheduler: SchedulerConfig): Promise<number> {
  const file = path.join(root, 'unet', 'config.json');
  if (existsSync(file)) {
    const config = await readJsonFile(file, 'a diffusers UNet config (JSON)');
    const sampleSize = Array.isArray(config.sample_size) ? config.sample_size[0] : config.sample_size;
    if (typeof sampleSize === 'number' && sampleSize > 0) return sampleSize * vaeFactor;
  }
  const height = unet.inputs.get('sample')?.dims[2];
  if (isFixed(height)) return height * vaeFactor;
  return scheduler.prediction_type === 'v_prediction' ? 768 : 512;
}

/** Default steps and guidance for the kind of model: LCM, SD-Turbo or classic SD. */
function flavourOf(root: string, index: Record<string, unknown>, kind: SchedulerKind, unet: ModelSession): Flavour {
  const pipeline = String(index._class_name ?? '');
  if (kind === 'lcm' || /LatentConsistency/.test(pipeline)) return { label: ' LCM', steps: 4, guidance: unet.hasInput('timestep_cond') ? 8 : 1 };
  if (/turbo/i.test(path.basename(root)) || /turbo/i.test(String(index._name_or_path ?? ''))) return { label: ' Turbo', steps: 1, guidance: 0 };
  return { label: '', steps: 25, guidance: 7.5 };
}

function checkShapes(textEncoder: ModelSession, unet: ModelSession, vaeDecoder: ModelSession, vaeEncoder: ModelSession | undefined, contextLength: number): { hiddenOutput: string; unetOutput: string } {
  const floats = ['float32', 'float16'];
  textEncoder.input('input_ids', { types: ['int32', 'int64'], ranks: [2], sizes: { 1: contextLength } });
  const hiddenOutput = textEncoder.pickOutput(['last_hidden_state']) ?? [...textEncoder.outputs.keys()][0];
  if (!hiddenOutput) throw new ModelError(textEncoder.file, 'a text encoder with a last_hidden_state output', 'it has no outputs');
  const hidden = textEncoder.output(hiddenOutput, { ranks: [3] });
  unet.input('sample', { types: floats, ranks: [4], sizes: { 1: latentChannels } });
  unet.input('timestep', { types: ['int64', 'int32', 'float32', 'float16', 'float64'], ranks: [0, 1] });
  const width = hidden.dims[2];
  unet.input('encoder_hidden_states', { types: floats, ranks: [3], sizes: isFixed(width) ? { 2: width } : {} });
  const known = new Set(['sample', 'timestep', 'encoder_hidden_states', 'timestep_cond']);
  const extra = [...unet.inputs.keys()].filter((name) => !known.has(name));
  if (extra.length > 0) {
    throw new ModelError(unet.file, 'a Stable Diffusion 1.x/2.x UNet (inputs sample, timestep, encoder_hidden_states)', `it also needs ${extra.map((name) => `"${name}"`).join(', ')} (SDXL and other variants are not supported)`);
  }
  const unetOutput = unet.pickOutput(['out_sample', 'noise_pred', 'sample']) ?? [...unet.outputs.keys()][0]!;
  unet.output(unetOutput, { ranks: [4], sizes: { 1: latentChannels } });
  if (isFixed(unet.inputs.get('sample')?.dims[0])) throw new ModelError(unet.file, 'a UNet with a dynamic batch dimension', 'its batch dimension is fixed');
  vaeDecoder.input('latent_sample', { types: floats, ranks: [4], sizes: { 1: latentChannels } });
  vaeDecoder.output('sample', { ranks: [4], sizes: { 1: 3 } });
  if (vaeEncoder) {
    vaeEncoder.input('sample', { types: floats, ranks: [4], sizes: { 1: 3 } });
    const output = vaeEncoder.pickOutput(['latent_parameters', 'latent_sample', 'latent_dist']);
    if (!output) throw new ModelError(vaeEncoder.file, 'a VAE encoder with a latent_sample or latent_parameters output', `its outputs are ${[...vaeEncoder.outputs.keys()].join(', ')}`);
    vaeEncoder.output(output, { ranks: [4], sizes: { 1: output === 'latent_parameters' ? 2 * latentChannels : latentChannels } });
  }
  return { hiddenOutput, unetOutput };
}

/** CADS's schedule: full noise while t ≥ 0.9 of the way to pure noise, none below 0.6, linear between. */
const chaosAnnealing = { start: 0.6, end: 0.9 };
/** The noise scale at chaos 100 (the upper end of CADS's range). */
const chaosConditioningNoise = 0.25;

/**
 * The conditional text states of each image with CADS noise for diffusion time `time` (0 clean .. 1
 * pure noise): ŷ = √γ·y + s·√(1−γ)·n, rescaled to y's mean and standard deviation. Made once per
 * request (y's statistics do not change between steps); `hidden` is not changed: the copy replaces
 * each image's conditional block from `offset` on.
 */
export function annealedConditioning(conditional: Float32Array, chaos: number): (hidden: Float32Array, offset: number, generators: Random[], time: number) => Float32Array {
  const { mean, deviation } = statistics(conditional);
  const noise = new Float32Array(conditional.length);
  return (hidden, offset, generators, time) => {
    const { start, end } = chaosAnnealing;
    const gamma = time <= start ? 1 : time >= end ? 0 : (end - time) / (end - start);
    if (gamma >= 1) return hidden;
    const scale = chaosConditioningNoise * chaos * Math.sqrt(1 - gamma);
    const keep = Math.sqrt(gamma);
    const result = hidden.slice();
    generators.forEach((generator, image) => {
      generator.fillGaussian(noise);
      for (let index = 0; index < noise.length; index += 1) noise[index] = keep * conditional[index]! + scale * noise[index]!;
      const noisy = statistics(noise);
      const ratio = deviation / (noisy.deviation || 1);
      const base = offset + image * conditional.length;
      for (let index = 0; index < noise.length; index += 1) result[base + index] = (noise[index]! - noisy.mean) * ratio + mean;
    });
    return result;
  };
}

function statistics(values: Float32Array): { mean: number; deviation: number } {
  let mean = 0;
  for (const value of values) mean += value;
  mean /= values.length;
  let variance = 0;
  for (const value of values) variance += (value - mean) ** 2;
  return { mean, deviation: Math.sqrt(variance / values.length) };
}
