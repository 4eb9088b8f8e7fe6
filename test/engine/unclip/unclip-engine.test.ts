import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, ImagineError, ModelError, UserError } from '../../../src/errors.js';
import type { EngineImage, EngineProgress } from '../../../src/engine/engine.js';
import { clipImageEmbeddingKind, perturb, UnclipEngine } from '../../../src/engine/unclip/unclip-engine.js';
import { maxPixelDifference, meanPixelDifference } from '../engine-contract.js';
import { copyFixtures, fixture } from '../fixtures.js';
import { defaultSessionSettings } from '../../../src/engine/onnx/providers.js';
import { loadSession } from '../../../src/engine/onnx/session.js';
import { imageToTensor, normalizeRows, resizeForModel } from '../../../src/engine/onnx/tensors.js';

const dot = (first: Float32Array, second: Float32Array): number => first.reduce((sum, value, index) => sum + value * second[index]!, 0);
const norm = (values: Float32Array): number => Math.sqrt(dot(values, values));

describe('UnclipEngine', () => {
  let engine: UnclipEngine;
  let grid: EngineImage[];
  beforeAll(async () => {
    engine = await UnclipEngine.load(fixture('unclip'));
    grid = (await engine.generate({ prompt: 'a red circle', width: 64, height: 64, seeds: [1, 2, 3, 4] })).images;
  });
  afterAll(() => engine.close());

  it('offers the final grid-tile sizes (decoder sizes × the grid upsamplers) and the manifest defaults', () => {
    expect(engine.capabilities).toMatchObject({
      family: 'unclip',
      name: 'tiny-unclip (unCLIP, onnxruntime cpu)',
      maxBatch: 4,
      defaults: { steps: 4, guidance: 3 },
      upscaleFactor: 2,
      negativePrompt: true,
    });
    expect(engine.capabilities.sizes['1:1']).toEqual({ width: 64, height: 64 });
    expect(engine.capabilities.sizes['3:2']).toEqual({ width: 80, height: 48 });
  });

  it('draws non-square grids at the size of their aspect ratio', async () => {
    const result = await engine.generate({ prompt: 'a wide scene', width: 80, height: 48, seeds: [1] });
    expect(result.images[0]!.image).toMatchObject({ width: 80, height: 48 });
  });

  it('attaches the unit CLIP image embedding each image was drawn from', () => {
    for (const image of grid) {
      expect(image.artifact).toMatchObject({ kind: clipImageEmbeddingKind, dims: [8] });
      expect(norm(image.artifact!.values)).toBeCloseTo(1, 5);
    }
    expect(dot(grid[0]!.artifact!.values, grid[1]!.artifact!.values)).toBeLessThan(0.9999);
  });

  it('draws the same grid in one batch of four or in four single-image calls', async () => {
    const single = await UnclipEngine.load(fixture('unclip'), { maxBatch: 1 });
    try {
      const separate = await single.generate({ prompt: 'a red circle', width: 64, height: 64, seeds: [1, 2, 3, 4] });
      separate.images.forEach((image, index) => expect(maxPixelDifference(image.image.data, grid[index]!.image.data)).toBeLessThanOrEqual(2));
    } finally {
      await single.close();
    }
  });

  it('depends on the prompt, and on the negative prompt only through guidance', async () => {
    const other = await engine.generate({ prompt: 'a blue square', width: 64, height: 64, seeds: [1] });
    expect(meanPixelDifference(other.images[0]!.image.data, grid[0]!.image.data)).toBeGreaterThan(1);
    const negative = await engine.generate({ prompt: 'a red circle', negativePrompt: 'blurry green', width: 64, height: 64, seeds: [1] });
    expect(meanPixelDifference(negative.images[0]!.image.data, grid[0]!.image.data)).toBeGreaterThan(0.5);
  });

  it('changes with guidance', async () => {
    const low = await engine.generate({ prompt: 'a red circle', width: 64, height: 64, seeds: [1], guidance: 1 });
    const high = await engine.generate({ prompt: 'a red circle', width: 64, height: 64, seeds: [1], guidance: 8 });
    expect(meanPixelDifference(low.images[0]!.image.data, high.images[0]!.image.data)).toBeGreaterThan(1);
  });

  it('with guidance 1 in both prior and decoder runs only the conditional branch (the negative prompt has no effect)', async () => {
    const copy = copyFixtures();
    const manifestFile = path.join(copy.folder('unclip'), 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { prior: { guidance: number }; tokenizer: { merges: string } };
    manifest.prior.guidance = 1;
    manifest.tokenizer.merges = path.resolve(fixture('unclip'), manifest.tokenizer.merges);
    writeFileSync(manifestFile, JSON.stringify(manifest));
    const unguided = await UnclipEngine.load(copy.folder('unclip'));
    try {
      const calls = unguided.clock.calls;
      const plain = await unguided.generate({ prompt: 'a red circle', width: 64, height: 64, seeds: [1], guidance: 1 });
      const negative = await unguided.generate({ prompt: 'a red circle', negativePrompt: 'blurry green', width: 64, height: 64, seeds: [1], guidance: 1 });
      expect(maxPixelDifference(plain.images[0]!.image.data, negative.images[0]!.image.data)).toBe(0);
      // text encoder + 4 prior + 4 decoder + 2 upsampler steps: one call each, no separate unconditional calls.
      expect(unguided.clock.calls - calls).toBe(2 * 11);
    } finally {
      await unguided.close();
      copy.remove();
    }
  });

  it('spreads the four images further apart with chaos', async () => {
    const spread = (images: EngineImage[]): number => {
      let total = 0;
      for (let first = 0; first < images.length; first += 1) {
        for (let second = first + 1; second < images.length; second += 1) total += 1 - dot(images[first]!.artifact!.values, images[second]!.artifact!.values);
      }
      return total;
    };
    const seeds = [10, 20, 30, 40];
    const calm = await engine.generate({ prompt: 'a red circle', width: 64, height: 64, seeds, chaos: 0 });
    const wild = await engine.generate({ prompt: 'a red circle', width: 64, height: 64, seeds, chaos: 100 });
    expect(spread(wild.images)).toBeGreaterThan(spread(calm.images));
  });

  it('varies subtly or strongly around the image encoder’s embedding of the source picture', async () => {
    const source = grid[0]!;
    const encoder = await loadSession(fixture('unclip/image_encoder/model.onnx'), 'the image encoder', defaultSessionSettings);
    const pixels = resizeForModel(imageToTensor(source.image), 3, 64, 64, 16, 16);
    const encoded = normalizeRows((await encoder.runFor('image_embeds', { pixel_values: { data: pixels, dims: [1, 3, 16, 16] } })).data.slice(), 8);
    await encoder.close();
    const seeds = [7, 8, 9, 10];
    const similarity = (images: EngineImage[]): number => images.reduce((sum, image) => sum + dot(image.artifact!.values, encoded), 0) / images.length;
    const subtle = await engine.vary({ source, prompt: 'a red circle', strength: 'subtle', seeds });
    const strong = await engine.vary({ source, prompt: 'a red circle', strength: 'strong', seeds });
    expect(subtle.images[0]!.image).toMatchObject({ width: 64, height: 64 });
    expect(similarity(subtle.images)).toBeGreaterThan(similarity(strong.images));
    expect(similarity(subtle.images)).toBeGreaterThan(0.95);
    // The stored artifact (the prior's sample) does not change a variation: the pixels decide.
    const withoutArtifact = await engine.vary({ source: { image: source.image, seed: source.seed }, prompt: 'a red circle', strength: 'subtle', seeds: [7] });
    expect(maxPixelDifference(withoutArtifact.images[0]!.image.data, subtle.images[0]!.image.data)).toBe(0);
  });

  it('keeps the aspect ratio of a non-square source when varying', async () => {
    const wide = (await engine.generate({ prompt: 'wide', width: 80, height: 48, seeds: [3] })).images[0]!;
    const varied = await engine.vary({ source: wide, prompt: 'wide', strength: 'strong', seeds: [4] });
    expect(varied.images[0]!.image).toMatchObject({ width: 80, height: 48 });
  });

  it('upscales with the next upsampler (feeding its noise level), keeping the source embedding', async () => {
    const events: EngineProgress[] = [];
    const result = await engine.upscale({ source: grid[1]!, prompt: 'a red circle', seed: 3, onProgress: (event) => events.push(event) });
    const image = result.images[0]!;
    expect(image.image).toMatchObject({ width: 128, height: 128 });
    expect(Array.from(image.artifact!.values)).toEqual(Array.from(grid[1]!.artifact!.values));
    expect(events.map((event) => event.stage)).toEqual(['upsampler-2', 'upsampler-2']);
    // It follows its low-resolution source: closer to it than to another image of the grid.
    const shrink = (data: Uint8Array): Uint8Array => {
      const small = new Uint8Array(64 * 64 * 3);
      for (let y = 0; y < 64; y += 1) for (let x = 0; x < 64; x += 1) for (let c = 0; c < 3; c += 1) small[(y * 64 + x) * 3 + c] = data[(y * 2 * 128 + x * 2) * 3 + c]!;
      return small;
    };
    expect(meanPixelDifference(shrink(image.image.data), grid[1]!.image.data)).toBeLessThan(meanPixelDifference(shrink(image.image.data), grid[2]!.image.data));
    // An upscale of an upscale would outgrow the model: refused with a clear message.
    const twice = (await engine.upscale({ source: image, prompt: 'a red circle', seed: 3 })).images[0]!;
    expect(twice.image.width).toBe(256);
    await expect(engine.upscale({ source: twice, prompt: 'x', seed: 1 })).rejects.toMatchObject({ code: ErrorCode.FlagInvalid, message: expect.stringContaining('already as large') });
  });

  it('reports the stages in order: prior, decoder, upsampler-1', async () => {
    const events: EngineProgress[] = [];
    await engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1, 2, 3, 4, 5], onProgress: (event) => events.push(event) });
    const stages = [...new Set(events.map((event) => event.stage))];
    expect(stages).toEqual(['prior', 'decoder', 'upsampler-1']);
    // Five images with maxBatch 4 run in two chunks: the steps count both.
    expect(events.filter((event) => event.stage === 'decoder').at(-1)).toMatchObject({ step: 8, steps: 8 });
  });

  it('says when the prompt was cut to the context length', async () => {
    const long = await engine.generate({ prompt: Array.from({ length: 100 }, (_, index) => `word${index}`).join(' '), width: 64, height: 64, seeds: [1] });
    expect(long.promptTruncated).toBe(true);
    expect(grid.length).toBe(4);
  });

  it('refuses steps and guidance outside its limits with a UserError naming the flag', async () => {
    await expect(engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1], steps: 0 })).rejects.toMatchObject({ code: ErrorCode.FlagInvalid, field: 'steps' });
    await expect(engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1], guidance: 99 })).rejects.toBeInstanceOf(UserError);
    await expect(engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [] })).rejects.toThrow(/at least one seed/);
  });
});

