/**
 * DALL·E 2 style unCLIP on onnxruntime: CLIP text encoder → diffusion prior (a CLIP image
 * embedding) → decoder (a small image conditioned on that embedding) → upsamplers.
 *
 * Guidance is classifier-free and batched: the unconditional and conditional halves of every image
 * of a chunk go through the model in one call. Noise comes from per-image generators seeded from
 * each image's seed, so an image never depends on which other images shared its batch.
 *
 * Chaos (0..100, fraction c = chaos/100): the prior samples with DDIM η = c (stochastic steps make
 * the four embeddings wander apart), and then each embedding gets Gaussian noise of relative size
 * 0.25·c, renormalised — the same operation as a variation, so chaos 100 is a little stronger than
 * a subtle variation between the images of one grid.
 */
import path from 'node:path';
import { EngineError, ErrorCode, ModelError, UserError } from '../../errors.js';
import {
  type EngineCapabilities,
  type EngineImage,
  type EngineResult,
  type EngineSize,
  type GenerateRequest,
  type ImageArtifact,
  type ImageEngine,
  type RgbImage,
  resolveGuidance,
  resolveSteps,
  sizesForArea,
  throwIfAborted,
  type UpscaleRequest,
  type VariationRequest,
} from '../engine.js';
import { ClipTokenizer } from '../tokenizer/clip-tokenizer.js';
import type { SchedulerConfig, SchedulerKind } from '../schedulers/index.js';
import { chunks, denoise, generatorFor, loadStageScheduler, makeScheduler, NoiseStream, ProgressTracker, type StagePlan } from '../onnx/diffusion.js';
import { detectModelFolder, type ModelDescription } from '../onnx/model-folder.js';
import { defaultSessionSettings, type SessionSettings } from '../onnx/providers.js';
import { isFixed, loadSession, type ModelSession, RunClock } from '../onnx/session.js';
import { applyGuidance, batchNoise, clampUnit, concat, fillTwice, imageToTensor, itemOf, normalizeRows, repeat, resizeBilinear, resizeForModel, tensorToImage } from '../onnx/tensors.js';
import { manifestFiles, type UnclipManifest, validateManifest } from './manifest.js';
import { existsSync } from 'node:fs';

/** The artifact kind every unCLIP image carries. */
export const clipImageEmbeddingKind = 'clip-image-embedding';

/** Options for {@link UnclipEngine.load}. */
export interface UnclipEngineOptions {
  settings?: SessionSettings;
  /** Images per batched model call (each guided call runs twice as many). Default 4. */
  maxBatch?: number;
  /** Collects time spent inside onnxruntime (for the benchmark). */
  clock?: RunClock;
}

interface Stage {
  session: ModelSession;
  schedulerConfig: SchedulerConfig;
  schedulerKind: SchedulerKind;
  schedulerFile: string;
}

const defaultMaxBatch = 4;
/** How strongly chaos 100 perturbs the embeddings (relative to their unit length). */
const chaosEmbeddingNoise = 0.25;

/** The unCLIP engine for a folder with an imagine-unclip manifest.json. */
export class UnclipEngine implements ImageEngine {
  readonly capabilities: EngineCapabilities;
  private closed = false;
  private readonly embeddingDim: number;
  private readonly gridFactor: number;

  private constructor(
    readonly folder: string,
    readonly manifest: UnclipManifest,
    private readonly tokenizer: ClipTokenizer,
    private readonly textEncoder: ModelSession,
    private readonly imageEncoder: ModelSession,
    private readonly prior: Stage,
    private readonly decoder: Stage,
    private readonly upsamplers: Stage[],
    private readonly maxBatch: number,
    settings: SessionSettings,
    /** Time spent inside onnxruntime by this engine's sessions. */
    readonly clock: RunClock,
  ) {
    this.embeddingDim = manifest.embeddingDim;
    this.gridFactor = manifest.upsamplers.slice(0, manifest.gridStages).reduce((product, entry) => product * entry.factor, 1);
    const base = sizesForArea(manifest.decoder.size, manifest.decoder.multipleOf);
    const sizes: Record<string, EngineSize> = {};
    for (const [ratio, size] of Object.entries(base)) sizes[ratio] = { width: size.width * this.gridFactor, height: size.height * this.gridFactor };
    const upscaleStage = manifest.upsamplers[manifest.gridStages];
    this.capabilities = {
      name: `${manifest.name} (unCLIP, onnxruntime ${settings.executionProviders.join('/')})`,
      family: 'unclip',
      sizes,
      maxBatch,
      defaults: { steps: manifest.decoder.steps, guidance: manifest.decoder.guidance },
      limits: { minSteps: 1, maxSteps: Math.max(100, manifest.decoder.steps * 4), minGuidance: 0, maxGuidance: 30 },
      upscaleFactor: upscaleStage?.factor ?? 2,
      negativePrompt: true,
    };
  }

