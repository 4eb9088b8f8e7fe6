import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelError } from '../../../src/errors.js';
import { Random } from '../../../src/engine/random.js';
import {
  createScheduler, ignoredSettings, loadSchedulerConfig, schedulerKinds, type Scheduler, type SchedulerConfig, type SchedulerKind,
} from '../../../src/engine/schedulers/index.js';
import { arange, linspace, roundHalfEven } from '../../../src/engine/schedulers/noise-schedule.js';

/** Stable Diffusion 1.5's scheduler_config.json (a PNDMScheduler file). */
const stableDiffusion: SchedulerConfig = {
  _class_name: 'PNDMScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, clip_sample: false,
  num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null,
};

function gaussian(seed: number, length: number): Float32Array {
  return new Random(seed).fillGaussian(new Float32Array(length));
}

/** Runs a whole loop with `model`; step noise comes from one generator per run. */
function sample(scheduler: Scheduler, start: Float32Array, model: (input: Float32Array, timestep: number) => Float32Array, seed = 9): Float32Array {
  const random = new Random(seed);
  let current = start;
  for (const timestep of scheduler.timesteps) {
    const output = model(scheduler.scaleModelInput(current, timestep), timestep);
    const noise = scheduler.needsNoise ? random.fillGaussian(new Float32Array(current.length)) : undefined;
    current = scheduler.step(output, timestep, current, noise);
  }
  return current;
}

describe('timestep schedules that diffusers users know', () => {
  test('Stable Diffusion with DDIM, 50 steps: 981, 961, …, 1', () => {
    const scheduler = createScheduler('ddim', stableDiffusion, { steps: 50 });
    expect(scheduler.timesteps).toHaveLength(50);
    expect(scheduler.timesteps.slice(0, 3)).toEqual([981, 961, 941]);
    expect(scheduler.timesteps.at(-1)).toBe(1);
  });

  test('Euler ancestral\'s initial sigma for Stable Diffusion: σ(999) = 14.6146, or √(σ² + 1) with leading spacing', () => {
    expect(createScheduler('euler-ancestral', { ...stableDiffusion, timestep_spacing: 'linspace' }, { steps: 30 }).initNoiseSigma).toBeCloseTo(14.6146, 3);
    const leading = createScheduler('euler-ancestral', { ...stableDiffusion, timestep_spacing: 'leading', steps_offset: 0 }, { steps: 1000 });
    expect(leading.timesteps[0]).toBe(999);
    expect(leading.initNoiseSigma).toBeCloseTo(14.6488, 3);
  });

  test('LCM, 4 steps: 999, 759, 499, 259', () => {
    expect(createScheduler('lcm', {}, { steps: 4 }).timesteps).toEqual([999, 759, 499, 259]);
  });

  test('DPM-Solver++ with linspace spacing starts at 999 and never reaches 0', () => {
    const timesteps = createScheduler('dpm-solver++', stableDiffusion, { steps: 20 }).timesteps;
    expect(timesteps[0]).toBe(999);
    expect(timesteps).toHaveLength(20);
    expect(Math.min(...timesteps)).toBeGreaterThan(0);
  });

  test('Euler timesteps may be fractional', () => {
    expect(createScheduler('euler-ancestral', { timestep_spacing: 'linspace' }, { steps: 7 }).timesteps).toContain(832.5);
  });
});

