/**
 * The imagine-unclip manifest.json: the contract between the trainer's export and this engine.
 * Validated field by field so that a bad export fails at load time with the field at fault.
 */
import path from 'node:path';
import { ModelError } from '../../errors.js';

/** A diffusion stage of the manifest. */
export interface UnclipStage {
  path: string;
  scheduler: string;
  steps: number;
}

/** One upsampler stage. */
export interface UnclipUpsampler extends UnclipStage {
  /** How many times larger its output is than its input. */
  factor: number;
  /** Fed to an optional `noise_level` input. */
  noiseLevel?: number;
}

/** How variations drift from their source. */
export interface UnclipVariation {
  /** Gaussian noise added to the unit embedding, relative to its length. */
  embeddingNoise: number;
  /** DDIM η of the decoder when redrawing. */
  eta: number;
}

/** manifest.json, format "imagine-unclip", formatVersion 1. */
export interface UnclipManifest {
  format: 'imagine-unclip';
  formatVersion: number;
  name: string;
  description?: string;
  embeddingDim: number;
  contextLength: number;
  tokenizer: { merges: string };
  textEncoder: { path: string };
  imageEncoder: { path: string; size: number };
  prior: UnclipStage & { guidance: number; embeddingScale: number };
  decoder: UnclipStage & { guidance: number; size: number; multipleOf: number };
  upsamplers: UnclipUpsampler[];
  gridStages: number;
  variation: { subtle: UnclipVariation; strong: UnclipVariation };
}

/** Checks a parsed manifest; `file` is named in errors. Paths stay as written (relative to the folder). */
export function validateManifest(value: Record<string, unknown>, file: string): UnclipManifest {
  const fail = (field: string, expected: string, actual: unknown): never => {
    throw new ModelError(file, `"${field}" to be ${expected}`, `"${field}" is ${actual === undefined ? 'missing' : JSON.stringify(actual)}`);
  };
  const object = (parent: Record<string, unknown>, key: string, field: string): Record<string, unknown> => {
    const child = parent[key];
    if (typeof child !== 'object' || child === null || Array.isArray(child)) return fail(field, 'an object', child);
    return child as Record<string, unknown>;
  };
  const text = (parent: Record<string, unknown>, key: string, field: string): string => {
    const child = parent[key];
    return typeof child === 'string' && child.trim() !== '' ? child : fail(field, 'a non-empty string', child);
  };
  const number = (parent: Record<string, unknown>, key: string, field: string, min: number, max: number, integer = false, fallback?: number): number => {
    const child = parent[key] ?? fallback;
    if (typeof child !== 'number' || !Number.isFinite(child) || child < min || child > max || (integer && !Number.isInteger(child))) {
      return fail(field, `${integer ? 'an integer' : 'a number'} ${min}..${max}`, child);
    }
    return child;
  };
  if (value.formatVersion !== 1) fail('formatVersion', '1', value.formatVersion);
  const stage = (key: string): UnclipStage & Record<string, unknown> => {
    const entry = object(value, key, key);
    return { ...entry, path: text(entry, 'path', `${key}.path`), scheduler: text(entry, 'scheduler', `${key}.scheduler`), steps: number(entry, 'steps', `${key}.steps`, 1, 1000, true) };
  };
  const prior = stage('prior');
  const decoder = stage('decoder');
  const upsamplersValue = value.upsamplers ?? [];
  if (!Array.isArray(upsamplersValue)) fail('upsamplers', 'an array', upsamplersValue);
  const upsamplers = (upsamplersValue as unknown[]).map((entry, index): UnclipUpsampler => {
    const field = `upsamplers[${index}]`;
    if (typeof entry !== 'object' || entry === null) return fail(field, 'an object', entry);
    const record = entry as Record<string, unknown>;
    const result: UnclipUpsampler = {
      path: text(record, 'path', `${field}.path`),
      scheduler: text(record, 'scheduler', `${field}.scheduler`),
      steps: number(record, 'steps', `${field}.steps`, 1, 1000, true),
      factor: number(record, 'factor', `${field}.factor`, 1, 16, true),
    };
    if (record.noiseLevel !== undefined) result.noiseLevel = number(record, 'noiseLevel', `${field}.noiseLevel`, 0, 1000, true);
    return result;
  });
  const variationValue = object(value, 'variation', 'variation');
  const variation = (key: 'subtle' | 'strong'): UnclipVariation => {
    const entry = object(variationValue, key, `variation.${key}`);
    return { embeddingNoise: number(entry, 'embeddingNoise', `variation.${key}.embeddingNoise`, 0, 10), eta: number(entry, 'eta', `variation.${key}.eta`, 0, 1) };
  };
  const imageEncoder = object(value, 'imageEncoder', 'imageEncoder');
  const manifest: UnclipManifest = {
    format: 'imagine-unclip',
    formatVersion: 1,
    name: text(value, 'name', 'name'),
    embeddingDim: number(value, 'embeddingDim', 'embeddingDim', 1, 65536, true),
    contextLength: number(value, 'contextLength', 'contextLength', 2, 4096, true, 77),
    tokenizer: { merges: text(object(value, 'tokenizer', 'tokenizer'), 'merges', 'tokenizer.merges') },
    textEncoder: { path: text(object(value, 'textEncoder', 'textEncoder'), 'path', 'textEncoder.path') },
    imageEncoder: { path: text(imageEncoder, 'path', 'imageEncoder.path'), size: number(imageEncoder, 'size', 'imageEncoder.size', 1, 4096, true) },
    prior: { ...prior, guidance: number(prior, 'guidance', 'prior.guidance', 0, 100, false, 1), embeddingScale: number(prior, 'embeddingScale', 'prior.embeddingScale', 1e-6, 1e6, false, 1) },
    decoder: {
      ...decoder,
      guidance: number(decoder, 'guidance', 'decoder.guidance', 0, 100, false, 1),
      size: number(decoder, 'size', 'decoder.size', 1, 4096, true),
      multipleOf: number(decoder, 'multipleOf', 'decoder.multipleOf', 1, 4096, true, 8),
    },
    upsamplers,
    gridStages: number(value, 'gridStages', 'gridStages', 0, upsamplers.length, true, Math.min(1, upsamplers.length)),
    variation: { subtle: variation('subtle'), strong: variation('strong') },
  };
  if (typeof value.description === 'string') manifest.description = value.description;
  if (manifest.decoder.size % manifest.decoder.multipleOf !== 0) fail('decoder.size', `a multiple of decoder.multipleOf (${manifest.decoder.multipleOf})`, manifest.decoder.size);
  return manifest;
}

/** Every file a manifest names, by role, resolved against the folder. */
export function manifestFiles(manifest: UnclipManifest, folder: string): Array<{ role: string; file: string }> {
  const at = (relative: string): string => path.resolve(folder, relative);
  return [
    { role: 'tokenizer merges', file: at(manifest.tokenizer.merges) },
    { role: 'text encoder', file: at(manifest.textEncoder.path) },
    { role: 'image encoder', file: at(manifest.imageEncoder.path) },
    { role: 'prior', file: at(manifest.prior.path) },
    { role: 'prior scheduler', file: at(manifest.prior.scheduler) },
    { role: 'decoder', file: at(manifest.decoder.path) },
    { role: 'decoder scheduler', file: at(manifest.decoder.scheduler) },
    ...manifest.upsamplers.flatMap((entry, index) => [
      { role: `upsampler ${index + 1}`, file: at(entry.path) },
      { role: `upsampler ${index + 1} scheduler`, file: at(entry.scheduler) },
    ]),
  ];
}
