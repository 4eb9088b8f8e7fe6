import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, ImagineError, ModelError } from '../../../src/errors.js';
import type { EngineImage } from '../../../src/engine/engine.js';
import { annealedConditioning, guidanceScaleEmbedding, StableDiffusionEngine } from '../../../src/engine/stable-diffusion/stable-diffusion-engine.js';
import { generatorFor, NoiseStream } from '../../../src/engine/onnx/diffusion.js';
import { describeEngineContract, maxPixelDifference, meanPixelDifference } from '../engine-contract.js';
import { copyFixtures, fixture } from '../fixtures.js';

describeEngineContract('StableDiffusionEngine (optimum layout: int64 [batch] timestep, latent_sample)', () => StableDiffusionEngine.load(fixture('sd')));
describeEngineContract('StableDiffusionEngine (float32 scalar timestep, latent_parameters, external weights, Euler ancestral)', () => StableDiffusionEngine.load(fixture('sd-float-timestep')));

const request = { prompt: 'a red circle', width: 32, height: 32 };

describe('StableDiffusionEngine', () => {
  let engine: StableDiffusionEngine;
  let grid: EngineImage[];
  beforeAll(async () => {
    engine = await StableDiffusionEngine.load(fixture('sd'));
    grid = (await engine.generate({ ...request, seeds: [1, 2, 3, 4], steps: 8 })).images;
  });
  afterAll(() => engine.close());

  it('describes a classic SD model: 25 steps, guidance 7.5, sizes from unet/config.json sample_size × 8', () => {
    expect(engine.capabilities).toMatchObject({ family: 'stable-diffusion', defaults: { steps: 25, guidance: 7.5 }, upscaleFactor: 2, negativePrompt: true });
    expect(engine.capabilities.name).toBe('sd (Stable Diffusion, onnxruntime cpu)');
    expect(engine.capabilities.sizes['1:1']).toEqual({ width: 32, height: 32 });
  });

  it('pads prompts with the pad token of the tokenizer config (<|endoftext|> for SD 1.x, "!" for SD 2.x)', async () => {
    expect((engine as unknown as { padId: number }).padId).toBe((engine as unknown as { tokenizer: { endId: number } }).tokenizer.endId);
    const second = await StableDiffusionEngine.load(fixture('sd-float-timestep'));
    try {
      const vocabulary = JSON.parse(readFileSync(path.join(fixture('sd-float-timestep'), 'tokenizer', 'vocab.json'), 'utf8')) as Record<string, number>;
      expect((second as unknown as { padId: number }).padId).toBe(vocabulary['!']);
    } finally {
      await second.close();
    }
  });

  it('draws the same grid in one batch or one image at a time', async () => {
    const single = await StableDiffusionEngine.load(fixture('sd'), { maxBatch: 1 });
    try {
      const separate = await single.generate({ ...request, seeds: [1, 2, 3, 4], steps: 8 });
      separate.images.forEach((image, index) => expect(maxPixelDifference(image.image.data, grid[index]!.image.data)).toBeLessThanOrEqual(2));
    } finally {
      await single.close();
    }
  });

  it('guides with the negative prompt in one batched call, and skips the unconditional batch at guidance ≤ 1', async () => {
    const guided = await engine.generate({ ...request, seeds: [1], steps: 8, negativePrompt: 'green' });
    expect(meanPixelDifference(guided.images[0]!.image.data, grid[0]!.image.data)).toBeGreaterThan(0.5);
    const calls = engine.clock.calls;
    const plain = await engine.generate({ ...request, seeds: [1], steps: 8, guidance: 1 });
    // 1 text encoder + 8 UNet + 1 VAE decoder call: no separate unconditional calls.
    expect(engine.clock.calls - calls).toBe(10);
    const ignored = await engine.generate({ ...request, seeds: [1], steps: 8, guidance: 1, negativePrompt: 'green' });
    expect(maxPixelDifference(plain.images[0]!.image.data, ignored.images[0]!.image.data)).toBe(0);
    expect(meanPixelDifference(plain.images[0]!.image.data, grid[0]!.image.data)).toBeGreaterThan(0.5);
  });

  it('chaos changes each image through its own conditioning noise, repeatably; chaos 0 changes nothing', async () => {
    const calm = await engine.generate({ ...request, seeds: [1, 2, 3, 4], steps: 8, chaos: 0 });
    calm.images.forEach((image, index) => expect(maxPixelDifference(image.image.data, grid[index]!.image.data)).toBe(0));
    const wild = await engine.generate({ ...request, seeds: [1, 2, 3, 4], steps: 8, chaos: 100 });
    const again = await engine.generate({ ...request, seeds: [1, 2, 3, 4], steps: 8, chaos: 100 });
    wild.images.forEach((image, index) => {
      expect(meanPixelDifference(image.image.data, grid[index]!.image.data)).toBeGreaterThan(0.5);
      expect(maxPixelDifference(image.image.data, again.images[index]!.image.data)).toBe(0);
    });
  });

  it('anneals the conditioning noise: none late in sampling, full early, rescaled to the conditioning\'s mean and spread', () => {
    const conditional = Float32Array.from({ length: 64 }, (_, index) => Math.sin(index) * 2 + 0.5);
    const unconditional = new Float32Array(64).fill(0.25);
    const hidden = Float32Array.from([...unconditional, ...unconditional, ...conditional, ...conditional]);
    const generators = () => [generatorFor(1, NoiseStream.chaos), generatorFor(2, NoiseStream.chaos)];
    const noisy = annealedConditioning(conditional, 1);
    expect(noisy(hidden, 128, generators(), 0.5)).toBe(hidden);
    const early = noisy(hidden, 128, generators(), 0.95);
    expect(Array.from(early.subarray(0, 128))).toEqual(Array.from(hidden.subarray(0, 128)));
    const stats = (values: Float32Array) => {
      const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
      return { mean, deviation: Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / values.length) };
    };
    const distance = (block: Float32Array) => block.reduce((sum, value, index) => sum + Math.abs(value - conditional[index]!), 0);
    const target = stats(conditional);
    const first = early.subarray(128, 192);
    const second = early.subarray(192, 256);
    for (const block of [first, second]) {
      expect(stats(block).mean).toBeCloseTo(target.mean, 4);
      expect(stats(block).deviation).toBeCloseTo(target.deviation, 4);
      expect(distance(block)).toBeGreaterThan(1);
    }
    expect(Array.from(first)).not.toEqual(Array.from(second));
    const halfway = noisy(hidden, 128, generators(), 0.75);
    expect(distance(halfway.subarray(128, 192))).toBeLessThan(distance(first));
    expect(Array.from(noisy(hidden, 128, generators(), 0.95))).toEqual(Array.from(early));
  });

  it('varies by img2img: strong variations drift further between seeds than subtle ones', async () => {
    const source = grid[0]!;
    const subtle = await engine.vary({ source, prompt: 'a red circle', strength: 'subtle', seeds: [5, 6], steps: 10 });
    const strong = await engine.vary({ source, prompt: 'a red circle', strength: 'strong', seeds: [5, 6], steps: 10 });
    expect(meanPixelDifference(subtle.images[0]!.image.data, subtle.images[1]!.image.data)).toBeLessThan(meanPixelDifference(strong.images[0]!.image.data, strong.images[1]!.image.data));
    const other = await engine.vary({ source: grid[1]!, prompt: 'a red circle', strength: 'subtle', seeds: [5], steps: 10 });
    expect(meanPixelDifference(other.images[0]!.image.data, subtle.images[0]!.image.data)).toBeGreaterThan(0.5);
  });

  it('upscales ×2 with an img2img pass over the enlarged image', async () => {
    const upscaled = await engine.upscale({ source: grid[0]!, prompt: 'a red circle', seed: 1, steps: 10 });
    expect(upscaled.images[0]!.image).toMatchObject({ width: 64, height: 64 });
    const fromOther = await engine.upscale({ source: grid[1]!, prompt: 'a red circle', seed: 1, steps: 10 });
    expect(meanPixelDifference(upscaled.images[0]!.image.data, fromOther.images[0]!.image.data)).toBeGreaterThan(0.5);
    // Upscaling the upscale would go past twice the model's size: refused with a clear message.
    await expect(engine.upscale({ source: upscaled.images[0]!, prompt: 'x', seed: 1 })).rejects.toMatchObject({ code: ErrorCode.FlagInvalid, message: expect.stringContaining('already as large') });
  });

  it('draws non-square sizes as multiples of 8 pixels', async () => {
    const wide = await engine.generate({ prompt: 'wide', width: 40, height: 24, seeds: [1], steps: 2 });
    expect(wide.images[0]!.image).toMatchObject({ width: 40, height: 24 });
  });
});

