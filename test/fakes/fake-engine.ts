/**
 * A fake {@link ImageEngine} for tests and benchmarks. It draws solid-colour images whose colour
 * comes from the seed (so a test can tell which image is which), reports progress after every
 * step, honours AbortSignal, records every call and fails on demand. Never a default in src/.
 */
import type {
  EngineCapabilities,
  EngineImage,
  EngineProgress,
  EngineResult,
  GenerateRequest,
  ImageEngine,
  RgbImage,
  UpscaleRequest,
  VariationRequest,
} from '../../src/engine/engine.js';
import { sizesForArea, throwIfAborted } from '../../src/engine/engine.js';
import { EngineError } from '../../src/errors.js';

export type FakeCallMethod = 'generate' | 'vary' | 'upscale';

/** One call the fake received, without its signal and progress callback. */
export interface FakeCall {
  method: FakeCallMethod;
  prompt: string;
  seeds: number[];
  width: number;
  height: number;
  strength?: 'subtle' | 'strong';
  sourceSeed?: number;
  steps?: number;
  guidance?: number;
  /** Whether the call ended in an abort. */
  aborted?: boolean;
}

export interface FakeEngineOptions {
  /** Steps per call; progress is reported after each. Default 4. */
  steps?: number;
  /** Wall time of one step in milliseconds; 0 only yields to the event loop. Default 0. */
  stepDelayMs?: number;
  /** Prompts containing any of these fail with an EngineError. */
  failPrompts?: string[];
  /** Zero-based call numbers that fail with an EngineError. */
  failCalls?: number[];
  /** Zero-based call numbers that fail the way a dying engine worker thread does. */
  crashCalls?: number[];
  /** When true every call waits for {@link FakeEngine.release} before its first step. */
  hold?: boolean;
  /** When true the engine ignores AbortSignal (to test that the service still times out). */
  ignoreAbort?: boolean;
  /** Side of a 1:1 image. Default 32. */
  baseSize?: number;
  /** Amplitude of deterministic noise around the seed colour (hard-to-compress images). Default 0. */
  noise?: number;
  name?: string;
}

/** The colour the fake draws for a seed. */
export function colourForSeed(seed: number): [number, number, number] {
  let value = (seed >>> 0) ^ 0x9e3779b9;
  value = Math.imul(value ^ (value >>> 16), 0x85ebca6b) >>> 0;
  value = Math.imul(value ^ (value >>> 13), 0xc2b2ae35) >>> 0;
  value = (value ^ (value >>> 16)) >>> 0;
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff];
}

/** A solid image of one colour. */
export function solidImage(width: number, height: number, colour: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let offset = 0; offset < data.length; offset += 3) {
    data[offset] = colour[0];
    data[offset + 1] = colour[1];
    data[offset + 2] = colour[2];
  }
  return { width, height, data };
}

/** The mean colour of an image (or of a rectangle of it). */
export function meanColour(image: RgbImage, area?: { left: number; top: number; width: number; height: number }): [number, number, number] {
  const box = area ?? { left: 0, top: 0, width: image.width, height: image.height };
  const sums = [0, 0, 0];
  for (let y = box.top; y < box.top + box.height; y += 1) {
    for (let x = box.left; x < box.left + box.width; x += 1) {
      const offset = (y * image.width + x) * 3;
      sums[0]! += image.data[offset]!;
      sums[1]! += image.data[offset + 1]!;
      sums[2]! += image.data[offset + 2]!;
    }
  }
  const count = box.width * box.height;
  return [sums[0]! / count, sums[1]! / count, sums[2]! / count];
}

/** Adds deterministic noise of ± `amplitude` (mean about zero) to an image in place. */
export function addNoise(image: RgbImage, amplitude: number, seed: number): RgbImage {
  if (amplitude <= 0) return image;
  let state = (seed ^ 0x2545f491) >>> 0;
  for (let index = 0; index < image.data.length; index += 1) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const offset = ((state >>> 16) % (2 * amplitude + 1)) - amplitude;
    image.data[index] = Math.max(0, Math.min(255, image.data[index]! + offset));
  }
  return image;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));

export class FakeEngine implements ImageEngine {
  readonly capabilities: EngineCapabilities;
  readonly calls: FakeCall[] = [];
  closed = false;
  private readonly options: Required<Omit<FakeEngineOptions, 'name' | 'baseSize' | 'noise'>>;
  private readonly noise: number;
  private releases = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly callWaiters: Array<{ count: number; resolve: () => void }> = [];

  constructor(options: FakeEngineOptions = {}) {
    this.options = {
      steps: options.steps ?? 4,
      stepDelayMs: options.stepDelayMs ?? 0,
      failPrompts: options.failPrompts ?? [],
      failCalls: options.failCalls ?? [],
      crashCalls: options.crashCalls ?? [],
      hold: options.hold ?? false,
      ignoreAbort: options.ignoreAbort ?? false,
    };
    this.noise = options.noise ?? 0;
    this.capabilities = {
      name: options.name ?? 'fake engine',
      family: 'fake',
      sizes: sizesForArea(options.baseSize ?? 32, 8),
      maxBatch: 4,
      defaults: { steps: this.options.steps, guidance: 4 },
      limits: { minSteps: 1, maxSteps: 100, minGuidance: 0, maxGuidance: 20 },
      upscaleFactor: 2,
      negativePrompt: true,
    };
  }