  /** Loads every model of the folder and checks that they fit the manifest and each other. */
  static async load(folder: string, options: UnclipEngineOptions = {}): Promise<UnclipEngine> {
    const layout = await detectModelFolder(folder);
    if (layout.family !== 'unclip') throw new ModelError(layout.indexFile, 'an imagine-unclip manifest.json', 'this is a Stable Diffusion folder');
    const manifest = validateManifest(layout.index, layout.indexFile);
    const settings = options.settings ?? defaultSessionSettings;
    const clock = options.clock ?? new RunClock();
    const root = layout.folder;
    for (const { role, file } of manifestFiles(manifest, root)) {
      if (!existsSync(file)) throw new ModelError(file, `the ${role} named in ${layout.indexFile}`, 'the file does not exist');
    }
    const at = (relative: string): string => path.resolve(root, relative);
    const sessions: ModelSession[] = [];
    const open = async (relative: string, role: string): Promise<ModelSession> => {
      const session = await loadSession(at(relative), role, settings, clock);
      sessions.push(session);
      return session;
    };
    const stage = async (entry: { path: string; scheduler: string }, role: string): Promise<Stage> => {
      const session = await open(entry.path, role);
      const schedulerFile = at(entry.scheduler);
      const { config, kind } = await loadStageScheduler(schedulerFile, role);
      return { session, schedulerConfig: config, schedulerKind: kind, schedulerFile };
    };
    try {
      const tokenizer = await ClipTokenizer.fromMerges(at(manifest.tokenizer.merges));
      const textEncoder = await open(manifest.textEncoder.path, 'the unCLIP text encoder');
      const imageEncoder = await open(manifest.imageEncoder.path, 'the unCLIP image encoder');
      const prior = await stage(manifest.prior, 'the unCLIP prior');
      const decoder = await stage(manifest.decoder, 'the unCLIP decoder');
      const upsamplers: Stage[] = [];
      for (const [index, entry] of manifest.upsamplers.entries()) upsamplers.push(await stage(entry, `unCLIP upsampler ${index + 1}`));
      checkShapes(manifest, textEncoder, imageEncoder, prior.session, decoder.session, upsamplers.map((item) => item.session));
      const maxBatch = Math.max(1, Math.floor(options.maxBatch ?? defaultMaxBatch));
      return new UnclipEngine(root, manifest, tokenizer, textEncoder, imageEncoder, prior, decoder, upsamplers, maxBatch, settings, clock);
    } catch (error) {
      await Promise.allSettled(sessions.map((session) => session.close()));
      throw error;
    }
  }

  /** Text to image: prior → decoder → the grid's upsampler stages. */
  async generate(request: GenerateRequest): Promise<EngineResult> {
    this.assertOpen();
    throwIfAborted(request.signal);
    const seeds = checkSeeds(request.seeds);
    const steps = resolveSteps(this.capabilities, request.steps);
    const guidance = resolveGuidance(this.capabilities, request.guidance);
    const chaos = Math.max(0, Math.min(100, request.chaos ?? 0)) / 100;
    const decoderSize = this.decoderSizeFor(request.width, request.height);
    const tracker = new ProgressTracker(this.plan(seeds.length, decoderSize, steps, guidance, true), request.onProgress);

    const text = await this.encodeText(request.prompt, request.negativePrompt ?? '');
    throwIfAborted(request.signal);
    let embeddings = await this.runPrior(text, seeds, chaos, tracker, request.signal);
    if (chaos > 0) embeddings = perturb(embeddings, this.embeddingDim, seeds, chaos * chaosEmbeddingNoise, NoiseStream.chaos);
    let images = await this.runDecoder(embeddings, text.embeds.subarray(this.embeddingDim), seeds, decoderSize, steps, guidance, 0, tracker, request.signal);
    let size = decoderSize;
    for (let stage = 0; stage < this.manifest.gridStages; stage += 1) {
      ({ images, size } = await this.runUpsampler(stage, images, size, seeds, undefined, tracker, request.signal));
    }
    return { images: this.toEngineImages(images, size, seeds, embeddings), promptTruncated: text.truncated };
  }

