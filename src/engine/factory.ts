/**
 * The public entry to the ONNX engines: {@link createEngine} loads the configured model folder
 * (an imagine-unclip manifest.json or a diffusers Stable Diffusion model_index.json), by default in
 * a worker thread; {@link describeModel} lists a folder's files without loading any model.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/config.js';

import type { ImageEngine } from './engine.js';
import { detectModelFolder, type ModelDescription } from './onnx/model-folder.js';
import { assertProvidersAvailable, sessionSettingsFrom, type SessionSettings } from './onnx/providers.js';
import type { RunClock } from './onnx/session.js';
import { StableDiffusionEngine, stableDiffusionFiles } from './stable-diffusion/stable-diffusion-engine.js';
import { manifestFiles, validateManifest } from './unclip/manifest.js';
import { UnclipEngine } from './unclip/unclip-engine.js';
import { WorkerEngine } from './worker/worker-engine.js';

/** Options for {@link createEngine}. */
export interface CreateEngineOptions {
  /** Run the models in a worker thread (default true): session.run blocks its thread. */
  inWorker?: boolean;
  /** Images per batched model call; 4 (a whole grid) by default. */
  maxBatch?: number;
}

/** The configuration settings the engine reads. */
export type EngineConfig = Pick<Config, 'model' | 'executionProviders' | 'threads' | 'graphOptimization'>;

/**
 * Loads `config.model` with the configured execution providers, threads and graph optimisation.
 * Rejects with a ModelError (missing, corrupt or mismatched files) or an ImagineError with code
 * `provider_unavailable`.
 */
export async function createEngine(config: EngineConfig, options: CreateEngineOptions = {}): Promise<ImageEngine> {
  const settings = sessionSettingsFrom(config);
  // Fail fast, on the calling thread, for the errors that need no model.
  assertProvidersAvailable(settings);
  await detectModelFolder(config.model);
  if (options.inWorker ?? true) {
    return WorkerEngine.start({ model: path.resolve(config.model), settings, ...(options.maxBatch ? { maxBatch: options.maxBatch } : {}) });
  }
  return loadEngine(config.model, { settings, ...(options.maxBatch ? { maxBatch: options.maxBatch } : {}) });
}

/** Options for {@link loadEngine}. */
export interface LoadEngineOptions {
  settings: SessionSettings;
  maxBatch?: number;
  clock?: RunClock;
}

/** Loads a model folder on this thread (what the worker does; also for tests and the benchmark). */
export async function loadEngine(folder: string, options: LoadEngineOptions): Promise<UnclipEngine | StableDiffusionEngine> {
  const layout = await detectModelFolder(folder);
  return layout.family === 'unclip' ? UnclipEngine.load(layout.folder, options) : StableDiffusionEngine.load(layout.folder, options);
}

/**
 * What a model folder holds, file by file, without loading any model: for `info`, for start-up
 * errors and for `imagine doctor`-like checks. Throws a ModelError only when the folder itself is
 * not a model folder (unknown layout, unreadable manifest).
 */
export async function describeModel(folder: string): Promise<ModelDescription> {
  const layout = await detectModelFolder(folder);
  const files =
    layout.family === 'unclip'
      ? manifestFiles(validateManifest(layout.index, layout.indexFile), layout.folder)
      : stableDiffusionFiles(layout.folder);
  const described = files.map((entry) => ({ ...entry, exists: existsSync(entry.file) }));
  const name =
    layout.family === 'unclip' ? String(layout.index.name) : path.basename(layout.folder);
  return {
    folder: layout.folder,
    family: layout.family,
    name,
    files: described,
    problems: described.filter((entry) => !entry.exists).map((entry) => `${entry.role} is missing: ${entry.file}`),
  };
}

