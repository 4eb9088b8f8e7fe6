/**
 * The scheduler contract shared by every sampler, and the diffusers configuration it is built from.
 * Schedulers work on whole flat batches; the caller supplies any noise so that each image's
 * randomness comes from its own generator and results do not depend on batch composition.
 */

/** The samplers this project implements. */
export type SchedulerKind = 'ddim' | 'euler-ancestral' | 'dpm-solver++' | 'lcm';

/**
 * The fields of a diffusers `scheduler_config.json` that these schedulers read. Every field is
 * optional: a missing one takes the default of the diffusers class that `kind` names, as
 * `SchedulerClass.from_config` does, so one file can configure any kind.
 */
export interface SchedulerConfig {
  /** The diffusers class the file was written for, e.g. `PNDMScheduler`. */
  _class_name?: string;
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | (string & {});
  trained_betas?: number[] | null;
  prediction_type?: 'epsilon' | 'v_prediction' | 'sample' | (string & {});
  timestep_spacing?: 'leading' | 'trailing' | 'linspace' | (string & {});
  steps_offset?: number;
  rescale_betas_zero_snr?: boolean;
  /** DDIM and LCM: clamp the predicted clean sample to ±clip_sample_range. */
  clip_sample?: boolean;
  clip_sample_range?: number;
  /** DDIM and LCM: the "previous" cumulative alpha of the last step is 1 rather than ᾱ₀. */
  set_alpha_to_one?: boolean;
  /** Dynamic thresholding needs per-image quantiles; it is ignored (see {@link ignoredSettings}). */
  thresholding?: boolean;
  /** DPM-Solver: 1, 2 or 3. */
  solver_order?: number;
  algorithm_type?: 'dpmsolver++' | 'dpmsolver' | 'sde-dpmsolver++' | 'sde-dpmsolver' | (string & {});
  solver_type?: 'midpoint' | 'heun' | (string & {});
  lower_order_final?: boolean;
  euler_at_final?: boolean;
  final_sigmas_type?: 'zero' | 'sigma_min' | (string & {});
  use_karras_sigmas?: boolean;
  lambda_min_clipped?: number;
  /** LCM: the distillation schedule's length, 50 by default. */
  original_inference_steps?: number;
  timestep_scaling?: number;
  [field: string]: unknown;
}

/** How one sampling run is set up. */
export interface SchedulerOptions {
  /** Denoising steps before `strength` is applied. */
  steps: number;
  /** DDIM only: 0 is deterministic DDIM, 1 is DDPM-like. Default 0. */
  eta?: number;
  /**
   * img2img, 0..1 (default 1): only the last `floor(strength · steps)` timesteps run, as in diffusers'
   * img2img pipelines. LCM instead draws its `steps` from the first `strength` of its schedule.
   */
  strength?: number;
}

/** One sampling run's state machine. Call `scaleModelInput` and `step` once per timestep, in order. */
export interface Scheduler {
  /** The timesteps to run, in order (Euler's may be fractional). */
  readonly timesteps: number[];
  /** Multiply unit Gaussian noise by this for the starting sample of text-to-image. */
  readonly initNoiseSigma: number;
  /** Whether `step` needs its `noise` argument. */
  readonly needsNoise: boolean;
  /** The model's input at `timestep`; may return `sample` itself when no scaling applies. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /** The sample at the next timestep, given the model's output at this one. Never mutates its arguments. */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array): Float32Array;
  /** img2img: `original` noised to the level of `timestep` (normally `timesteps[0]`). */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}

/** Throws unless the arrays have the same length. */
export function checkSameLength(first: Float32Array, second: Float32Array, what: string): void {
  if (first.length !== second.length) {
    throw new RangeError(`${what} has ${second.length} values but the sample has ${first.length}`);
  }
}

/** The noise argument, or an error saying it is needed. */
export function requireNoise(noise: Float32Array | undefined, sample: Float32Array, scheduler: string): Float32Array {
  if (noise === undefined) throw new RangeError(`the ${scheduler} scheduler needs noise for this step`);
  checkSameLength(sample, noise, 'the noise');
  return noise;
}