  /** New images like the source: its embedding plus noise, redrawn by the decoder with new seeds. */
  async vary(request: VariationRequest): Promise<EngineResult> {
    this.assertOpen();
    throwIfAborted(request.signal);
    const seeds = checkSeeds(request.seeds);
    const steps = resolveSteps(this.capabilities, request.steps);
    const guidance = resolveGuidance(this.capabilities, request.guidance);
    const settings = this.manifest.variation[request.strength];
    if (!settings) throw new UserError(ErrorCode.FlagInvalid, 'Variation strength must be subtle or strong.', { field: 'strength' });
    const decoderSize = this.decoderSizeForAspect(request.source.image.width, request.source.image.height);
    const tracker = new ProgressTracker(this.plan(seeds.length, decoderSize, steps, guidance, false), request.onProgress);
    // What the picture shows, as the model's variations are defined (models/README.md): the image
    // encoder's embedding of the source, not the prior's sample it was drawn from.
    const source = await this.embeddingOf(request.source, false);
    throwIfAborted(request.signal);
    const embeddings = perturb(repeat(source, seeds.length), this.embeddingDim, seeds, settings.embeddingNoise, NoiseStream.variation);
    let textEmbedding = new Float32Array(this.embeddingDim);
    let truncated = false;
    if (this.decoder.session.hasInput('text_embeds')) {
      const text = await this.encodeText(request.prompt, request.negativePrompt ?? '');
      textEmbedding = text.embeds.slice(this.embeddingDim);
      truncated = text.truncated;
    }
    let images = await this.runDecoder(embeddings, textEmbedding, seeds, decoderSize, steps, guidance, settings.eta, tracker, request.signal);
    let size = decoderSize;
    for (let stage = 0; stage < this.manifest.gridStages; stage += 1) {
      ({ images, size } = await this.runUpsampler(stage, images, size, seeds, undefined, tracker, request.signal));
    }
    return { images: this.toEngineImages(images, size, seeds, embeddings), promptTruncated: truncated };
  }

  /** The next upsampler after the grid's, conditioned on the chosen image (bilinear ×2 when there is none). */
  async upscale(request: UpscaleRequest): Promise<EngineResult> {
    this.assertOpen();
    throwIfAborted(request.signal);
    const stageIndex = this.manifest.gridStages;
    const entry = this.manifest.upsamplers[stageIndex];
    const source = request.source.image;
    const tile = this.capabilities.sizes['1:1']!.width;
    if (source.width * source.height > (tile * this.capabilities.upscaleFactor) ** 2 * 1.5) {
      throw new UserError(ErrorCode.FlagInvalid, `This image (${source.width}×${source.height}) is already as large as this model can upscale.`, { field: 'image' });
    }
    const sourceTensor = imageToTensor(source);
    const sourceSize = { width: source.width, height: source.height };
    const embedding = await this.embeddingOf(request.source, true);
    if (!entry) {
      const factor = this.capabilities.upscaleFactor;
      const resized = resizeBilinear(sourceTensor, 3, source.height, source.width, source.height * factor, source.width * factor);
      request.onProgress?.({ stage: 'resize', step: 1, steps: 1, fraction: 1 });
      return { images: this.toEngineImages(resized, { width: source.width * factor, height: source.height * factor }, [request.seed], embedding), promptTruncated: false };
    }
    const steps = request.steps === undefined ? entry.steps : resolveSteps(this.capabilities, request.steps);
    const stage = `upsampler-${stageIndex + 1}`;
    const tracker = new ProgressTracker([{ stage, steps, weight: 1 }], request.onProgress);
    const { images, size } = await this.runUpsampler(stageIndex, sourceTensor, sourceSize, [request.seed], steps, tracker, request.signal);
    return { images: this.toEngineImages(images, size, [request.seed], embedding), promptTruncated: false };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sessions = [this.textEncoder, this.imageEncoder, this.prior.session, this.decoder.session, ...this.upsamplers.map((stage) => stage.session)];
    await Promise.allSettled(sessions.map((session) => session.close()));
  }