describe('StableDiffusionEngine schedulers and flavours', () => {
  let copy: ReturnType<typeof copyFixtures>;
  beforeAll(() => {
    copy = copyFixtures();
  });
  afterAll(() => copy.remove());

  const withScheduler = (className: string): string => {
    const file = path.join(copy.folder('sd'), 'scheduler', 'scheduler_config.json');
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...config, _class_name: className }));
    return copy.folder('sd');
  };

  it('runs every scheduler kind named by scheduler_config.json deterministically, each its own way', async () => {
    const outputs: Uint8Array[] = [];
    for (const className of ['DDIMScheduler', 'EulerAncestralDiscreteScheduler', 'DPMSolverMultistepScheduler', 'PNDMScheduler']) {
      const engine = await StableDiffusionEngine.load(withScheduler(className));
      try {
        const first = await engine.generate({ ...request, seeds: [3], steps: 6 });
        const second = await engine.generate({ ...request, seeds: [3], steps: 6 });
        expect(maxPixelDifference(first.images[0]!.image.data, second.images[0]!.image.data)).toBe(0);
        outputs.push(first.images[0]!.image.data);
      } finally {
        await engine.close();
      }
    }
    // PNDM falls back to DDIM with the same config: the same image as DDIM.
    expect(maxPixelDifference(outputs[3]!, outputs[0]!)).toBe(0);
    expect(meanPixelDifference(outputs[0]!, outputs[1]!)).toBeGreaterThan(0.5);
  });

  it('gives LCM models 4 steps and guidance 1 by default', async () => {
    const engine = await StableDiffusionEngine.load(withScheduler('LCMScheduler'));
    try {
      expect(engine.capabilities.defaults).toEqual({ steps: 4, guidance: 1 });
      expect(engine.capabilities.name).toMatch(/Stable Diffusion LCM/);
      expect((await engine.generate({ ...request, seeds: [1] })).images).toHaveLength(1);
    } finally {
      await engine.close();
    }
  });

  it('gives an SD-Turbo folder one step without guidance', async () => {
    withScheduler('EulerAncestralDiscreteScheduler');
    const turbo = path.join(copy.root, 'models', 'sd-turbo');
    renameSync(copy.folder('sd'), turbo);
    const engine = await StableDiffusionEngine.load(turbo);
    try {
      expect(engine.capabilities.defaults).toEqual({ steps: 1, guidance: 0 });
      const calls = engine.clock.calls;
      await engine.generate({ ...request, seeds: [1, 2] });
      expect(engine.clock.calls - calls).toBe(1 + 1 + 2);
    } finally {
      await engine.close();
      renameSync(turbo, copy.folder('sd'));
    }
  });

  it('computes the LCM guidance embedding as diffusers does', () => {
    const embedding = guidanceScaleEmbedding(1, 8);
    // w = 0: sin(0) = 0 for the first half, cos(0) = 1 for the second.
    expect(Array.from(embedding)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(guidanceScaleEmbedding(8.5, 256)).toHaveLength(256);
  });
});

