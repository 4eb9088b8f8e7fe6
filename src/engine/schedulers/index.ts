/**
 * Diffusion samplers configured from diffusers' `scheduler_config.json`: DDIM, Euler ancestral,
 * DPM-Solver++ (2M by default) and LCM. Pure TypeScript on flat Float32Array batches.
 */

import { readFile } from 'node:fs/promises';
import { ModelError } from '../../errors.js';
import { DdimScheduler } from './ddim.js';
import { DpmSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { EulerAncestralScheduler } from './euler-ancestral.js';
import { LcmScheduler } from './lcm.js';
import type { Scheduler, SchedulerConfig, SchedulerKind, SchedulerOptions } from './scheduler.js';

export type { Scheduler, SchedulerConfig, SchedulerKind, SchedulerOptions } from './scheduler.js';
export { ignoredSettings } from './noise-schedule.js';
export { DdimScheduler } from './ddim.js';
export { DpmSolverMultistepScheduler } from './dpm-solver-multistep.js';
export { EulerAncestralScheduler } from './euler-ancestral.js';
export { LcmScheduler } from './lcm.js';

/** Every kind, for option lists and validation. */
export const schedulerKinds: readonly SchedulerKind[] = ['ddim', 'euler-ancestral', 'dpm-solver++', 'lcm'];

/** Reads a diffusers `scheduler_config.json`; a missing or malformed file is a ModelError naming it. */
export async function loadSchedulerConfig(file: string): Promise<SchedulerConfig> {
  const expected = 'a diffusers scheduler_config.json (a JSON object)';
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ModelError(file, expected, error instanceof Error ? error.message : String(error), { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ModelError(file, expected, error instanceof Error ? error.message : String(error), { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ModelError(file, expected, 'it is not a JSON object');
  return parsed as SchedulerConfig;
}

/**
 * A fresh sampler for one run. Fields missing from `config` take the defaults of the diffusers
 * class for `kind`; invalid values throw a ModelError, impossible options a RangeError.
 */
export function createScheduler(kind: SchedulerKind, config: SchedulerConfig, options: SchedulerOptions): Scheduler {
  switch (kind) {
    case 'ddim':
      return new DdimScheduler(config, options);
    case 'euler-ancestral':
      return new EulerAncestralScheduler(config, options);
    case 'dpm-solver++':
      return new DpmSolverMultistepScheduler(config, options);
    case 'lcm':
      return new LcmScheduler(config, options);
    default:
      throw new RangeError(`unknown scheduler kind ${JSON.stringify(kind)}; expected one of ${schedulerKinds.join(', ')}`);
  }
}
