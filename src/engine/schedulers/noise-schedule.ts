/**
 * The noise schedule every sampler shares (betas and cumulative alphas, stored as float32 like
 * diffusers' torch tensors), the per-class defaults of diffusers, and the numpy helpers whose exact
 * rounding the timestep schedules depend on.
 */

import { ModelError } from '../../errors.js';
import type { SchedulerConfig, SchedulerKind } from './scheduler.js';

/** A config with every field the samplers read filled in. */
export interface ResolvedSchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
  trainedBetas: number[] | undefined;
  predictionType: 'epsilon' | 'v_prediction' | 'sample';
  timestepSpacing: 'leading' | 'trailing' | 'linspace';
  stepsOffset: number;
  rescaleBetasZeroSnr: boolean;
  clipSample: boolean;
  clipSampleRange: number;
  setAlphaToOne: boolean;
  solverOrder: number;
  algorithmType: 'dpmsolver++' | 'dpmsolver';
  solverType: 'midpoint' | 'heun';
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
  finalSigmasType: 'zero' | 'sigma_min';
  useKarrasSigmas: boolean;
  lambdaMinClipped: number;
  originalInferenceSteps: number;
  timestepScaling: number;
}

/** Where errors about the config point. */
const configFile = 'scheduler_config.json';

/** diffusers' constructor defaults, by class; they differ (DDIM clips by default, LCM uses SD's betas). */
const classDefaults: Record<SchedulerKind, Partial<SchedulerConfig>> = {
  ddim: { beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', clip_sample: true, set_alpha_to_one: true, timestep_spacing: 'leading' },
  'euler-ancestral': { beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', timestep_spacing: 'linspace' },
  'dpm-solver++': { beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', timestep_spacing: 'linspace' },
  lcm: { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', clip_sample: false, set_alpha_to_one: true, timestep_spacing: 'leading' },
};

function pick<T>(config: SchedulerConfig, defaults: Partial<SchedulerConfig>, field: string, fallback: T): T {
  const value = config[field] ?? defaults[field];
  return (value === undefined || value === null ? fallback : value) as T;
}

function oneOf<T extends string>(field: string, value: unknown, accepted: readonly T[]): T {
  if (typeof value === 'string' && (accepted as readonly string[]).includes(value)) return value as T;
  throw new ModelError(configFile, `${field} to be one of ${accepted.join(', ')}`, `${field} is ${JSON.stringify(value)}`);
}

function numberField(field: string, value: unknown, check: (value: number) => boolean, expected: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) && !(field === 'lambda_min_clipped' && value === Number.NEGATIVE_INFINITY) || !check(value)) {
    throw new ModelError(configFile, `${field} to be ${expected}`, `${field} is ${JSON.stringify(value)}`);
  }
  return value;
}

function booleanField(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new ModelError(configFile, `${field} to be true or false`, `${field} is ${JSON.stringify(value)}`);
  return value;
}

/** Fills in diffusers' defaults for `kind` and checks every value the samplers read. */
export function resolveConfig(kind: SchedulerKind, config: SchedulerConfig): ResolvedSchedulerConfig {
  const defaults = classDefaults[kind];
  const get = <T>(field: string, fallback: T): T => pick(config, defaults, field, fallback);
  const trained = get<unknown>('trained_betas', undefined);
  if (trained !== undefined && !(Array.isArray(trained) && trained.every((beta) => typeof beta === 'number' && beta >= 0 && beta < 1))) {
    throw new ModelError(configFile, 'trained_betas to be a list of numbers in [0, 1)', 'it is not');
  }
  // The SDE variants differ only by the noise they add; their deterministic twins are used.
  const algorithm = oneOf('algorithm_type', get('algorithm_type', 'dpmsolver++'), ['dpmsolver++', 'dpmsolver', 'sde-dpmsolver++', 'sde-dpmsolver']);
  const resolved: ResolvedSchedulerConfig = {
    numTrainTimesteps: numberField('num_train_timesteps', get('num_train_timesteps', 1000), (value) => Number.isInteger(value) && value >= 2, 'an integer of at least 2'),
    betaStart: numberField('beta_start', get('beta_start', 0.0001), (value) => value >= 0 && value < 1, 'in [0, 1)'),
    betaEnd: numberField('beta_end', get('beta_end', 0.02), (value) => value >= 0 && value < 1, 'in [0, 1)'),
    betaSchedule: oneOf('beta_schedule', get('beta_schedule', 'linear'), ['linear', 'scaled_linear', 'squaredcos_cap_v2']),
    trainedBetas: trained as number[] | undefined,
    predictionType: oneOf('prediction_type', get('prediction_type', 'epsilon'), ['epsilon', 'v_prediction', 'sample']),
    timestepSpacing: oneOf('timestep_spacing', get('timestep_spacing', 'leading'), ['leading', 'trailing', 'linspace']),
    stepsOffset: numberField('steps_offset', get('steps_offset', 0), Number.isInteger, 'an integer'),
    rescaleBetasZeroSnr: booleanField('rescale_betas_zero_snr', get('rescale_betas_zero_snr', false)),
    clipSample: booleanField('clip_sample', get('clip_sample', false)),
    clipSampleRange: numberField('clip_sample_range', get('clip_sample_range', 1), (value) => value > 0, 'positive'),
    setAlphaToOne: booleanField('set_alpha_to_one', get('set_alpha_to_one', true)),
    solverOrder: numberField('solver_order', get('solver_order', 2), (value) => value === 1 || value === 2 || value === 3, '1, 2 or 3'),
    algorithmType: algorithm.replace('sde-', '') as 'dpmsolver++' | 'dpmsolver',
    solverType: oneOf('solver_type', get('solver_type', 'midpoint'), ['midpoint', 'heun']),
    lowerOrderFinal: booleanField('lower_order_final', get('lower_order_final', true)),
    eulerAtFinal: booleanField('euler_at_final', get('euler_at_final', false)),
    finalSigmasType: oneOf('final_sigmas_type', get('final_sigmas_type', 'zero'), ['zero', 'sigma_min']),
    useKarrasSigmas: booleanField('use_karras_sigmas', get('use_karras_sigmas', false)),
    lambdaMinClipped: numberField('lambda_min_clipped', get('lambda_min_clipped', Number.NEGATIVE_INFINITY), () => true, 'a number'),
    originalInferenceSteps: numberField('original_inference_steps', get('original_inference_steps', 50), (value) => Number.isInteger(value) && value >= 1, 'a positive integer'),
    timestepScaling: numberField('timestep_scaling', get('timestep_scaling', 10), (value) => value > 0, 'positive'),
  };
  if (resolved.trainedBetas !== undefined && resolved.trainedBetas.length !== resolved.numTrainTimesteps) {
    throw new ModelError(configFile, `${resolved.numTrainTimesteps} trained_betas`, `there are ${resolved.trainedBetas.length}`);
  }
  if (kind === 'dpm-solver++' && resolved.algorithmType === 'dpmsolver' && resolved.finalSigmasType === 'zero') {
    throw new ModelError(configFile, 'final_sigmas_type sigma_min with algorithm_type dpmsolver', 'final_sigmas_type is zero');
  }
  return resolved;
}

/**
 * Settings in `config` that these schedulers accept but do not honour, for a log line:
 * dynamic thresholding needs each image's shape, which whole-batch steps do not know.
 */
export function ignoredSettings(kind: SchedulerKind, config: SchedulerConfig): string[] {
  const ignored: string[] = [];
  if (config.thresholding === true) ignored.push('thresholding (dynamic thresholding needs per-image shapes; clip_sample applies instead where set)');
  if (kind === 'dpm-solver++' && typeof config.algorithm_type === 'string' && config.algorithm_type.startsWith('sde-')) {
    ignored.push(`algorithm_type ${config.algorithm_type} (its deterministic variant runs)`);
  }
  if (kind === 'dpm-solver++' && typeof config.variance_type === 'string') ignored.push('variance_type (pass only the predicted noise channels)');
  for (const field of ['use_exponential_sigmas', 'use_beta_sigmas', 'use_lu_lambdas', 'use_flow_sigmas']) {
    if (config[field] === true) ignored.push(field);
  }
  return ignored;
}

/** numpy's `round`: halves go to the even neighbour. */
export function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const difference = value - floor;
  if (difference > 0.5) return floor + 1;
  if (difference < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** numpy's `linspace(start, stop, count, endpoint)` in float64. */
export function linspace(start: number, stop: number, count: number, endpoint = true): number[] {
  const divisions = endpoint ? count - 1 : count;
  const step = divisions > 0 ? (stop - start) / divisions : 0;
  const values = Array.from({ length: count }, (_, index) => index * step + start);
  if (endpoint && count > 1) values[count - 1] = stop;
  return values;
}

/** numpy's `arange(start, stop, step)` for floats: length ceil((stop-start)/step), values start + i·delta. */
export function arange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  return Array.from({ length }, (_, index) => start + index * delta);
}

/** torch.linspace in float32, which the beta schedules start from. */
function float32Linspace(start: number, stop: number, count: number): Float64Array {
  return Float64Array.from(linspace(start, stop, count), Math.fround);
}

/** diffusers' `betas_for_alpha_bar` with the cosine ("squaredcos_cap_v2") transform. */
function cosineBetas(count: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (time: number): number => Math.cos(((time + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const betas = new Float64Array(count);
  for (let index = 0; index < count; index += 1) {
    betas[index] = Math.fround(Math.min(1 - alphaBar((index + 1) / count) / alphaBar(index / count), maxBeta));
  }
  return betas;
}

/** diffusers' `rescale_zero_terminal_snr`: shifts the schedule so the last step is pure noise. */
function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const roots = new Float64Array(betas.length);
  let product = 1;
  for (let index = 0; index < betas.length; index += 1) {
    product *= 1 - betas[index]!;
    roots[index] = Math.sqrt(product);
  }
  const first = roots[0]!;
  const last = roots[roots.length - 1]!;
  const rescaled = new Float64Array(betas.length);
  let previous = 1;
  for (let index = 0; index < roots.length; index += 1) {
    const alphaBar = ((roots[index]! - last) * first / (first - last)) ** 2;
    rescaled[index] = Math.fround(1 - (index === 0 ? alphaBar : alphaBar / previous));
    previous = alphaBar;
  }
  return rescaled;
}

/** The training noise schedule: βₜ and ᾱₜ = ∏(1 − βₛ), float32-rounded like diffusers' tensors. */
export interface NoiseSchedule {
  betas: Float64Array;
  alphasCumulative: Float64Array;
}

export function noiseSchedule(config: ResolvedSchedulerConfig): NoiseSchedule {
  const count = config.numTrainTimesteps;
  let betas: Float64Array;
  if (config.trainedBetas !== undefined) {
    betas = Float64Array.from(config.trainedBetas, Math.fround);
  } else if (config.betaSchedule === 'linear') {
    betas = float32Linspace(config.betaStart, config.betaEnd, count);
  } else if (config.betaSchedule === 'scaled_linear') {
    betas = float32Linspace(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), count).map((root) => Math.fround(root * root));
  } else {
    betas = cosineBetas(count);
  }
  if (config.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumulative = new Float64Array(count);
  // torch accumulates a float32 cumprod in double on the CPU, then stores float32.
  let product = 1;
  for (let index = 0; index < count; index += 1) {
    product *= Math.fround(1 - betas[index]!);
    alphasCumulative[index] = Math.fround(product);
  }
  return { betas, alphasCumulative };
}

/**
 * The start of the kept timesteps for img2img, as diffusers' `get_timesteps`:
 * `steps - min(floor(steps · strength), steps)`.
 */
export function strengthStart(steps: number, strength: number): number {
  const kept = Math.min(Math.floor(steps * strength), steps);
  return Math.max(steps - kept, 0);
}

/** Checks the options every sampler takes. */
export function checkOptions(steps: number, strength: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > numTrainTimesteps) {
    throw new RangeError(`steps must be an integer from 1 to ${numTrainTimesteps}, got ${steps}`);
  }
  if (!(strength >= 0 && strength <= 1)) throw new RangeError(`strength must be between 0 and 1, got ${strength}`);
}

/** numpy's `interp` on the grid 0, 1, …, values.length − 1. */
export function interpolate(position: number, values: ArrayLike<number>): number {
  if (position <= 0) return values[0]!;
  const last = values.length - 1;
  if (position >= last) return values[last]!;
  const low = Math.floor(position);
  const weight = position - low;
  return values[low]! + (values[low + 1]! - values[low]!) * weight;
}

/** A new array of `sample.length` values computed element-wise in float64. */
export function mapSamples(length: number, compute: (index: number) => number): Float32Array {
  const result = new Float32Array(length);
  for (let index = 0; index < length; index += 1) result[index] = compute(index);
  return result;
}