describe('UnclipEngine without an upscale stage (unclip-plain)', () => {
  it('upscales by plain bilinear ×2, and handles a scaled prior space and a decoder without text_embeds', async () => {
    const engine = await UnclipEngine.load(fixture('unclip-plain'));
    try {
      expect(engine.capabilities.upscaleFactor).toBe(2);
      const [image] = (await engine.generate({ prompt: 'a circle', width: 64, height: 64, seeds: [1] })).images;
      expect(image!.artifact!.values).toHaveLength(8);
      const upscaled = (await engine.upscale({ source: image!, prompt: 'a circle', seed: 1 })).images[0]!;
      expect(upscaled.image).toMatchObject({ width: 128, height: 128 });
    } finally {
      await engine.close();
    }
  });
});

describe('perturb', () => {
  it('adds noise of the given relative size from each seed and renormalises', () => {
    const unit = new Float32Array(8);
    unit[0] = 1;
    const [a, b] = [perturb(unit, 8, [1], 0.3, 6), perturb(unit, 8, [1], 0.3, 6)];
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(norm(a)).toBeCloseTo(1, 5);
    expect(a[0]).toBeLessThan(1);
    expect(Array.from(perturb(unit, 8, [1], 0, 6))).toEqual(Array.from(unit));
  });
});

