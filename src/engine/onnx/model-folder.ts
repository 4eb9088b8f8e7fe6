/**
 * Recognises a model folder: the project's own unCLIP layout (manifest.json with format
 * "imagine-unclip") or a diffusers-style Stable Diffusion export (model_index.json). Anything else
 * is a {@link ModelError} that says what was expected.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelError } from '../../errors.js';

/** The model families the ONNX engine runs. */
export type ModelFamily = 'unclip' | 'stable-diffusion';

/** What kind of folder `folder` is, without loading any model. */
export interface ModelLayout {
  family: ModelFamily;
  folder: string;
  /** manifest.json or model_index.json. */
  indexFile: string;
  /** The parsed index file. */
  index: Record<string, unknown>;
}

/** Reads a JSON file, or throws a ModelError naming it. */
export async function readJsonFile(file: string, expected: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ModelError(file, expected, missing ? 'the file does not exist' : `the file could not be read (${(error as Error).message})`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ModelError(file, expected, `the file is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ModelError(file, expected, 'the file does not hold a JSON object');
  return value as Record<string, unknown>;
}

/** Finds out what kind of model folder `folder` is. */
export async function detectModelFolder(folder: string): Promise<ModelLayout> {
  const resolved = path.resolve(folder);
  const expected = 'a model folder with manifest.json (format "imagine-unclip") or model_index.json (a diffusers Stable Diffusion ONNX export)';
  if (!existsSync(resolved)) throw new ModelError(resolved, expected, 'the folder does not exist');
  if (!statSync(resolved).isDirectory()) throw new ModelError(resolved, expected, 'this is not a folder');
  const manifestFile = path.join(resolved, 'manifest.json');
  if (existsSync(manifestFile)) {
    const manifest = await readJsonFile(manifestFile, 'an imagine-unclip manifest (JSON)');
    if (manifest.format !== 'imagine-unclip') {
      throw new ModelError(manifestFile, 'the field "format": "imagine-unclip"', `the format is ${JSON.stringify(manifest.format)}`);
    }
    return { family: 'unclip', folder: resolved, indexFile: manifestFile, index: manifest };
  }
  const indexFile = path.join(resolved, 'model_index.json');
  if (existsSync(indexFile)) {
    const index = await readJsonFile(indexFile, 'a diffusers model_index.json');
    const className = String(index._class_name ?? '');
    if (className && !/StableDiffusion|LatentConsistency|DiffusionPipeline/.test(className)) {
      throw new ModelError(indexFile, 'a Stable Diffusion pipeline (StableDiffusion…, LatentConsistency…)', `the pipeline class is ${className}, which this engine does not run`);
    }
    if (!index.unet && !existsSync(path.join(resolved, 'unet', 'model.onnx'))) {
      throw new ModelError(indexFile, 'a pipeline with a unet component', 'it has none');
    }
    return { family: 'stable-diffusion', folder: resolved, indexFile, index };
  }
  throw new ModelError(resolved, expected, 'it has neither manifest.json nor model_index.json (unknown layout)');
}

/** A model folder's files as the engine would load them, for `info` and error messages. */
export interface ModelDescription {
  folder: string;
  family: ModelFamily;
  name: string;
  /** Each file the engine needs, by role, with whether it is there. */
  files: Array<{ role: string; file: string; exists: boolean }>;
  /** What is wrong, in words (empty when every file is there). */
  problems: string[];
}
