/**
 * Latent Consistency Model sampling as diffusers' LCMScheduler: each step maps the sample to the
 * consistency function's x₀ (with the c_skip/c_out boundary condition), then re-noises it to the
 * next timestep of a subset of the 50-step distillation schedule.
 */

import { StepCursor } from './euler-ancestral.js';
import { checkOptions, linspace, mapSamples, noiseSchedule, resolveConfig } from './noise-schedule.js';
import type { ResolvedSchedulerConfig } from './noise-schedule.js';
import { checkSameLength, requireNoise, type Scheduler, type SchedulerConfig, type SchedulerOptions } from './scheduler.js';

/** The consistency model's σ_data. */
const sigmaData = 0.5;

export class LcmScheduler implements Scheduler {
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  readonly needsNoise = true;
  private readonly config: ResolvedSchedulerConfig;
  private readonly alphasCumulative: Float64Array;
  private readonly finalAlphaCumulative: number;
  private readonly cursor: StepCursor;

  constructor(config: SchedulerConfig, options: SchedulerOptions) {
    this.config = resolveConfig('lcm', config);
    const strength = options.strength ?? 1;
    const train = this.config.numTrainTimesteps;
    checkOptions(options.steps, strength, train);
    const originalSteps = this.config.originalInferenceSteps;
    if (originalSteps > train) throw new RangeError(`original_inference_steps ${originalSteps} exceeds num_train_timesteps ${train}`);
    // The distillation schedule k−1, 2k−1, …; img2img keeps only its first `strength` part.
    const stride = Math.floor(train / originalSteps);
    const origin = Array.from({ length: Math.floor(originalSteps * strength) }, (_, index) => (index + 1) * stride - 1).reverse();
    const skipping = Math.floor(origin.length / options.steps);
    if (skipping < 1) {
      throw new RangeError(`LCM can take at most ${origin.length} steps here (original_inference_steps ${originalSteps} × strength ${strength}), got ${options.steps}`);
    }
    if (options.steps > originalSteps) throw new RangeError(`LCM steps cannot exceed original_inference_steps ${originalSteps}, got ${options.steps}`);
    this.timesteps = linspace(0, origin.length, options.steps, false).map((position) => origin[Math.floor(position)]!);
    this.cursor = new StepCursor(this.timesteps, 0);
    this.alphasCumulative = noiseSchedule(this.config).alphasCumulative;
    this.finalAlphaCumulative = this.config.setAlphaToOne ? 1 : this.alphasCumulative[0]!;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array): Float32Array {
    checkSameLength(sample, modelOutput, 'the model output');
    const index = this.cursor.indexOf(timestep);
    const last = index === this.timesteps.length - 1;
    const previousTimestep = last ? timestep : this.timesteps[index + 1]!;
    const alpha = this.alphasCumulative[timestep]!;
    const alphaPrevious = previousTimestep >= 0 ? this.alphasCumulative[previousTimestep]! : this.finalAlphaCumulative;
    const scaled = timestep * this.config.timestepScaling;
    const skip = sigmaData ** 2 / (scaled ** 2 + sigmaData ** 2);
    const out = scaled / Math.sqrt(scaled ** 2 + sigmaData ** 2);
    const rootAlpha = Math.sqrt(alpha);
    const rootBeta = Math.sqrt(1 - alpha);
    const { predictionType, clipSample, clipSampleRange } = this.config;
    const stepNoise = last ? undefined : requireNoise(noise, sample, 'LCM');
    const rootAlphaPrevious = Math.sqrt(alphaPrevious);
    const rootBetaPrevious = Math.sqrt(1 - alphaPrevious);
    const result = mapSamples(sample.length, (position) => {
      const x = sample[position]!;
      const output = modelOutput[position]!;
      let original = predictionType === 'epsilon' ? (x - rootBeta * output) / rootAlpha
        : predictionType === 'sample' ? output
          : rootAlpha * x - rootBeta * output;
      if (clipSample) original = Math.min(clipSampleRange, Math.max(-clipSampleRange, original));
      const denoised = out * original + skip * x;
      // The last step returns the denoised sample; the others re-noise it to the next timestep.
      return stepNoise === undefined ? denoised : rootAlphaPrevious * denoised + rootBetaPrevious * stepNoise[position]!;
    });
    this.cursor.advance(index);
    return result;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(original, noise, 'the noise');
    const alpha = this.alphasCumulative[timestep];
    if (!Number.isInteger(timestep) || alpha === undefined) throw new RangeError(`timestep ${timestep} is not a training timestep`);
    const rootAlpha = Math.sqrt(alpha);
    const rootBeta = Math.sqrt(1 - alpha);
    return mapSamples(original.length, (index) => rootAlpha * original[index]! + rootBeta * noise[index]!);
  }
}
