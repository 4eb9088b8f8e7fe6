import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, ModelError } from '../../../src/errors.js';
import { detectModelFolder } from '../../../src/engine/onnx/model-folder.js';
import { manifestFiles, validateManifest } from '../../../src/engine/unclip/manifest.js';
import { copyFixtures, fixture } from '../fixtures.js';

describe('detectModelFolder', () => {
  it('recognises an imagine-unclip manifest.json and a diffusers model_index.json', async () => {
    await expect(detectModelFolder(fixture('unclip'))).resolves.toMatchObject({ family: 'unclip', indexFile: path.join(fixture('unclip'), 'manifest.json') });
    await expect(detectModelFolder(fixture('sd'))).resolves.toMatchObject({ family: 'stable-diffusion', indexFile: path.join(fixture('sd'), 'model_index.json') });
  });

  it('names the folder of an unknown layout, a missing folder and a file given as a folder', async () => {
    await expect(detectModelFolder(fixture('broken/unknown-layout'))).rejects.toMatchObject({ code: ErrorCode.Model, file: fixture('broken/unknown-layout'), message: expect.stringContaining('neither manifest.json nor model_index.json') });
    await expect(detectModelFolder(fixture('no-such-model'))).rejects.toThrow(/does not exist/);
    await expect(detectModelFolder(fixture('unclip/manifest.json'))).rejects.toThrow(/not a folder/);
  });

  it('names manifest.json when it is not JSON or has another format', async () => {
    const error = await detectModelFolder(fixture('broken/bad-manifest')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelError);
    expect((error as ModelError).file).toBe(path.join(fixture('broken/bad-manifest'), 'manifest.json'));
    expect((error as ModelError).message).toMatch(/not valid JSON/);
    const copy = copyFixtures();
    try {
      const manifestFile = path.join(copy.folder('unclip'), 'manifest.json');
      writeFileSync(manifestFile, JSON.stringify({ ...JSON.parse(readFileSync(manifestFile, 'utf8')), format: 'other' }));
      await expect(detectModelFolder(copy.folder('unclip'))).rejects.toThrow(/"format": "imagine-unclip".*|format is "other"/);
      mkdirSync(copy.folder('pipeline'));
      writeFileSync(path.join(copy.folder('pipeline'), 'model_index.json'), JSON.stringify({ _class_name: 'KandinskyPipeline', unet: ['diffusers', 'x'] }));
      await expect(detectModelFolder(copy.folder('pipeline'))).rejects.toThrow(/KandinskyPipeline/);
    } finally {
      copy.remove();
    }
  });
});

describe('validateManifest', () => {
  const manifestFile = path.join(fixture('unclip'), 'manifest.json');
  const good = (): Record<string, unknown> => JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, unknown>;

  it('accepts the fixture manifest and resolves its files against the folder', () => {
    const manifest = validateManifest(good(), manifestFile);
    expect(manifest).toMatchObject({ name: 'tiny-unclip', embeddingDim: 8, gridStages: 1, decoder: { size: 32, multipleOf: 8 } });
    expect(manifest.upsamplers).toHaveLength(2);
    expect(manifest.upsamplers[1]?.noiseLevel).toBe(20);
    const files = manifestFiles(manifest, fixture('unclip'));
    expect(files.find((entry) => entry.role === 'decoder')?.file).toBe(path.join(fixture('unclip'), 'decoder', 'model.onnx'));
    expect(files).toHaveLength(11);
  });

  it.each([
    ['a missing field', (value: Record<string, unknown>) => delete value.embeddingDim, /"embeddingDim" is missing/],
    ['a wrong type', (value: Record<string, unknown>) => ((value.decoder as Record<string, unknown>).steps = 'many'), /"decoder\.steps" to be an integer/],
    ['a bad version', (value: Record<string, unknown>) => (value.formatVersion = 2), /"formatVersion" to be 1/],
    ['too many grid stages', (value: Record<string, unknown>) => (value.gridStages = 3), /"gridStages" to be an integer 0\.\.2/],
    ['a size off the multiple', (value: Record<string, unknown>) => ((value.decoder as Record<string, unknown>).size = 30), /"decoder\.size" to be a multiple/],
    ['a bad variation', (value: Record<string, unknown>) => (((value.variation as Record<string, Record<string, unknown>>).strong!).eta = 2), /variation\.strong\.eta/],
  ])('rejects %s, naming the field and the file', (_name, change, pattern) => {
    const value = good();
    change(value);
    const error = (() => {
      try {
        validateManifest(value, manifestFile);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ModelError);
    expect((error as ModelError).file).toBe(manifestFile);
    expect((error as ModelError).message).toMatch(pattern);
  });
});