describe('StableDiffusionEngine errors', () => {
  it('names a missing UNet, a missing tokenizer and a corrupt scheduler config', async () => {
    const copy = copyFixtures();
    try {
      const folder = copy.folder('sd');
      rmSync(path.join(folder, 'unet', 'model.onnx'));
      await expect(StableDiffusionEngine.load(folder)).rejects.toMatchObject({ code: ErrorCode.Model, file: path.join(folder, 'unet', 'model.onnx') });
      const second = copy.folder('sd-float-timestep');
      writeFileSync(path.join(second, 'scheduler', 'scheduler_config.json'), '{ not json');
      const error = await StableDiffusionEngine.load(second).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(ModelError);
      expect((error as ModelError).file).toBe(path.join(second, 'scheduler', 'scheduler_config.json'));
      rmSync(path.join(second, 'tokenizer', 'vocab.json'));
      await expect(StableDiffusionEngine.load(second)).rejects.toMatchObject({ code: ErrorCode.Model, message: expect.stringContaining('vocab.json') });
    } finally {
      copy.remove();
    }
  });

  it('draws without a VAE encoder but refuses variations and upscales with code unsupported', async () => {
    const copy = copyFixtures();
    try {
      const folder = copy.folder('sd');
      rmSync(path.join(folder, 'vae_encoder'), { recursive: true });
      const engine = await StableDiffusionEngine.load(folder);
      try {
        const [image] = (await engine.generate({ ...request, seeds: [1], steps: 2 })).images;
        const error = await engine.vary({ source: image!, prompt: 'x', strength: 'subtle', seeds: [1] }).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(ImagineError);
        expect(error).toMatchObject({ code: ErrorCode.Unsupported, message: expect.stringContaining('no VAE encoder') });
      } finally {
        await engine.close();
      }
    } finally {
      copy.remove();
    }
  });

  it('rejects an unCLIP folder', async () => {
    await expect(StableDiffusionEngine.load(fixture('unclip'))).rejects.toThrow(/imagine-unclip folder/);
  });
});
