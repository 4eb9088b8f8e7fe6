/**
 * DPM-Solver++ multistep (Lu et al. 2022) as diffusers' DPMSolverMultistepScheduler: data
 * prediction, orders 1–3, lower-order warm-up and final steps, optional Karras sigmas. The
 * deterministic algorithms (`dpmsolver++`, `dpmsolver`) are implemented.
 */

import { arange, checkOptions, interpolate, linspace, noiseSchedule, resolveConfig, roundHalfEven, strengthStart } from './noise-schedule.js';
import type { ResolvedSchedulerConfig } from './noise-schedule.js';
import { StepCursor, trainingSigmas } from './euler-ancestral.js';
import { checkSameLength, type Scheduler, type SchedulerConfig, type SchedulerOptions } from './scheduler.js';

/** α and σ of the variance-preserving process for a k-diffusion σ. */
function alphaSigma(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const noise = sigma * alpha;
  return { alpha, sigma: noise, lambda: Math.log(alpha) - Math.log(noise) };
}

/** diffusers' `_sigma_to_t`: the fractional training timestep whose σ is `sigma`, interpolating in log σ. */
function sigmaToTimestep(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let index = 0; index < logSigmas.length; index += 1) if (logSigma - logSigmas[index]! >= 0) low = index;
  low = Math.min(low, logSigmas.length - 2);
  const lowValue = logSigmas[low]!;
  const highValue = logSigmas[low + 1]!;
  const weight = Math.min(1, Math.max(0, (lowValue - logSigma) / (lowValue - highValue)));
  return (1 - weight) * low + weight * (low + 1);
}

export class DpmSolverMultistepScheduler implements Scheduler {
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  readonly needsNoise = false;
  private readonly config: ResolvedSchedulerConfig;
  private readonly allTimesteps: number[];
  /** One σ per timestep of the full schedule, then the final σ. */
  private readonly sigmas: Float64Array;
  private readonly cursor: StepCursor;
  /** Converted model outputs of the last `solverOrder` steps, newest last. */
  private readonly history: Float32Array[] = [];
  private lowerOrderCount = 0;

