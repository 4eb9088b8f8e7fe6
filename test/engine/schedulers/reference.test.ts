/**
 * Replays the sampling runs of test/fixtures/schedulers/make-reference.py (an independent numpy
 * transcription of diffusers' schedulers) and compares timesteps and every intermediate sample.
 */

import { readFileSync } from 'node:fs';
import { createScheduler, type SchedulerConfig, type SchedulerKind } from '../../../src/engine/schedulers/index.js';

interface ReferenceCase {
  name: string;
  kind: SchedulerKind;
  config: SchedulerConfig;
  options: { steps: number; eta: number; strength: number };
  timesteps: number[];
  initNoiseSigma: number;
  needsNoise: boolean;
  initial: number[];
  noise: number[];
  original: number[];
  start: number[];
  samples: number[][];
}

const fixtureNames = ['ddim', 'euler-ancestral', 'dpm-solver-plus-plus', 'lcm'];
const cases: ReferenceCase[] = fixtureNames.flatMap((name) => {
  const file = new URL(`../../fixtures/schedulers/${name}.json`, import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { cases: ReferenceCase[] }).cases;
});

/** The fake model of make-reference.py. */
function fakeModel(input: Float32Array, timestep: number): Float32Array {
  const factor = 0.5 * Math.cos(timestep / 300);
  return input.map((value) => value * factor + 0.1);
}

/** The stored noise rotated right by `shift`, like numpy's roll. */
function rotate(values: number[], shift: number): Float32Array {
  const length = values.length;
  return Float32Array.from({ length }, (_, index) => values[(((index - shift) % length) + length) % length]!);
}

/** Largest |actual − expected| / max(|expected|, 1e-2): relative, with a floor for values near 0. */
function worstRelativeError(actual: ArrayLike<number>, expected: readonly number[]): number {
  let worst = 0;
  for (let index = 0; index < expected.length; index += 1) {
    const error = Math.abs(actual[index]! - expected[index]!) / Math.max(Math.abs(expected[index]!), 1e-2);
    if (!(error <= worst)) worst = Number.isNaN(error) ? Number.POSITIVE_INFINITY : error;
  }
  return worst;
}

const tolerance = 1e-4;

describe('schedulers against the numpy reference', () => {
  test('the fixtures cover every kind, both DDIM etas, img2img and 4- and 10-step runs', () => {
    expect(new Set(cases.map((entry) => entry.kind))).toEqual(new Set(['ddim', 'euler-ancestral', 'dpm-solver++', 'lcm']));
    expect(cases.some((entry) => entry.kind === 'ddim' && entry.options.eta === 1)).toBe(true);
    expect(cases.some((entry) => entry.kind === 'ddim' && entry.options.eta === 0)).toBe(true);
    for (const kind of ['ddim', 'euler-ancestral', 'dpm-solver++', 'lcm']) {
      expect(cases.some((entry) => entry.kind === kind && entry.options.strength < 1)).toBe(true);
    }
    expect(cases.some((entry) => entry.options.steps === 4)).toBe(true);
    expect(cases.some((entry) => entry.options.steps === 10)).toBe(true);
  });

  test.each(cases.map((entry) => [`${entry.kind} ${entry.name}`, entry] as const))('%s', (_label, entry) => {
    const scheduler = createScheduler(entry.kind, entry.config, entry.options);
    expect(scheduler.timesteps).toEqual(entry.timesteps);
    expect(scheduler.initNoiseSigma).toBeCloseTo(entry.initNoiseSigma, 4);
    expect(scheduler.needsNoise).toBe(entry.needsNoise);

    let sample: Float32Array;
    if (entry.options.strength < 1) {
      sample = scheduler.addNoise(Float32Array.from(entry.original), Float32Array.from(entry.initial), scheduler.timesteps[0]!);
    } else {
      sample = Float32Array.from(entry.initial, (value) => value * scheduler.initNoiseSigma);
    }
    expect(worstRelativeError(sample, entry.start)).toBeLessThan(tolerance);

    const errors: number[] = [];
    for (const [stepIndex, timestep] of scheduler.timesteps.entries()) {
      const input = scheduler.scaleModelInput(sample, timestep);
      const output = fakeModel(input, timestep);
      const noise = scheduler.needsNoise ? rotate(entry.noise, stepIndex) : undefined;
      sample = scheduler.step(output, timestep, sample, noise);
      errors.push(worstRelativeError(sample, entry.samples[stepIndex]!));
    }
    expect(errors).toHaveLength(entry.samples.length);
    if (process.env.SHOW_ERRORS) console.log(entry.name, Math.max(...errors));
    expect(Math.max(...errors)).toBeLessThan(tolerance);
  });
});