  /** The model files and what they are, for `info` and errors. */
  describe(): ModelDescription {
    return {
      folder: this.folder,
      family: 'unclip',
      name: this.manifest.name,
      files: manifestFiles(this.manifest, this.folder).map((entry) => ({ ...entry, exists: existsSync(entry.file) })),
      problems: [],
    };
  }

  // ------------------------------------------------------------------------------------------ stages

  /** Negative (unconditional) and positive prompt in one batch: embeds [2,E], hidden [2,L,W]. */
  private async encodeText(prompt: string, negativePrompt: string): Promise<{ embeds: Float32Array; hidden: Float32Array; hiddenSize: number; truncated: boolean }> {
    const contextLength = this.manifest.contextLength;
    const negative = this.tokenizer.encodeForModel(negativePrompt, { contextLength, padId: 0 });
    const positive = this.tokenizer.encodeForModel(prompt, { contextLength, padId: 0 });
    const outputs = await this.textEncoder.run({ input_ids: { data: [...negative.ids, ...positive.ids], dims: [2, contextLength] } });
    const embeds = outputs.text_embeds;
    const hidden = outputs.last_hidden_state;
    if (!embeds || !hidden) throw new EngineError('the unCLIP text encoder returned no text_embeds or last_hidden_state');
    return { embeds: normalizeRows(embeds.data.slice(), this.embeddingDim), hidden: hidden.data, hiddenSize: hidden.data.length / 2, truncated: positive.truncated };
  }

