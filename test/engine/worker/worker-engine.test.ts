import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ErrorCode, ImagineError, ModelError, UserError } from '../../../src/errors.js';
import type { EngineProgress } from '../../../src/engine/engine.js';
import { createEngine, describeModel } from '../../../src/engine/factory.js';
import { UnclipEngine } from '../../../src/engine/unclip/unclip-engine.js';
import { WorkerEngine } from '../../../src/engine/worker/worker-engine.js';
import { describeEngineContract, maxPixelDifference } from '../engine-contract.js';
import { fixture, modelsFolder } from '../fixtures.js';

const config = { model: fixture('unclip'), executionProviders: ['cpu'], threads: 1, graphOptimization: 'all' as const };
const settings = { executionProviders: ['cpu' as const], threads: 1, graphOptimization: 'all' as const };

describeEngineContract('WorkerEngine (tiny unCLIP in a worker thread)', () => createEngine(config));

describe('WorkerEngine', () => {
  let engine: WorkerEngine;
  beforeAll(async () => {
    engine = (await createEngine(config)) as WorkerEngine;
  });
  afterAll(() => engine.close());

  it('is what createEngine returns by default, with the in-process engine’s capabilities', async () => {
    expect(engine).toBeInstanceOf(WorkerEngine);
    const local = await createEngine(config, { inWorker: false });
    try {
      expect(local).toBeInstanceOf(UnclipEngine);
      expect(engine.capabilities).toEqual(local.capabilities);
      // The same seeds give the same pixels and embeddings on either thread.
      const request = { prompt: 'a blue triangle', width: 64, height: 64, seeds: [4, 5] };
      const [remote, here] = [await engine.generate(request), await local.generate(request)];
      remote.images.forEach((image, index) => {
        expect(maxPixelDifference(image.image.data, here.images[index]!.image.data)).toBeLessThanOrEqual(1);
        expect(Array.from(image.artifact!.values)).toEqual(Array.from(here.images[index]!.artifact!.values));
      });
    } finally {
      await local.close();
    }
  });

  it('copies requests (the caller keeps its source buffers) and forwards progress', async () => {
    const [source] = (await engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1] })).images;
    const events: EngineProgress[] = [];
    await engine.vary({ source: source!, prompt: 'x', strength: 'strong', seeds: [2], onProgress: (event) => events.push(event) });
    expect(source!.image.data.length).toBe(64 * 64 * 3);
    expect(source!.artifact!.values.length).toBe(8);
    expect(events.map((event) => event.stage)).toEqual(['decoder', 'decoder', 'decoder', 'decoder', 'upsampler-1', 'upsampler-1']);
  });

  it('rejects with the worker’s error class, code and fields', async () => {
    const error = await engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1], steps: 1000 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UserError);
    expect(error).toMatchObject({ code: ErrorCode.FlagInvalid, field: 'steps', message: expect.stringMatching(/^Steps must be a whole number/) });
  });

  it('cancels the worker’s run when the signal aborts, and keeps working', async () => {
    const before = await engine.stats();
    const controller = new AbortController();
    const pending = engine.generate({
      prompt: 'x', width: 64, height: 64, seeds: [1, 2, 3, 4], steps: 100, signal: controller.signal,
      onProgress: (event) => {
        if (event.stage === 'decoder') controller.abort();
      },
    });
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    while (engine.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const after = await engine.stats();
    // A full run is 1 text + 4 prior + 100 decoder + 2 upsampler calls; the cancel stopped it long before.
    expect(after.runCalls - before.runCalls).toBeLessThan(107);
    expect(after.rss).toBeGreaterThan(0);
    expect((await engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1] })).images).toHaveLength(1);
  });

  it('rejects the calls of a worker that dies with an EngineError and restarts it for the next call', async () => {
    type Internal = { worker?: import('node:worker_threads').Worker };
    const crashed = (engine as unknown as Internal).worker!;
    // Terminating a thread inside onnxruntime's session.run can abort the process (a native
    // Napi::Error), so the crash is simulated the way Node reports one (an 'error' event) and the
    // old thread is stopped only once it is idle again.
    const idle = new Promise<void>((resolve) => crashed.on('message', (message: { type: string }) => (message.type === 'result' || message.type === 'error') && resolve()));
    let simulated = false;
    const pending = engine.generate({
      prompt: 'x', width: 64, height: 64, seeds: [1], steps: 20,
      onProgress: () => {
        if (simulated) return;
        simulated = true;
        crashed.emit('error', new Error('simulated native crash'));
      },
    });
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Engine, message: expect.stringContaining('stopped unexpectedly (simulated native crash)') });
    expect(engine.inFlight).toBe(0);
    expect((await engine.generate({ prompt: 'x', width: 64, height: 64, seeds: [1] })).images).toHaveLength(1);
    expect((engine as unknown as Internal).worker).not.toBe(crashed);
    await idle;
    await crashed.terminate();
  });
});