describe('every scheduler', () => {
  test.each(schedulerKinds.map((kind) => [kind]))('%s lands on x₀ when the model knows it', (kind) => {
    // With prediction_type "sample" an oracle returns the clean sample; every sampler must end there.
    const clean = gaussian(1, 32).map((value) => value * 0.5);
    // set_alpha_to_one: DDIM's last step then goes all the way to ᾱ = 1.
    const config: SchedulerConfig = { ...stableDiffusion, prediction_type: 'sample', set_alpha_to_one: true };
    const scheduler = createScheduler(kind, config, { steps: kind === 'lcm' ? 4 : 12 });
    const start = gaussian(2, 32).map((value) => value * scheduler.initNoiseSigma);
    const result = sample(scheduler, start, () => clean);
    for (let index = 0; index < clean.length; index += 1) expect(result[index]).toBeCloseTo(clean[index]!, 3);
  });

  test.each(schedulerKinds.map((kind) => [kind]))('%s never mutates its inputs and handles batches element by element', (kind) => {
    const config: SchedulerConfig = { ...stableDiffusion, prediction_type: 'epsilon' };
    const batch = createScheduler(kind, config, { steps: 6 });
    const single = createScheduler(kind, config, { steps: 6 });
    const first = gaussian(3, 8);
    const second = gaussian(4, 8);
    const both = new Float32Array([...first, ...second]);
    const copy = both.slice();
    const timestep = batch.timesteps[0]!;
    const output = gaussian(5, 16);
    const outputCopy = output.slice();
    const noise = gaussian(6, 16);
    const stepped = batch.step(output, timestep, both, noise);
    expect(both).toEqual(copy);
    expect(output).toEqual(outputCopy);
    const alone = single.step(output.slice(0, 8), timestep, first, noise.slice(0, 8));
    expect(Array.from(stepped.slice(0, 8))).toEqual(Array.from(alone));
  });

  test.each(schedulerKinds.map((kind) => [kind]))('%s refuses arrays of the wrong length', (kind) => {
    const scheduler = createScheduler(kind, {}, { steps: 4, eta: 1 });
    const timestep = scheduler.timesteps[0]!;
    expect(() => scheduler.step(new Float32Array(3), timestep, new Float32Array(4), new Float32Array(4))).toThrow(RangeError);
    expect(() => scheduler.addNoise(new Float32Array(3), new Float32Array(4), timestep)).toThrow(RangeError);
  });

  test.each(schedulerKinds.map((kind) => [kind]))('%s checks steps and strength', (kind) => {
    expect(() => createScheduler(kind, {}, { steps: 0 })).toThrow(RangeError);
    expect(() => createScheduler(kind, {}, { steps: 2.5 })).toThrow(RangeError);
    expect(() => createScheduler(kind, {}, { steps: 4, strength: 1.5 })).toThrow(RangeError);
    expect(() => createScheduler(kind, {}, { steps: 4, strength: Number.NaN })).toThrow(RangeError);
  });

  test.each(schedulerKinds.map((kind) => [kind]))('%s turns bad config values into model errors', (kind) => {
    expect(() => createScheduler(kind, { beta_schedule: 'sigmoid' }, { steps: 4 })).toThrow(ModelError);
    expect(() => createScheduler(kind, { prediction_type: 'flow' }, { steps: 4 })).toThrow(/prediction_type/);
    expect(() => createScheduler(kind, { num_train_timesteps: '1000' as unknown as number }, { steps: 4 })).toThrow(ModelError);
    expect(() => createScheduler(kind, { trained_betas: [0.1, 0.2] }, { steps: 4 })).toThrow(ModelError);
  });

  test('an unknown kind is refused', () => {
    expect(() => createScheduler('pndm' as SchedulerKind, {}, { steps: 4 })).toThrow(/ddim, euler-ancestral, dpm-solver\+\+, lcm/);
  });
});

describe('img2img strength', () => {
  test('keeps the last floor(strength · steps) timesteps, as diffusers\' get_timesteps', () => {
    for (const kind of ['ddim', 'euler-ancestral', 'dpm-solver++'] as const) {
      const full = createScheduler(kind, stableDiffusion, { steps: 10 }).timesteps;
      expect(createScheduler(kind, stableDiffusion, { steps: 10, strength: 0.75 }).timesteps).toEqual(full.slice(3));
      expect(createScheduler(kind, stableDiffusion, { steps: 10, strength: 0.05 }).timesteps).toEqual([]);
      expect(createScheduler(kind, stableDiffusion, { steps: 10, strength: 1 }).timesteps).toEqual(full);
    }
  });

  test('LCM takes all its steps from the first strength of the distillation schedule', () => {
    expect(createScheduler('lcm', {}, { steps: 4, strength: 0.5 }).timesteps).toEqual([499, 379, 259, 139]);
    expect(() => createScheduler('lcm', {}, { steps: 30, strength: 0.5 })).toThrow(/at most 25 steps/);
  });

  test('addNoise agrees between the variance-preserving and the σ parametrisations', () => {
    // DDIM's √ᾱ·x + √(1−ᾱ)·n equals √ᾱ times Euler's x + σ·n, at a timestep both contain.
    const ddim = createScheduler('ddim', { ...stableDiffusion, timestep_spacing: 'trailing' }, { steps: 10 });
    const euler = createScheduler('euler-ancestral', { ...stableDiffusion, timestep_spacing: 'trailing' }, { steps: 10 });
    const timestep = 599;
    expect(ddim.timesteps).toContain(timestep);
    expect(euler.timesteps).toContain(timestep);
    const original = gaussian(7, 16);
    const noise = gaussian(8, 16);
    const variancePreserving = ddim.addNoise(original, noise, timestep);
    const exploding = euler.addNoise(original, noise, timestep);
    const sigma = (exploding[0]! - original[0]!) / noise[0]!;
    const rootAlpha = 1 / Math.sqrt(sigma * sigma + 1);
    for (let index = 0; index < 16; index += 1) expect(variancePreserving[index]).toBeCloseTo(exploding[index]! * rootAlpha, 5);
  });
});

