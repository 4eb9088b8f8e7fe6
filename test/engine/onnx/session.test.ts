import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, ImagineError, ModelError } from '../../../src/errors.js';
import { assertProvidersAvailable, defaultSessionSettings, ortSessionOptions, providerUnavailableReason, sessionSettingsFrom } from '../../../src/engine/onnx/providers.js';
import { float16BitsToFloat32, float32ToFloat16Bits, loadSession, RunClock } from '../../../src/engine/onnx/session.js';
import { fixture } from '../fixtures.js';

const settings = defaultSessionSettings;

describe('loadSession', () => {
  it('reads input names, types and dynamic dims from the model, including external weights (weights.pb)', async () => {
    const session = await loadSession(fixture('unclip/decoder/model.onnx'), 'the decoder', settings);
    expect([...session.inputs.keys()]).toEqual(['sample', 'timestep', 'image_embeds', 'text_embeds']);
    expect(session.inputs.get('timestep')).toEqual({ name: 'timestep', type: 'int64', dims: ['batch'] });
    expect(session.inputs.get('image_embeds')?.dims).toEqual(['batch', 8]);
    expect([...session.outputs.keys()]).toEqual(['noise_pred']);
    await session.close();
  });

  it('loads a model whose weights are in model.onnx_data and feeds a float32 scalar timestep from a [batch] feed', async () => {
    const clock = new RunClock();
    const session = await loadSession(fixture('sd-float-timestep/unet/model.onnx'), 'the UNet', settings, clock);
    expect(session.inputs.get('timestep')).toEqual({ name: 'timestep', type: 'float32', dims: [] });
    const batch = 2;
    const feeds = (timestep: number) => ({
      sample: { data: new Float32Array(batch * 4 * 4 * 4).fill(0.5), dims: [batch, 4, 4, 4] },
      timestep: { data: [timestep, timestep], dims: [batch] },
      encoder_hidden_states: { data: new Float32Array(batch * 77 * 8).fill(0.1), dims: [batch, 77, 8] },
    });
    const early = await session.runFor('out_sample', feeds(999));
    const late = await session.runFor('out_sample', feeds(1));
    expect(early.dims).toEqual([batch, 4, 4, 4]);
    expect(early.data).toHaveLength(batch * 64);
    expect(maxDifference(early.data, late.data)).toBeGreaterThan(1e-4);
    expect(clock.calls).toBe(2);
    expect(clock.milliseconds).toBeGreaterThan(0);
    await session.close();
  });

  it('converts number feeds to the declared int64 and int32 types', async () => {
    const prior = await loadSession(fixture('unclip/prior/model.onnx'), 'the prior', settings);
    const output = await prior.runFor('predicted', {
      sample: { data: new Float32Array(16).fill(0.2), dims: [2, 8] },
      timestep: { data: [10, 900], dims: [2] },
      text_embeds: { data: new Float32Array(16), dims: [2, 8] },
      text_hidden: { data: new Float32Array(2 * 77 * 8), dims: [2, 77, 8] },
    });
    expect(output.dims).toEqual([2, 8]);
    // Same sample, different timesteps: the rows differ.
    expect(maxDifference(output.data.subarray(0, 8), output.data.subarray(8))).toBeGreaterThan(1e-4);
    const textEncoder = await loadSession(fixture('sd/text_encoder/model.onnx'), 'the text encoder', settings);
    expect(textEncoder.inputs.get('input_ids')?.type).toBe('int32');
    const ids = new Array<number>(77).fill(49407);
    ids[0] = 49406;
    const encoded = await textEncoder.run({ input_ids: { data: ids, dims: [1, 77] } });
    expect(encoded.last_hidden_state?.dims).toEqual([1, 77, 8]);
    expect(encoded.pooler_output?.dims).toEqual([1, 8]);
    await Promise.all([prior.close(), textEncoder.close()]);
  });

  it('leaves out feeds for inputs the model does not have and names a missing one', async () => {
    const session = await loadSession(fixture('unclip-plain/decoder/model.onnx'), 'the decoder', settings);
    expect(session.hasInput('text_embeds')).toBe(false);
    const feeds = {
      sample: { data: new Float32Array(3 * 8 * 8), dims: [1, 3, 8, 8] },
      timestep: { data: [5], dims: [1] },
      image_embeds: { data: new Float32Array(8), dims: [1, 8] },
      text_embeds: { data: new Float32Array(8), dims: [1, 8] },
    };
    expect((await session.runFor('noise_pred', feeds)).dims).toEqual([1, 3, 8, 8]);
    const { image_embeds: _left, ...withoutImage } = feeds;
    await expect(session.run(withoutImage)).rejects.toThrow(/needs the input "image_embeds"/);
    await session.close();
    await expect(session.run(feeds)).rejects.toThrow(/closed/);
  });

  it('checks declared shapes against what the pipeline expects, naming the file', async () => {
    const session = await loadSession(fixture('broken/mismatched-decoder/decoder/model.onnx'), 'the unCLIP decoder', settings);
    const check = () => session.input('image_embeds', { ranks: [2], sizes: { 1: 8 } });
    expect(check).toThrow(ModelError);
    expect(check).toThrow(/mismatched-decoder\/decoder\/model\.onnx.*expected the unCLIP decoder input "image_embeds" with size 8 on axis 1/);
    expect(() => session.input('low_res')).toThrow(/with an input named "low_res"/);
    expect(() => session.input('timestep', { types: ['float32'] })).toThrow(/it is int64/);
    await session.close();
  });

  it('reports a missing file, a corrupt file and missing external weights as ModelErrors naming the file', async () => {
    const missing = fixture('nowhere/model.onnx');
    await expect(loadSession(missing, 'the prior', settings)).rejects.toMatchObject({ code: ErrorCode.Model, file: missing, message: expect.stringContaining('does not exist') });
    const corrupt = fixture('broken/corrupt-prior/prior/model.onnx');
    const error = await loadSession(corrupt, 'the prior', settings).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelError);
    expect(error).toMatchObject({ file: corrupt, message: expect.stringMatching(/corrupt or not an ONNX model/) });
    const folder = mkdtempSync(path.join(tmpdir(), 'imagine-external-'));
    try {
      const alone = path.join(folder, 'model.onnx');
      copyFileSync(fixture('unclip/decoder/model.onnx'), alone);
      await expect(loadSession(alone, 'the decoder', settings)).rejects.toMatchObject({ code: ErrorCode.Model, file: alone, message: expect.stringMatching(/external weights could not be read.*weights\.pb/) });
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe('execution providers', () => {
  it('maps the configuration to session options', () => {
    const settingsFromConfig = sessionSettingsFrom({ executionProviders: ['cuda', 'cpu'], threads: 3, graphOptimization: 'basic' });
    expect(ortSessionOptions(settingsFromConfig)).toMatchObject({ executionProviders: ['cuda', 'cpu'], intraOpNumThreads: 3, graphOptimizationLevel: 'basic' });
    expect(ortSessionOptions({ ...settingsFromConfig, threads: 0 })).not.toHaveProperty('intraOpNumThreads');
  });

  it('always has cpu', () => {
    expect(providerUnavailableReason('cpu')).toBeUndefined();
    expect(() => assertProvidersAvailable({ ...settings, executionProviders: ['cpu'] })).not.toThrow();
  });

  it('refuses a provider the installed onnxruntime-node lacks with provider_unavailable, before loading', async () => {
    const absent = process.platform === 'win32' ? 'coreml' : 'dml';
    const error = await loadSession(fixture('unclip/prior/model.onnx'), 'the prior', { ...settings, executionProviders: [absent, 'cpu'] }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ImagineError);
    expect(error).toMatchObject({ code: ErrorCode.ProviderUnavailable, message: expect.stringContaining(`"${absent}"`) });
    expect(() => assertProvidersAvailable({ ...settings, executionProviders: [] })).toThrow(expect.objectContaining({ code: ErrorCode.ProviderUnavailable }));
  });

  it('says why cuda cannot run when its libraries are not installed', async () => {
    const reason = providerUnavailableReason('cuda');
    if (reason === undefined) {
      // This machine has the CUDA provider: then loading with it must work.
      const session = await loadSession(fixture('unclip/prior/model.onnx'), 'the prior', { ...settings, executionProviders: ['cuda'] });
      await session.close();
    } else {
      expect(reason).toMatch(/cuda/);
      await expect(loadSession(fixture('unclip/prior/model.onnx'), 'the prior', { ...settings, executionProviders: ['cuda'] })).rejects.toMatchObject({ code: ErrorCode.ProviderUnavailable });
    }
  });
});

describe('float16 conversion', () => {
  it('round-trips representable values and rounds others to nearest', () => {
    for (const value of [0, 1, -2, 0.5, 65504, 6.103515625e-5, -0.333251953125]) expect(float16BitsToFloat32(float32ToFloat16Bits(value))).toBe(value);
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float16BitsToFloat32(float32ToFloat16Bits(0.1))).toBeCloseTo(0.1, 3);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1e6))).toBe(Number.POSITIVE_INFINITY);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1e-6))).toBeCloseTo(1e-6, 7);
  });
});

function maxDifference(first: ArrayLike<number>, second: ArrayLike<number>): number {
  let max = 0;
  for (let index = 0; index < first.length; index += 1) max = Math.max(max, Math.abs(first[index]! - second[index]!));
  return max;
}
