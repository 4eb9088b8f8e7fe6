/**
 * DDIM (Song et al. 2020) as diffusers' DDIMScheduler: η = 0 is deterministic, η = 1 adds
 * DDPM-like noise. Reimplemented from diffusers' formulas.
 */

import { checkOptions, mapSamples, noiseSchedule, resolveConfig, roundHalfEven, linspace, arange, strengthStart } from './noise-schedule.js';
import type { ResolvedSchedulerConfig } from './noise-schedule.js';
import { checkSameLength, requireNoise, type Scheduler, type SchedulerConfig, type SchedulerOptions } from './scheduler.js';

/** Timesteps of DDIM and of the samplers that share its spacing rules (integer, descending). */
export function ddimTimesteps(config: ResolvedSchedulerConfig, steps: number): number[] {
  const train = config.numTrainTimesteps;
  switch (config.timestepSpacing) {
    case 'linspace':
      return linspace(0, train - 1, steps).map(roundHalfEven).reverse();
    case 'leading': {
      const ratio = Math.floor(train / steps);
      return Array.from({ length: steps }, (_, index) => index * ratio + config.stepsOffset).reverse();
    }
    case 'trailing':
      return arange(train, 0, -train / steps).map((value) => roundHalfEven(value) - 1);
  }
}

export class DdimScheduler implements Scheduler {
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  readonly needsNoise: boolean;
  private readonly config: ResolvedSchedulerConfig;
  private readonly alphasCumulative: Float64Array;
  private readonly finalAlphaCumulative: number;
  /** diffusers steps back by train/steps whatever the spacing. */
  private readonly stride: number;
  private readonly eta: number;

  constructor(config: SchedulerConfig, options: SchedulerOptions) {
    this.config = resolveConfig('ddim', config);
    const strength = options.strength ?? 1;
    checkOptions(options.steps, strength, this.config.numTrainTimesteps);
    this.eta = options.eta ?? 0;
    if (!(this.eta >= 0)) throw new RangeError(`eta must be 0 or more, got ${options.eta}`);
    this.needsNoise = this.eta > 0;
    this.alphasCumulative = noiseSchedule(this.config).alphasCumulative;
    this.finalAlphaCumulative = this.config.setAlphaToOne ? 1 : this.alphasCumulative[0]!;
    this.stride = Math.floor(this.config.numTrainTimesteps / options.steps);
    this.timesteps = ddimTimesteps(this.config, options.steps).slice(strengthStart(options.steps, strength));
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  private alphaAt(timestep: number): number {
    const value = this.alphasCumulative[timestep];
    if (!Number.isInteger(timestep) || value === undefined) {
      throw new RangeError(`timestep ${timestep} is not an integer from 0 to ${this.config.numTrainTimesteps - 1}`);
    }
    return value;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array): Float32Array {
    checkSameLength(sample, modelOutput, 'the model output');
    const previousTimestep = timestep - this.stride;
    const alpha = this.alphaAt(timestep);
    const alphaPrevious = previousTimestep >= 0 ? this.alphaAt(previousTimestep) : this.finalAlphaCumulative;
    const beta = 1 - alpha;
    const variance = ((1 - alphaPrevious) / beta) * (1 - alpha / alphaPrevious);
    const deviation = this.eta * Math.sqrt(variance);
    const stepNoise = this.eta > 0 ? requireNoise(noise, sample, 'DDIM (eta > 0)') : undefined;
    const rootAlpha = Math.sqrt(alpha);
    const rootBeta = Math.sqrt(beta);
    const rootAlphaPrevious = Math.sqrt(alphaPrevious);
    const direction = Math.sqrt(Math.max(0, 1 - alphaPrevious - deviation * deviation));
    const { predictionType, clipSample, clipSampleRange } = this.config;
    // A plain loop rather than mapSamples' closure per sample: this runs over every pixel of every
    // denoising step, and was the engine's largest cost outside onnxruntime.
    const length = sample.length;
    const result = new Float32Array(length);
    const low = clipSample ? -clipSampleRange : Number.NEGATIVE_INFINITY;
    const high = clipSample ? clipSampleRange : Number.POSITIVE_INFINITY;
    for (let index = 0; index < length; index += 1) {
      const x = sample[index]!;
      const output = modelOutput[index]!;
      let original: number;
      let epsilon: number;
      if (predictionType === 'epsilon') {
        original = (x - rootBeta * output) / rootAlpha;
        epsilon = output;
      } else if (predictionType === 'sample') {
        original = output;
        epsilon = (x - rootAlpha * original) / rootBeta;
      } else {
        original = rootAlpha * x - rootBeta * output;
        epsilon = rootAlpha * output + rootBeta * x;
      }
      // diffusers clips x₀ but keeps the unclipped ε (use_clipped_model_output defaults to false).
      if (original < low) original = low;
      else if (original > high) original = high;
      let previous = rootAlphaPrevious * original + direction * epsilon;
      if (stepNoise !== undefined) previous += deviation * stepNoise[index]!;
      result[index] = previous;
    }
    return result;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(original, noise, 'the noise');
    const alpha = this.alphaAt(timestep);
    const rootAlpha = Math.sqrt(alpha);
    const rootBeta = Math.sqrt(1 - alpha);
    return mapSamples(original.length, (index) => rootAlpha * original[index]! + rootBeta * noise[index]!);
  }
}