  /** Changes the step time or failure rules between calls. */
  configure(options: Partial<Pick<FakeEngineOptions, 'stepDelayMs' | 'failPrompts' | 'failCalls' | 'crashCalls' | 'hold' | 'steps'>>): void {
    Object.assign(this.options, Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)));
  }

  /** Lets `count` held calls (present or future) start. */
  release(count = 1): void {
    this.releases += count;
    while (this.releases > 0 && this.waiting.length > 0) {
      this.releases -= 1;
      this.waiting.shift()!();
    }
  }

  /** Stops holding: every held and future call runs. */
  releaseAll(): void {
    this.options.hold = false;
    for (const resume of this.waiting.splice(0)) resume();
  }

  /** Resolves when the engine has received at least `count` calls in all. */
  waitForCalls(count: number): Promise<void> {
    if (this.calls.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.callWaiters.push({ count, resolve }));
  }

  async generate(request: GenerateRequest): Promise<EngineResult> {
    const call: FakeCall = { method: 'generate', prompt: request.prompt, seeds: [...request.seeds], width: request.width, height: request.height };
    if (request.steps !== undefined) call.steps = request.steps;
    if (request.guidance !== undefined) call.guidance = request.guidance;
    return this.run(call, request, () => request.seeds.map((seed) => this.imageFor(seed, request.width, request.height)));
  }

  async vary(request: VariationRequest): Promise<EngineResult> {
    const { width, height } = request.source.image;
    const call: FakeCall = { method: 'vary', prompt: request.prompt, seeds: [...request.seeds], width, height, strength: request.strength, sourceSeed: request.source.seed };
    return this.run(call, request, () => request.seeds.map((seed) => this.imageFor(seed, width, height)));
  }

  async upscale(request: UpscaleRequest): Promise<EngineResult> {
    const factor = this.capabilities.upscaleFactor;
    const source = request.source.image;
    const width = source.width * factor;
    const height = source.height * factor;
    const call: FakeCall = { method: 'upscale', prompt: request.prompt, seeds: [request.seed], width, height, sourceSeed: request.source.seed };
    return this.run(call, request, () => {
      // Keeps the source's colour, so that a test can tell which image was upscaled.
      const colour = [source.data[0] ?? 0, source.data[1] ?? 0, source.data[2] ?? 0] as [number, number, number];
      const image: EngineImage = { image: solidImage(width, height, colour), seed: request.seed };
      if (request.source.artifact) image.artifact = request.source.artifact;
      return [image];
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.releaseAll();
  }

  private imageFor(seed: number, width: number, height: number): EngineImage {
    return {
      image: addNoise(solidImage(width, height, colourForSeed(seed)), this.noise, seed),
      seed,
      artifact: { kind: 'fake-embedding', dims: [1, 4], values: Float32Array.from([seed % 1000, 0.5, -0.25, seed / 2 ** 32]) },
    };
  }

  private async run(call: FakeCall, request: { prompt: string; signal?: AbortSignal; onProgress?: (progress: EngineProgress) => void }, draw: () => EngineImage[]): Promise<EngineResult> {
    if (this.closed) throw new EngineError('The fake engine is closed.');
    const index = this.calls.length;
    this.calls.push(call);
    for (const waiter of this.callWaiters.filter((entry) => this.calls.length >= entry.count)) {
      this.callWaiters.splice(this.callWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    const signal = this.options.ignoreAbort ? undefined : request.signal;
    try {
      if (this.options.hold) {
        if (this.releases > 0) this.releases -= 1;
        else await this.waitForRelease(signal);
      }
      throwIfAborted(signal);
      if (this.options.crashCalls.includes(index)) throw new EngineError('The engine worker stopped unexpectedly (simulated crash).');
      if (this.options.failCalls.includes(index) || this.options.failPrompts.some((word) => request.prompt.includes(word))) {
        throw new EngineError(`The fake engine was told to fail call ${index}.`);
      }
      const steps = this.options.steps;
      for (let step = 1; step <= steps; step += 1) {
        await sleep(this.options.stepDelayMs);
        throwIfAborted(signal);
        request.onProgress?.({ stage: 'fake', step, steps, fraction: step / steps });
      }
      return { images: draw(), promptTruncated: request.prompt.length > 300 };
    } catch (error) {
      if (error instanceof Error && error.name === 'AbortError') call.aborted = true;
      throw error;
    }
  }

  private waitForRelease(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const resume = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const position = this.waiting.indexOf(resume);
        if (position >= 0) this.waiting.splice(position, 1);
        const error = new Error('The operation was aborted.');
        error.name = 'AbortError';
        reject(error);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(resume);
    });
  }
}