describe('noise', () => {
  test('only DDIM with eta > 0, Euler ancestral and LCM need it', () => {
    expect(createScheduler('ddim', {}, { steps: 4 }).needsNoise).toBe(false);
    expect(createScheduler('ddim', {}, { steps: 4, eta: 0.5 }).needsNoise).toBe(true);
    expect(createScheduler('euler-ancestral', {}, { steps: 4 }).needsNoise).toBe(true);
    expect(createScheduler('dpm-solver++', {}, { steps: 4 }).needsNoise).toBe(false);
    expect(createScheduler('lcm', {}, { steps: 4 }).needsNoise).toBe(true);
  });

  test('a step that needs noise and gets none throws', () => {
    const scheduler = createScheduler('euler-ancestral', {}, { steps: 4 });
    expect(() => scheduler.step(new Float32Array(4), scheduler.timesteps[0]!, new Float32Array(4))).toThrow(/needs noise/);
  });

  test('the same noise gives the same images; different noise, different ones', () => {
    const run = (seed: number): Float32Array => {
      const scheduler = createScheduler('euler-ancestral', stableDiffusion, { steps: 5 });
      return sample(scheduler, gaussian(1, 16).map((value) => value * scheduler.initNoiseSigma), (input) => input.map((value) => value * 0.3), seed);
    };
    expect(Array.from(run(1))).toEqual(Array.from(run(1)));
    expect(Array.from(run(1))).not.toEqual(Array.from(run(2)));
  });
});

describe('DPM-Solver++ state', () => {
  test('steps must run in order', () => {
    const scheduler = createScheduler('dpm-solver++', {}, { steps: 5 });
    const values = new Float32Array(4);
    expect(() => scheduler.step(values, scheduler.timesteps[2]!, values)).toThrow(/in order/);
    expect(() => scheduler.step(values, 12345, values)).toThrow(RangeError);
  });
});

describe('loadSchedulerConfig', () => {
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'imagine-scheduler-'));
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  test('reads a diffusers file and feeds createScheduler', async () => {
    const file = join(folder, 'scheduler_config.json');
    await writeFile(file, JSON.stringify({ ...stableDiffusion, _diffusers_version: '0.6.0' }));
    const config = await loadSchedulerConfig(file);
    expect(config._class_name).toBe('PNDMScheduler');
    expect(createScheduler('ddim', config, { steps: 50 }).timesteps[0]).toBe(981);
  });

  test('a missing, malformed or non-object file is a ModelError naming it', async () => {
    await expect(loadSchedulerConfig(join(folder, 'absent.json'))).rejects.toThrow(ModelError);
    const broken = join(folder, 'broken.json');
    await writeFile(broken, '{"beta_start": ');
    await expect(loadSchedulerConfig(broken)).rejects.toThrow(/broken\.json/);
    await writeFile(broken, '[1, 2]');
    await expect(loadSchedulerConfig(broken)).rejects.toThrow(ModelError);
  });

  test('settings that are accepted but ignored are listed', () => {
    expect(ignoredSettings('ddim', { thresholding: true })[0]).toMatch(/thresholding/);
    expect(ignoredSettings('dpm-solver++', { algorithm_type: 'sde-dpmsolver++' })[0]).toMatch(/sde-dpmsolver\+\+/);
    expect(ignoredSettings('ddim', stableDiffusion)).toEqual([]);
  });
});

describe('numpy helpers', () => {
  test('round halves to even, like numpy', () => {
    expect([0.5, 1.5, 2.5, -1.5, 498.5, 499.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -2, 498, 500, 2, 3]);
  });

  test('linspace and arange follow numpy', () => {
    expect(linspace(0, 999, 4)).toEqual([0, 333, 666, 999]);
    expect(linspace(0, 50, 4, false)).toEqual([0, 12.5, 25, 37.5]);
    expect(arange(1000, 0, -250)).toEqual([1000, 750, 500, 250]);
    expect(arange(1000, 0, -1000 / 3).map(roundHalfEven)).toEqual([1000, 667, 333]);
  });
});