describe('createEngine with a Stable Diffusion folder', () => {
  it('runs it in the worker too', async () => {
    const engine = await createEngine({ ...config, model: fixture('sd-float-timestep') });
    try {
      expect(engine.capabilities.family).toBe('stable-diffusion');
      const result = await engine.generate({ prompt: 'x', width: 32, height: 32, seeds: [1, 2], steps: 3 });
      expect(result.images.map((image) => image.image.data.length)).toEqual([32 * 32 * 3, 32 * 32 * 3]);
    } finally {
      await engine.close();
    }
  });
});

describe('createEngine errors', () => {
  it('rejects a broken model with the ModelError raised in the worker (class, file and expectation intact)', async () => {
    const error = await createEngine({ ...config, model: fixture('broken/mismatched-decoder') }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelError);
    expect(error).toMatchObject({
      code: ErrorCode.Model,
      file: path.join(fixture('broken/mismatched-decoder'), 'decoder', 'model.onnx'),
      expected: 'the unCLIP decoder input "image_embeds" with size 8 on axis 1',
    });
    expect((error as ModelError).message).toBe(`${(error as ModelError).file}: it has the shape [batch, 16] (expected ${(error as ModelError).expected})`);
  });

  it('refuses an unavailable provider, on the calling thread and in the worker', async () => {
    await expect(createEngine({ ...config, executionProviders: ['coreml'] })).rejects.toMatchObject({ code: ErrorCode.ProviderUnavailable });
    const error = await WorkerEngine.start({ model: fixture('unclip'), settings: { ...settings, executionProviders: ['coreml'] } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ImagineError);
    expect(error).toMatchObject({ code: ErrorCode.ProviderUnavailable });
  });

  it('refuses a folder that is not a model before starting a worker', async () => {
    await expect(createEngine({ ...config, model: fixture('broken/unknown-layout') })).rejects.toMatchObject({ code: ErrorCode.Model });
  });
});

describe('describeModel', () => {
  it('lists an unCLIP folder’s files and what is missing, without loading models', async () => {
    const good = await describeModel(fixture('unclip'));
    expect(good).toMatchObject({ family: 'unclip', name: 'tiny-unclip', problems: [] });
    expect(good.files.every((file) => file.exists)).toBe(true);
    const missing = await describeModel(fixture('broken/missing-decoder'));
    expect(missing.problems).toEqual([`decoder is missing: ${path.join(fixture('broken/missing-decoder'), 'decoder', 'model.onnx')}`]);
    const sd = await describeModel(fixture('sd'));
    expect(sd).toMatchObject({ family: 'stable-diffusion', name: 'sd', problems: [] });
  });
});

describe('the worker outside Jest', () => {
  it('starts under `node --import tsx`', () => {
    const script = path.join(path.dirname(modelsFolder), '..', 'engine', 'worker', 'generate-in-worker.ts');
    const run = spawnSync(process.execPath, ['--import', 'tsx', script, fixture('unclip')], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } });
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.status).toBe(0);
    const output = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { engine: string; images: number[][]; stages: string[] };
    expect(output).toEqual({ engine: 'WorkerEngine', images: [[64, 64, 12288], [64, 64, 12288]], stages: ['prior', 'decoder', 'upsampler-1'] });
  });
});
