/**
 * What every diffusion pipeline shares: the denoising loop (abort checks between steps, per-image
 * noise), overall progress across stages, the scheduler kind named by a diffusers config, and the
 * noise streams that make each image depend only on its own seed.
 */
import { ModelError } from '../../errors.js';
import { type EngineProgress, throwIfAborted } from '../engine.js';
import { deriveSeed, Random } from '../random.js';
import { createScheduler, loadSchedulerConfig, type Scheduler, type SchedulerConfig, type SchedulerKind } from '../schedulers/index.js';
import { batchNoise } from './tensors.js';

/**
 * Independent noise streams of one image seed. Each stage draws from its own generator, so a stage
 * taking more steps (or another batch) never shifts the noise of the next one.
 */
export const NoiseStream = {
  prior: 1,
  priorSteps: 2,
  decoder: 3,
  decoderSteps: 4,
  chaos: 5,
  variation: 6,
  latents: 7,
  latentSteps: 8,
  encoder: 9,
  /** Upsampler k (0-based) uses upsampler + 2k for its start and upsampler + 2k + 1 for its steps. */
  upsampler: 100,
} as const;

/** A generator for `stream` of image seed `seed`. */
export function generatorFor(seed: number, stream: number): Random {
  return new Random(deriveSeed(seed, stream));
}

/** What a diffusers `_class_name` maps to; unknown schedulers (PNDM, LMS, ...) fall back to DDIM. */
export function schedulerKindFor(className: unknown): { kind: SchedulerKind; fallback: boolean } {
  switch (className) {
    case 'DDIMScheduler':
      return { kind: 'ddim', fallback: false };
    case 'EulerAncestralDiscreteScheduler':
      return { kind: 'euler-ancestral', fallback: false };
    case 'DPMSolverMultistepScheduler':
      return { kind: 'dpm-solver++', fallback: false };
    case 'LCMScheduler':
      return { kind: 'lcm', fallback: false };
    default:
      // PNDM (Stable Diffusion 1.x's default), LMS, Euler and others: DDIM with the same betas
      // and timestep spacing gives comparable images in as many steps.
      return { kind: 'ddim', fallback: true };
  }
}

/** A scheduler config file with its kind, or a ModelError naming the file. */
export async function loadStageScheduler(file: string, role: string): Promise<{ config: SchedulerConfig; kind: SchedulerKind; fallback: boolean }> {
  let config: SchedulerConfig;
  try {
    config = await loadSchedulerConfig(file);
  } catch (error) {
    if (error instanceof ModelError) throw error;
    throw new ModelError(file, `the ${role} scheduler's config (diffusers scheduler_config.json)`, error instanceof Error ? error.message : String(error), { cause: error });
  }
  const { kind, fallback } = schedulerKindFor((config as { _class_name?: unknown })._class_name);
  return { config, kind, fallback };
}

/** Work of one stage, for overall progress. */
export interface StagePlan {
  stage: string;
  steps: number;
  /** Relative cost of one step (e.g. pixels × batch). */
  weight: number;
}

/** Turns per-stage steps into one monotonic overall fraction. */
export class ProgressTracker {
  private readonly total: number;
  private done = 0;
  private readonly stepsDone = new Map<string, number>();

  constructor(private readonly plan: StagePlan[], private readonly listener: ((progress: EngineProgress) => void) | undefined) {
    this.total = plan.reduce((sum, stage) => sum + stage.steps * stage.weight, 0) || 1;
  }

  /** One step of `stage` is done. */
  step(stage: string): void {
    const entry = this.plan.find((item) => item.stage === stage);
    if (!entry) return;
    const step = Math.min(entry.steps, (this.stepsDone.get(stage) ?? 0) + 1);
    this.stepsDone.set(stage, step);
    this.done += entry.weight;
    const fraction = Math.min(1, this.done / this.total);
    if (!this.listener) return;
    try {
      this.listener({ stage, step, steps: entry.steps, fraction });
    } catch {
      // A failing progress listener must not fail the generation.
    }
  }
}

/** One denoising loop over a batch of `generators.length` items of `itemSize` values each. */
export interface DenoiseOptions {
  scheduler: Scheduler;
  /** The starting sample (already scaled by initNoiseSigma, or img2img's noised latents). */
  sample: Float32Array;
  itemSize: number;
  /** One generator per item for the scheduler's step noise. */
  generators: Random[];
  /** The model's (guided) output for a scaled sample at a timestep. */
  predict: (input: Float32Array, timestep: number, stepIndex: number) => Promise<Float32Array>;
  onStep: () => void;
  signal: AbortSignal | undefined;
}

/** Runs every timestep of the scheduler and returns the final sample. */
export async function denoise(options: DenoiseOptions): Promise<Float32Array> {
  const { scheduler, itemSize, generators, signal } = options;
  let sample = options.sample;
  for (const [stepIndex, timestep] of scheduler.timesteps.entries()) {
    throwIfAborted(signal);
    const input = scheduler.scaleModelInput(sample, timestep);
    const output = await options.predict(input, timestep, stepIndex);
    throwIfAborted(signal);
    const noise = scheduler.needsNoise ? batchNoise(generators, itemSize) : undefined;
    sample = scheduler.step(output, timestep, sample, noise);
    options.onStep();
  }
  return sample;
}

/** Creates a scheduler, turning invalid settings into a ModelError naming the config file. */
export function makeScheduler(kind: SchedulerKind, config: SchedulerConfig, file: string, options: { steps: number; eta?: number; strength?: number }): Scheduler {
  try {
    return createScheduler(kind, config, options);
  } catch (error) {
    if (error instanceof ModelError || (error instanceof Error && error.name === 'UserError')) throw error;
    throw new ModelError(file, `a ${kind} scheduler config usable with ${options.steps} steps`, error instanceof Error ? error.message : String(error), { cause: error });
  }
}

/** Splits `count` items into chunks of at most `size`: [start, end) pairs. */
export function chunks(count: number, size: number): Array<[number, number]> {
  const result: Array<[number, number]> = [];
  for (let start = 0; start < count; start += size) result.push([start, Math.min(count, start + size)]);
  return result;
}