  constructor(config: SchedulerConfig, options: SchedulerOptions) {
    this.config = resolveConfig('dpm-solver++', config);
    const strength = options.strength ?? 1;
    const { numTrainTimesteps: train, timestepSpacing, stepsOffset } = this.config;
    checkOptions(options.steps, strength, train);
    const steps = options.steps;
    const alphasCumulative = noiseSchedule(this.config).alphasCumulative;
    if (this.config.rescaleBetasZeroSnr) alphasCumulative[alphasCumulative.length - 1] = 2 ** -24;

    // Timesteps whose log-SNR is below lambda_min_clipped are cut from the top of the schedule.
    const lambdasAscending = Array.from(alphasCumulative, (alpha) => Math.log(Math.sqrt(alpha)) - Math.log(Math.sqrt(1 - alpha))).reverse();
    const clipped = lambdasAscending.filter((lambda) => lambda < this.config.lambdaMinClipped).length;
    const lastTimestep = train - clipped;
    let timesteps: number[];
    if (timestepSpacing === 'linspace') {
      timesteps = linspace(0, lastTimestep - 1, steps + 1).map(roundHalfEven).reverse().slice(0, -1);
    } else if (timestepSpacing === 'leading') {
      const ratio = Math.floor(lastTimestep / (steps + 1));
      timesteps = Array.from({ length: steps + 1 }, (_, index) => index * ratio).reverse().slice(0, -1).map((value) => value + stepsOffset);
    } else {
      timesteps = arange(lastTimestep, 0, -train / steps).map((value) => roundHalfEven(value) - 1);
    }

    const sigmas = trainingSigmas(alphasCumulative);
    let stepSigmas: number[];
    if (this.config.useKarrasSigmas) {
      const logSigmas = sigmas.map((sigma) => Math.fround(Math.log(sigma)));
      const sigmaMin = sigmas[0]!;
      const sigmaMax = sigmas[sigmas.length - 1]!;
      const rho = 7;
      const minRoot = sigmaMin ** (1 / rho);
      const maxRoot = sigmaMax ** (1 / rho);
      stepSigmas = linspace(0, 1, steps).map((ramp) => (maxRoot + ramp * (minRoot - maxRoot)) ** rho);
      const fractional = stepSigmas.map((sigma) => sigmaToTimestep(sigma, logSigmas));
      // diffusers rounds except for the cosine schedule, whose int64 cast truncates.
      timesteps = fractional.map((value) => (this.config.betaSchedule === 'squaredcos_cap_v2' ? Math.trunc(value) : roundHalfEven(value)));
    } else {
      stepSigmas = timesteps.map((timestep) => interpolate(timestep, sigmas));
    }
    const finalSigma = this.config.finalSigmasType === 'sigma_min' ? Math.sqrt((1 - alphasCumulative[0]!) / alphasCumulative[0]!) : 0;
    this.sigmas = Float64Array.from([...stepSigmas, finalSigma], Math.fround);
    this.allTimesteps = timesteps;
    const start = strengthStart(timesteps.length, strength);
    this.timesteps = timesteps.slice(start);
    this.cursor = new StepCursor(timesteps, start);
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /** The model output as the solver's x₀ (dpmsolver++) or ε (dpmsolver) prediction. */
  private convert(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    const { alpha, sigma: noise } = alphaSigma(sigma);
    const predictionType = this.config.predictionType;
    const converted = new Float32Array(sample.length);
    const dataPrediction = this.config.algorithmType === 'dpmsolver++';
    for (let index = 0; index < sample.length; index += 1) {
      const x = sample[index]!;
      const output = modelOutput[index]!;
      if (dataPrediction) {
        converted[index] = predictionType === 'epsilon' ? (x - noise * output) / alpha
          : predictionType === 'sample' ? output
            : alpha * x - noise * output;
      } else {
        converted[index] = predictionType === 'epsilon' ? output
          : predictionType === 'sample' ? (x - alpha * output) / noise
            : alpha * output + noise * x;
      }
    }
    return converted;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    checkSameLength(sample, modelOutput, 'the model output');
    const index = this.cursor.indexOf(timestep);
    if (index !== this.cursor.expected) {
      throw new RangeError(`DPM-Solver steps must run in order: expected timestep ${this.allTimesteps[this.cursor.expected]}, got ${timestep}`);
    }
    const count = this.allTimesteps.length;
    const { solverOrder, lowerOrderFinal, eulerAtFinal, finalSigmasType } = this.config;
    const finalFirstOrder = index === count - 1 && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmasType === 'zero');
    const finalSecondOrder = index === count - 2 && lowerOrderFinal && count < 15;

    this.history.push(this.convert(modelOutput, sample, this.sigmas[index]!));
    if (this.history.length > solverOrder) this.history.shift();

    let result: Float32Array;
    if (solverOrder === 1 || this.lowerOrderCount < 1 || finalFirstOrder) result = this.firstOrder(index, sample);
    else if (solverOrder === 2 || this.lowerOrderCount < 2 || finalSecondOrder) result = this.secondOrder(index, sample);
    else result = this.thirdOrder(index, sample);
    if (this.lowerOrderCount < solverOrder) this.lowerOrderCount += 1;
    this.cursor.advance(index);
    return result;
  }

  private firstOrder(index: number, sample: Float32Array): Float32Array {
    const target = alphaSigma(this.sigmas[index + 1]!);
    const source = alphaSigma(this.sigmas[index]!);
    const h = target.lambda - source.lambda;
    const d0 = this.history[this.history.length - 1]!;
    const result = new Float32Array(sample.length);
    if (this.config.algorithmType === 'dpmsolver++') {
      // At σ = 0 the ratio is 0 and e^{−h} is 0: the step lands on x₀.
      const sampleWeight = target.sigma / source.sigma;
      const outputWeight = -target.alpha * (Math.exp(-h) - 1);
      for (let i = 0; i < sample.length; i += 1) result[i] = sampleWeight * sample[i]! + outputWeight * d0[i]!;
    } else {
      const sampleWeight = target.alpha / source.alpha;
      const outputWeight = -target.sigma * (Math.exp(h) - 1);
      for (let i = 0; i < sample.length; i += 1) result[i] = sampleWeight * sample[i]! + outputWeight * d0[i]!;
    }
    return result;
  }

