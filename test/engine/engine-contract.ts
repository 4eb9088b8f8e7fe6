/**
 * The contract every ImageEngine passes (the ONNX unCLIP and Stable Diffusion engines, the
 * worker-thread proxy and the fake): sizes, determinism per seed, progress, abort, recovery, close.
 * Call {@link describeEngineContract} from a test file.
 */
import { type EngineProgress, type EngineResult, type ImageEngine, standardAspectRatios } from '../../src/engine/engine.js';

/** Largest per-channel difference between two images of the same size. */
export function maxPixelDifference(first: Uint8Array, second: Uint8Array): number {
  expect(first.length).toBe(second.length);
  let max = 0;
  for (let index = 0; index < first.length; index += 1) max = Math.max(max, Math.abs(first[index]! - second[index]!));
  return max;
}

/** Mean per-channel difference (0..255). */
export function meanPixelDifference(first: Uint8Array, second: Uint8Array): number {
  expect(first.length).toBe(second.length);
  let sum = 0;
  for (let index = 0; index < first.length; index += 1) sum += Math.abs(first[index]! - second[index]!);
  return sum / first.length;
}

export interface ContractOptions {
  /** Tolerance (0..255) for "the same image" across runs and batch compositions. */
  tolerance?: number;
  /** Whether images of different seeds must differ (false for engines that ignore seeds). */
  seedsMatter?: boolean;
}

export function describeEngineContract(name: string, create: () => Promise<ImageEngine>, options: ContractOptions = {}): void {
  const tolerance = options.tolerance ?? 2;
  describe(`${name} — ImageEngine contract`, () => {
    let engine: ImageEngine;
    beforeAll(async () => {
      engine = await create();
    });
    afterAll(async () => {
      await engine?.close();
    });

    const square = (): { width: number; height: number } => engine.capabilities.sizes['1:1']!;

    it('describes itself with a size for every standard aspect ratio and sane defaults', () => {
      const { capabilities } = engine;
      for (const ratio of standardAspectRatios) {
        const size = capabilities.sizes[ratio];
        expect(size).toBeDefined();
        expect(size!.width).toBeGreaterThan(0);
        expect(size!.height).toBeGreaterThan(0);
        const [w, h] = ratio.split(':').map(Number) as [number, number];
        if (w !== h) expect(Math.sign(size!.width - size!.height)).toBe(Math.sign(w - h) || 0);
      }
      expect(capabilities.maxBatch).toBeGreaterThanOrEqual(1);
      expect(capabilities.defaults.steps).toBeGreaterThanOrEqual(capabilities.limits.minSteps);
      expect(capabilities.defaults.steps).toBeLessThanOrEqual(capabilities.limits.maxSteps);
      expect(capabilities.defaults.guidance).toBeGreaterThanOrEqual(capabilities.limits.minGuidance);
      expect(capabilities.defaults.guidance).toBeLessThanOrEqual(capabilities.limits.maxGuidance);
      expect(capabilities.upscaleFactor).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(JSON.stringify(capabilities))).toEqual(capabilities);
    });

    it('makes one image per seed at the requested size, the same for the same seed on every run', async () => {
      const { width, height } = square();
      const request = { prompt: 'a red circle on a blue background', width, height, seeds: [11, 22, 33, 44] };
      const first = await engine.generate(request);
      expect(first.images.map((image) => image.seed)).toEqual([11, 22, 33, 44]);
      for (const { image } of first.images) {
        expect(image.width).toBe(width);
        expect(image.height).toBe(height);
        expect(image.data).toHaveLength(width * height * 3);
      }
      const second = await engine.generate(request);
      first.images.forEach((image, index) => expect(maxPixelDifference(image.image.data, second.images[index]!.image.data)).toBeLessThanOrEqual(tolerance));
      if (options.seedsMatter ?? true) expect(meanPixelDifference(first.images[0]!.image.data, first.images[1]!.image.data)).toBeGreaterThan(1);
    });

    it('makes the same image for a seed whatever the other images of the request', async () => {
      const { width, height } = square();
      const together = await engine.generate({ prompt: 'a green star', width, height, seeds: [5, 6, 7] });
      const alone = await engine.generate({ prompt: 'a green star', width, height, seeds: [7] });
      expect(maxPixelDifference(together.images[2]!.image.data, alone.images[0]!.image.data)).toBeLessThanOrEqual(tolerance);
    });

    it('reports progress after every step with a monotonic fraction that ends at 1', async () => {
      const { width, height } = square();
      const events: EngineProgress[] = [];
      await engine.generate({ prompt: 'a square', width, height, seeds: [1, 2], onProgress: (event) => events.push(event) });
      expect(events.length).toBeGreaterThan(1);
      for (const [index, event] of events.entries()) {
        expect(event.step).toBeGreaterThanOrEqual(1);
        expect(event.step).toBeLessThanOrEqual(event.steps);
        expect(event.fraction).toBeGreaterThan(0);
        expect(event.fraction).toBeLessThanOrEqual(1);
        if (index > 0) expect(event.fraction).toBeGreaterThanOrEqual(events[index - 1]!.fraction);
      }
      expect(events.at(-1)!.fraction).toBeCloseTo(1, 6);
    });

    it('rejects with an AbortError when aborted before or during a request, and works again afterwards', async () => {
      const { width, height } = square();
      const before = new AbortController();
      before.abort();
      await expect(engine.generate({ prompt: 'x', width, height, seeds: [1], signal: before.signal })).rejects.toMatchObject({ name: 'AbortError' });
      const during = new AbortController();
      let eventsAfterAbort = 0;
      const aborted = engine.generate({
        prompt: 'x', width, height, seeds: [1, 2, 3, 4], signal: during.signal,
        onProgress: () => {
          if (during.signal.aborted) eventsAfterAbort += 1;
          during.abort();
        },
      });
      await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
      expect(eventsAfterAbort).toBe(0);
      const result: EngineResult = await engine.generate({ prompt: 'x', width, height, seeds: [3] });
      expect(result.images).toHaveLength(1);
    });

    it('varies an image into one image per seed and upscales one by upscaleFactor', async () => {
      const { width, height } = square();
      const [source] = (await engine.generate({ prompt: 'a yellow heart', width, height, seeds: [9] })).images;
      const varied = await engine.vary({ source: source!, prompt: 'a yellow heart', strength: 'subtle', seeds: [100, 101] });
      expect(varied.images.map((image) => image.seed)).toEqual([100, 101]);
      for (const { image } of varied.images) expect(image.data).toHaveLength(image.width * image.height * 3);
      const again = await engine.vary({ source: source!, prompt: 'a yellow heart', strength: 'subtle', seeds: [101] });
      expect(maxPixelDifference(again.images[0]!.image.data, varied.images[1]!.image.data)).toBeLessThanOrEqual(tolerance);
      const upscaled = await engine.upscale({ source: source!, prompt: 'a yellow heart', seed: 5 });
      expect(upscaled.images).toHaveLength(1);
      expect(upscaled.images[0]!.image.width).toBe(Math.round(width * engine.capabilities.upscaleFactor));
      expect(upscaled.images[0]!.image.height).toBe(Math.round(height * engine.capabilities.upscaleFactor));
    });
  });

  describe(`${name} — close`, () => {
    it('rejects calls after close, and close twice is fine', async () => {
      const engine = await create();
      const { width, height } = engine.capabilities.sizes['1:1']!;
      await engine.close();
      await engine.close();
      await expect(engine.generate({ prompt: 'x', width, height, seeds: [1] })).rejects.toThrow();
    });
  });
}