  /** The prior's image embeddings, one per seed, divided by embeddingScale and unit length. */
  private async runPrior(text: { embeds: Float32Array; hidden: Float32Array; hiddenSize: number }, seeds: number[], chaos: number, tracker: ProgressTracker, signal: AbortSignal | undefined): Promise<Float32Array> {
    const size = this.embeddingDim;
    const guidance = this.manifest.prior.guidance;
    const guided = guidance !== 1;
    const results: Float32Array[] = [];
    for (const [start, end] of chunks(seeds.length, this.maxBatch)) {
      const chunkSeeds = seeds.slice(start, end);
      const count = chunkSeeds.length;
      const scheduler = makeScheduler(this.prior.schedulerKind, this.prior.schedulerConfig, this.prior.schedulerFile, { steps: this.manifest.prior.steps, eta: chaos });
      const start0 = batchNoise(chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.prior)), size);
      scale(start0, scheduler.initNoiseSigma);
      const unconditionalEmbeds = text.embeds.subarray(0, size);
      const conditionalEmbeds = text.embeds.subarray(size);
      const unconditionalHidden = text.hidden.subarray(0, text.hiddenSize);
      const conditionalHidden = text.hidden.subarray(text.hiddenSize);
      const hiddenDims = [text.hiddenSize / this.manifest.contextLength];
      const textEmbeds = guided ? concat([repeat(unconditionalEmbeds, count), repeat(conditionalEmbeds, count)]) : repeat(conditionalEmbeds, count);
      const textHidden = guided ? concat([repeat(unconditionalHidden, count), repeat(conditionalHidden, count)]) : repeat(conditionalHidden, count);
      const batch = guided ? 2 * count : count;
      const doubled = guided ? new Float32Array(2 * count * size) : undefined;
      const sample = await denoise({
        scheduler,
        sample: start0,
        itemSize: size,
        generators: chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.priorSteps)),
        signal,
        onStep: () => tracker.step('prior'),
        predict: async (input, timestep) => {
          const output = await this.prior.session.runFor('predicted', {
            sample: { data: doubled ? fillTwice(doubled, input) : input, dims: [batch, size] },
            timestep: { data: new Array<number>(batch).fill(timestep), dims: [batch] },
            text_embeds: { data: textEmbeds, dims: [batch, size] },
            text_hidden: { data: textHidden, dims: [batch, this.manifest.contextLength, hiddenDims[0]!] },
          });
          return guided ? applyGuidance(output.data, guidance) : output.data;
        },
      });
      results.push(sample);
    }
    const embeddings = concat(results);
    // The prior works in k × (unit embedding) space; the decoder wants unit embeddings.
    scale(embeddings, 1 / this.manifest.prior.embeddingScale);
    return normalizeRows(embeddings, size);
  }

  /** Decoder images [N,3,H,W] in [-1,1] for unit embeddings [N,E]. */
  private async runDecoder(
    embeddings: Float32Array,
    textEmbedding: Float32Array,
    seeds: number[],
    size: EngineSize,
    steps: number,
    guidance: number,
    eta: number,
    tracker: ProgressTracker,
    signal: AbortSignal | undefined,
  ): Promise<Float32Array> {
    const embeddingSize = this.embeddingDim;
    const itemSize = 3 * size.width * size.height;
    const guided = guidance !== 1;
    const session = this.decoder.session;
    const results: Float32Array[] = [];
    for (const [start, end] of chunks(seeds.length, this.maxBatch)) {
      const chunkSeeds = seeds.slice(start, end);
      const count = chunkSeeds.length;
      const scheduler = makeScheduler(this.decoder.schedulerKind, this.decoder.schedulerConfig, this.decoder.schedulerFile, { steps, eta });
      const initial = batchNoise(chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.decoder)), itemSize);
      scale(initial, scheduler.initNoiseSigma);
      const conditional = embeddings.subarray(start * embeddingSize, end * embeddingSize);
      const zeros = new Float32Array(count * embeddingSize);
      const imageEmbeds = guided ? concat([zeros, conditional]) : conditional;
      const textConditional = repeat(textEmbedding, count);
      const textEmbeds = guided ? concat([zeros, textConditional]) : textConditional;
      const batch = guided ? 2 * count : count;
      // One buffer for the doubled (unconditional + conditional) sample, reused by every step.
      const doubled = guided ? new Float32Array(2 * count * itemSize) : undefined;
      const sample = await denoise({
        scheduler,
        sample: initial,
        itemSize,
        generators: chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.decoderSteps)),
        signal,
        onStep: () => tracker.step('decoder'),
        predict: async (input, timestep) => {
          const output = await session.runFor('noise_pred', {
            sample: { data: doubled ? fillTwice(doubled, input) : input, dims: [batch, 3, size.height, size.width] },
            timestep: { data: new Array<number>(batch).fill(timestep), dims: [batch] },
            image_embeds: { data: imageEmbeds, dims: [batch, embeddingSize] },
            text_embeds: { data: textEmbeds, dims: [batch, embeddingSize] },
          });
          checkOutputSize(output.data, batch * itemSize, session);
          return guided ? applyGuidance(output.data, guidance) : output.data;
        },
      });
      results.push(sample);
    }
    return clampUnit(concat(results));
  }

  /** Upsampler `index` (0-based) on images [N,3,H,W]; returns the larger images and their size. */
  private async runUpsampler(
    index: number,
    images: Float32Array,
    size: EngineSize,
    seeds: number[],
    stepsOverride: number | undefined,
    tracker: ProgressTracker,
    signal: AbortSignal | undefined,
  ): Promise<{ images: Float32Array; size: EngineSize }> {
    const entry = this.manifest.upsamplers[index]!;
    const stage = this.upsamplers[index]!;
    const target = { width: size.width * entry.factor, height: size.height * entry.factor };
    const itemSize = 3 * target.width * target.height;
    const sourceItemSize = 3 * size.width * size.height;
    const steps = stepsOverride ?? entry.steps;
    const stageName = `upsampler-${index + 1}`;
    const results: Float32Array[] = [];
    for (const [start, end] of chunks(seeds.length, this.maxBatch)) {
      const chunkSeeds = seeds.slice(start, end);
      const count = chunkSeeds.length;
      const scheduler = makeScheduler(stage.schedulerKind, stage.schedulerConfig, stage.schedulerFile, { steps });
      const lowRes = resizeBilinear(images.subarray(start * sourceItemSize, end * sourceItemSize), 3 * count, size.height, size.width, target.height, target.width);
      const initial = batchNoise(chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.upsampler + 2 * index)), itemSize);
      scale(initial, scheduler.initNoiseSigma);
      const noiseLevel = new Array<number>(count).fill(entry.noiseLevel ?? 0);
      const sample = await denoise({
        scheduler,
        sample: initial,
        itemSize,
        generators: chunkSeeds.map((seed) => generatorFor(seed, NoiseStream.upsampler + 2 * index + 1)),
        signal,
        onStep: () => tracker.step(stageName),
        predict: async (input, timestep) => {
          const output = await stage.session.runFor('noise_pred', {
            sample: { data: input, dims: [count, 3, target.height, target.width] },
            timestep: { data: new Array<number>(count).fill(timestep), dims: [count] },
            low_res: { data: lowRes, dims: [count, 3, target.height, target.width] },
            noise_level: { data: noiseLevel, dims: [count] },
          });
          checkOutputSize(output.data, count * itemSize, stage.session);
          return output.data;
        },
      });
      results.push(sample);
    }
    return { images: clampUnit(concat(results)), size: target };
  }

  /** The unit CLIP image embedding of an earlier image: its stored artifact (when preferred and present), or the image encoder's. */
  private async embeddingOf(source: EngineImage, preferArtifact: boolean): Promise<Float32Array> {
    const artifact = source.artifact;
    if (preferArtifact && artifact && artifact.kind === clipImageEmbeddingKind && artifact.values.length === this.embeddingDim) {
      return normalizeRows(Float32Array.from(artifact.values), this.embeddingDim);
    }
    const { image } = source;
    const encoderSize = this.manifest.imageEncoder.size;
    const pixels = resizeForModel(imageToTensor(image), 3, image.height, image.width, encoderSize, encoderSize);
    const output = await this.imageEncoder.runFor('image_embeds', { pixel_values: { data: pixels, dims: [1, 3, encoderSize, encoderSize] } });
    return normalizeRows(output.data.slice(0, this.embeddingDim), this.embeddingDim);
  }

  private toEngineImages(images: Float32Array, size: EngineSize, seeds: number[], embeddings: Float32Array): EngineImage[] {
    return seeds.map((seed, index): EngineImage => {
      const artifact: ImageArtifact = { kind: clipImageEmbeddingKind, dims: [this.embeddingDim], values: itemOf(embeddings, embeddings.length === this.embeddingDim ? 0 : index, this.embeddingDim) };
      const image: RgbImage = tensorToImage(images, index, size.width, size.height);
      return { image, seed, artifact };
    });
  }

  // ------------------------------------------------------------------------------------------ sizes, limits, plans

  /** The decoder size whose grid tiles are nearest to width×height. */
  private decoderSizeFor(width: number, height: number): EngineSize {
    if (!Number.isFinite(width) || !Number.isFinite(height) || width <= 0 || height <= 0) {
      throw new UserError(ErrorCode.FlagInvalid, `The image size ${width}×${height} is not valid.`, { field: 'ar' });
    }
    const multiple = this.manifest.decoder.multipleOf;
    const round = (value: number): number => Math.max(multiple, Math.round(value / this.gridFactor / multiple) * multiple);
    const size = { width: round(width), height: round(height) };
    const limit = this.manifest.decoder.size * 4;
    if (size.width > limit || size.height > limit) {
      throw new UserError(ErrorCode.FlagInvalid, `The image size ${width}×${height} is too large for this model.`, { field: 'ar' });
    }
    return size;
  }

  /** The decoder size of the standard aspect ratio nearest to a source image's. */
  private decoderSizeForAspect(width: number, height: number): EngineSize {
    const ratio = width / height;
    let best: EngineSize = { width: this.manifest.decoder.size, height: this.manifest.decoder.size };
    let bestDistance = Number.POSITIVE_INFINITY;
    for (const size of Object.values(this.capabilities.sizes)) {
      const distance = Math.abs(Math.log(size.width / size.height / ratio));
      if (distance < bestDistance) {
        bestDistance = distance;
        best = size;
      }
    }
    return this.decoderSizeFor(best.width, best.height);
  }


  /** Every stage's steps and cost per step (proportional to the pixels it computes). */
  private plan(images: number, decoderSize: EngineSize, steps: number, guidance: number, withPrior: boolean): StagePlan[] {
    const plan: StagePlan[] = [];
    const pixels = decoderSize.width * decoderSize.height;
    if (withPrior) plan.push({ stage: 'prior', steps: this.manifest.prior.steps * Math.ceil(images / this.maxBatch), weight: Math.max(1, pixels / 64) });
    const chunkCount = Math.ceil(images / this.maxBatch);
    plan.push({ stage: 'decoder', steps: steps * chunkCount, weight: pixels * Math.min(images, this.maxBatch) * (guidance !== 1 ? 2 : 1) });
    let stagePixels = pixels;
    for (let index = 0; index < this.manifest.gridStages; index += 1) {
      const entry = this.manifest.upsamplers[index]!;
      stagePixels *= entry.factor * entry.factor;
      plan.push({ stage: `upsampler-${index + 1}`, steps: entry.steps * chunkCount, weight: stagePixels * Math.min(images, this.maxBatch) });
    }
    return plan;
  }

  private assertOpen(): void {
    if (this.closed) throw new EngineError('The engine was closed.');
  }
}

