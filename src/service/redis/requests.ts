/**
 * Running a job record on a GPU worker's engine. The checks, records, refusals and output
 * building that the bots and workers share with the in-memory service are in ../job-requests.ts.
 */
import type { EngineProgress, EngineResult, ImageEngine } from '../../engine/engine.js';
import { engineImage, engineParameters, imageOf, requireFinished } from '../job-requests.js';
import type { JobRecord } from '../types.js';

/**
 * Runs a job record on an engine: generate for imagine and reroll, vary or upscale the parent's
 * image (read with `loadParent`) for the buttons.
 */
export async function runRecord(
  engine: ImageEngine,
  record: JobRecord,
  loadParent: (jobId: string) => Promise<JobRecord | undefined>,
  options: { signal: AbortSignal; onProgress: (progress: EngineProgress) => void; retentionDays: number },
): Promise<EngineResult> {
  const { signal, onProgress } = options;
  const parameters = record.parameters;
  if (record.kind === 'imagine' || record.kind === 'reroll') {
    return engine.generate({ ...engineParameters(parameters), width: record.width, height: record.height, seeds: record.seeds, chaos: parameters.chaos, signal, onProgress });
  }
  const parentId = record.parent?.jobId ?? '';
  const parent = requireFinished(await loadParent(parentId), parentId, options.retentionDays);
  const stored = imageOf(parent, record.parent?.index ?? 1);
  if (record.kind === 'variation') {
    return engine.vary({ ...engineParameters(parameters), source: await engineImage(stored), strength: record.strength ?? 'subtle', seeds: record.seeds, signal, onProgress });
  }
  const request = { prompt: parent.parameters.prompt, source: await engineImage(stored), seed: stored.seed, signal, onProgress };
  return engine.upscale(parent.parameters.negativePrompt === undefined ? request : { ...request, negativePrompt: parent.parameters.negativePrompt });
}
