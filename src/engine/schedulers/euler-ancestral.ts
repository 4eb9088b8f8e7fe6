/**
 * Euler ancestral sampling (k-diffusion's sample_euler_ancestral) as diffusers'
 * EulerAncestralDiscreteScheduler: an Euler step down to σ_down, then fresh noise up to σ_up.
 */

import { arange, checkOptions, interpolate, linspace, mapSamples, noiseSchedule, resolveConfig, roundHalfEven, strengthStart } from './noise-schedule.js';
import type { ResolvedSchedulerConfig } from './noise-schedule.js';
import { checkSameLength, requireNoise, type Scheduler, type SchedulerConfig, type SchedulerOptions } from './scheduler.js';

/** Euler's timesteps: float32 values, fractional with linspace spacing. */
function eulerTimesteps(config: ResolvedSchedulerConfig, steps: number): number[] {
  const train = config.numTrainTimesteps;
  switch (config.timestepSpacing) {
    case 'linspace':
      return linspace(0, train - 1, steps).map(Math.fround).reverse();
    case 'leading': {
      const ratio = Math.floor(train / steps);
      return Array.from({ length: steps }, (_, index) => Math.fround(index * ratio + config.stepsOffset)).reverse();
    }
    case 'trailing':
      return arange(train, 0, -train / steps).map((value) => Math.fround(roundHalfEven(value) - 1));
  }
}

/** σ of each training timestep, √((1 − ᾱ)/ᾱ). */
export function trainingSigmas(alphasCumulative: Float64Array): Float64Array {
  return alphasCumulative.map((alpha) => Math.fround(Math.sqrt((1 - alpha) / alpha)));
}

/** Tracks which schedule position a timestep is, so steps may be looked up by value. */
export class StepCursor {
  private next: number;

  constructor(private readonly schedule: readonly number[], start: number) {
    this.next = start;
  }

  /** The index of `timestep`, preferring the expected next position. */
  indexOf(timestep: number): number {
    if (this.schedule[this.next] === timestep) return this.next;
    const index = this.schedule.indexOf(timestep);
    if (index < 0) throw new RangeError(`timestep ${timestep} is not one of this scheduler's timesteps`);
    return index;
  }

  /** Marks `index` done; the next expected step follows it. */
  advance(index: number): void {
    this.next = index + 1;
  }

  get expected(): number {
    return this.next;
  }
}

export class EulerAncestralScheduler implements Scheduler {
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  readonly needsNoise = true;
  private readonly config: ResolvedSchedulerConfig;
  private readonly allTimesteps: number[];
  /** One σ per timestep of the full schedule, then 0. */
  private readonly sigmas: Float64Array;
  private readonly cursor: StepCursor;

  constructor(config: SchedulerConfig, options: SchedulerOptions) {
    this.config = resolveConfig('euler-ancestral', config);
    const strength = options.strength ?? 1;
    checkOptions(options.steps, strength, this.config.numTrainTimesteps);
    const alphasCumulative = noiseSchedule(this.config).alphasCumulative;
    // With a zero-SNR schedule ᾱ_T is 0; diffusers nudges it so that σ stays finite.
    if (this.config.rescaleBetasZeroSnr) alphasCumulative[alphasCumulative.length - 1] = 2 ** -24;
    const sigmas = trainingSigmas(alphasCumulative);
    this.allTimesteps = eulerTimesteps(this.config, options.steps);
    this.sigmas = Float64Array.from([...this.allTimesteps.map((timestep) => interpolate(timestep, sigmas)), 0], Math.fround);
    const start = strengthStart(options.steps, strength);
    this.timesteps = this.allTimesteps.slice(start);
    this.cursor = new StepCursor(this.allTimesteps, start);
    const maximum = Math.max(...this.sigmas);
    this.initNoiseSigma = this.config.timestepSpacing === 'leading' ? Math.sqrt(maximum * maximum + 1) : maximum;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.cursor.indexOf(timestep)]!;
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    return mapSamples(sample.length, (index) => sample[index]! * scale);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array): Float32Array {
    checkSameLength(sample, modelOutput, 'the model output');
    const stepNoise = requireNoise(noise, sample, 'Euler ancestral');
    const index = this.cursor.indexOf(timestep);
    const sigma = this.sigmas[index]!;
    const sigmaNext = this.sigmas[index + 1]!;
    const sigmaUp = Math.sqrt((sigmaNext * sigmaNext * (sigma * sigma - sigmaNext * sigmaNext)) / (sigma * sigma));
    const sigmaDown = Math.sqrt(Math.max(0, sigmaNext * sigmaNext - sigmaUp * sigmaUp));
    const dt = sigmaDown - sigma;
    const predictionType = this.config.predictionType;
    const vScale = 1 / Math.sqrt(sigma * sigma + 1);
    const result = mapSamples(sample.length, (position) => {
      const x = sample[position]!;
      const output = modelOutput[position]!;
      let original: number;
      if (predictionType === 'epsilon') original = x - sigma * output;
      else if (predictionType === 'v_prediction') original = output * (-sigma * vScale) + x * vScale * vScale;
      // diffusers raises for `sample`; x₀ is then simply the output.
      else original = output;
      const derivative = (x - original) / sigma;
      return x + derivative * dt + stepNoise[position]! * sigmaUp;
    });
    this.cursor.advance(index);
    return result;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(original, noise, 'the noise');
    const sigma = this.sigmas[this.cursor.indexOf(timestep)]!;
    return mapSamples(original.length, (index) => original[index]! + noise[index]! * sigma);
  }
}