function scale(values: Float32Array, factor: number): void {
  if (factor === 1) return;
  for (let index = 0; index < values.length; index += 1) values[index] = values[index]! * factor;
}

function checkSeeds(seeds: number[]): number[] {
  if (!Array.isArray(seeds) || seeds.length === 0) throw new EngineError('A request needs at least one seed.');
  for (const seed of seeds) {
    if (!Number.isFinite(seed)) throw new UserError(ErrorCode.FlagInvalid, `The seed ${seed} is not a number.`, { field: 'seed' });
  }
  return seeds;
}

function checkOutputSize(values: Float32Array, expected: number, session: ModelSession): void {
  if (values.length !== expected) {
    throw new ModelError(session.file, `${session.role} to return ${expected} values for this batch`, `it returned ${values.length}`);
  }
}

/**
 * Unit embeddings plus Gaussian noise of relative size `strength` (the noise vector has expected
 * length `strength`), renormalised. Each image's noise comes from its own seed's `stream`.
 */
export function perturb(embeddings: Float32Array, size: number, seeds: number[], strength: number, stream: number): Float32Array {
  const result = embeddings.slice();
  if (strength <= 0) return result;
  const noise = new Float32Array(size);
  seeds.forEach((seed, index) => {
    generatorFor(seed, stream).fillGaussian(noise);
    for (let item = 0; item < size; item += 1) result[index * size + item] = result[index * size + item]! + (strength / Math.sqrt(size)) * noise[item]!;
  });
  return normalizeRows(result, size);
}