describe('UnclipEngine.load errors', () => {
  it.each([
    ['a corrupt model file', 'broken/corrupt-prior', /corrupt-prior\/prior\/model\.onnx: the file is corrupt or not an ONNX model/],
    ['a missing model file', 'broken/missing-decoder', /missing-decoder\/decoder\/model\.onnx: the file does not exist \(expected the decoder named in/],
    ['a model of the wrong shape', 'broken/mismatched-decoder', /mismatched-decoder\/decoder\/model\.onnx.*expected the unCLIP decoder input "image_embeds" with size 8 on axis 1/],
    ['an unknown layout', 'broken/unknown-layout', /neither manifest\.json nor model_index\.json/],
    ['a manifest that is not JSON', 'broken/bad-manifest', /manifest\.json: the file is not valid JSON/],
  ])('rejects %s with a ModelError naming the file', async (_name, folder, pattern) => {
    const error = await UnclipEngine.load(fixture(folder)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelError);
    expect((error as ModelError).code).toBe(ErrorCode.Model);
    expect((error as ModelError).message).toMatch(pattern);
  });

  it('rejects a Stable Diffusion folder and an unavailable provider', async () => {
    await expect(UnclipEngine.load(fixture('sd'))).rejects.toThrow(/Stable Diffusion folder/);
    const error = await UnclipEngine.load(fixture('unclip'), { settings: { executionProviders: ['coreml'], threads: 0, graphOptimization: 'all' } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ImagineError);
    expect((error as ImagineError).code).toBe(ErrorCode.ProviderUnavailable);
  });

  it('names a missing tokenizer merges file', async () => {
    const copy = copyFixtures();
    try {
      const manifestFile = path.join(copy.folder('unclip'), 'manifest.json');
      const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { tokenizer: { merges: string } };
      manifest.tokenizer.merges = 'tokenizer/missing.txt.gz';
      writeFileSync(manifestFile, JSON.stringify(manifest));
      await expect(UnclipEngine.load(copy.folder('unclip'))).rejects.toMatchObject({ code: ErrorCode.Model, message: expect.stringContaining('tokenizer/missing.txt.gz: the file does not exist') });
    } finally {
      copy.remove();
    }
  });
});