  private secondOrder(index: number, sample: Float32Array): Float32Array {
    const target = alphaSigma(this.sigmas[index + 1]!);
    const s0 = alphaSigma(this.sigmas[index]!);
    const s1 = alphaSigma(this.sigmas[index - 1]!);
    const m0 = this.history[this.history.length - 1]!;
    const m1 = this.history[this.history.length - 2]!;
    const h = target.lambda - s0.lambda;
    const r0 = (s0.lambda - s1.lambda) / h;
    const plusPlus = this.config.algorithmType === 'dpmsolver++';
    const midpoint = this.config.solverType === 'midpoint';
    let sampleWeight: number;
    let d0Weight: number;
    let d1Weight: number;
    if (plusPlus) {
      sampleWeight = target.sigma / s0.sigma;
      d0Weight = -target.alpha * (Math.exp(-h) - 1);
      d1Weight = midpoint ? -0.5 * target.alpha * (Math.exp(-h) - 1) : target.alpha * ((Math.exp(-h) - 1) / h + 1);
    } else {
      sampleWeight = target.alpha / s0.alpha;
      d0Weight = -target.sigma * (Math.exp(h) - 1);
      d1Weight = midpoint ? -0.5 * target.sigma * (Math.exp(h) - 1) : -target.sigma * ((Math.exp(h) - 1) / h - 1);
    }
    const result = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i += 1) {
      const d1 = (m0[i]! - m1[i]!) / r0;
      result[i] = sampleWeight * sample[i]! + d0Weight * m0[i]! + d1Weight * d1;
    }
    return result;
  }

  private thirdOrder(index: number, sample: Float32Array): Float32Array {
    const target = alphaSigma(this.sigmas[index + 1]!);
    const s0 = alphaSigma(this.sigmas[index]!);
    const s1 = alphaSigma(this.sigmas[index - 1]!);
    const s2 = alphaSigma(this.sigmas[index - 2]!);
    const m0 = this.history[this.history.length - 1]!;
    const m1 = this.history[this.history.length - 2]!;
    const m2 = this.history[this.history.length - 3]!;
    const h = target.lambda - s0.lambda;
    const r0 = (s0.lambda - s1.lambda) / h;
    const r1 = (s1.lambda - s2.lambda) / h;
    let sampleWeight: number;
    let d0Weight: number;
    let d1Weight: number;
    let d2Weight: number;
    if (this.config.algorithmType === 'dpmsolver++') {
      sampleWeight = target.sigma / s0.sigma;
      d0Weight = -target.alpha * (Math.exp(-h) - 1);
      d1Weight = target.alpha * ((Math.exp(-h) - 1) / h + 1);
      d2Weight = -target.alpha * ((Math.exp(-h) - 1 + h) / (h * h) - 0.5);
    } else {
      sampleWeight = target.alpha / s0.alpha;
      d0Weight = -target.sigma * (Math.exp(h) - 1);
      d1Weight = -target.sigma * ((Math.exp(h) - 1) / h - 1);
      d2Weight = -target.sigma * ((Math.exp(h) - 1 - h) / (h * h) - 0.5);
    }
    const result = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i += 1) {
      const d10 = (m0[i]! - m1[i]!) / r0;
      const d11 = (m1[i]! - m2[i]!) / r1;
      const d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
      const d2 = (d10 - d11) / (r0 + r1);
      result[i] = sampleWeight * sample[i]! + d0Weight * m0[i]! + d1Weight * d1 + d2Weight * d2;
    }
    return result;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(original, noise, 'the noise');
    const { alpha, sigma } = alphaSigma(this.sigmas[this.cursor.indexOf(timestep)]!);
    const result = new Float32Array(original.length);
    for (let i = 0; i < original.length; i += 1) result[i] = alpha * original[i]! + sigma * noise[i]!;
    return result;
  }
}