/** Checks that the models fit the manifest and each other, naming the file and the expected shape. */
function checkShapes(manifest: UnclipManifest, textEncoder: ModelSession, imageEncoder: ModelSession, prior: ModelSession, decoder: ModelSession, upsamplers: ModelSession[]): void {
  const embedding = manifest.embeddingDim;
  const context = manifest.contextLength;
  const floats = ['float32', 'float16'];
  const timestep = { types: ['int64', 'int32', 'float32', 'float16'], ranks: [0, 1] };
  textEncoder.input('input_ids', { types: ['int64', 'int32'], ranks: [2], sizes: { 1: context } });
  textEncoder.output('text_embeds', { ranks: [2], sizes: { 1: embedding } });
  const hidden = textEncoder.output('last_hidden_state', { ranks: [3], sizes: { 1: context } });
  const width = hidden.dims[2];
  const size = manifest.imageEncoder.size;
  imageEncoder.input('pixel_values', { types: floats, ranks: [4], sizes: { 1: 3, 2: size, 3: size } });
  imageEncoder.output('image_embeds', { ranks: [2], sizes: { 1: embedding } });
  prior.input('sample', { types: floats, ranks: [2], sizes: { 1: embedding } });
  prior.input('timestep', timestep);
  prior.input('text_embeds', { types: floats, ranks: [2], sizes: { 1: embedding } });
  prior.input('text_hidden', { types: floats, ranks: [3], sizes: isFixed(width) ? { 1: context, 2: width } : { 1: context } });
  prior.output('predicted', { ranks: [2], sizes: { 1: embedding } });
  decoder.input('sample', { types: floats, ranks: [4], sizes: { 1: 3 } });
  decoder.input('timestep', timestep);
  decoder.input('image_embeds', { types: floats, ranks: [2], sizes: { 1: embedding } });
  if (decoder.hasInput('text_embeds')) decoder.input('text_embeds', { types: floats, ranks: [2], sizes: { 1: embedding } });
  decoder.output('noise_pred', { ranks: [4], sizes: { 1: 3 } });
  upsamplers.forEach((session) => {
    session.input('sample', { types: floats, ranks: [4], sizes: { 1: 3 } });
    session.input('timestep', timestep);
    session.input('low_res', { types: floats, ranks: [4], sizes: { 1: 3 } });
    if (session.hasInput('noise_level')) session.input('noise_level', { types: ['int64', 'int32', 'float32'], ranks: [0, 1] });
    session.output('noise_pred', { ranks: [4], sizes: { 1: 3 } });
  });
  for (const session of [prior, decoder, ...upsamplers]) {
    const batch = session.inputs.get('sample')?.dims[0];
    if (isFixed(batch)) throw new ModelError(session.file, `${session.role} with a dynamic batch dimension`, `its batch dimension is fixed at ${batch}`);
  }
}
