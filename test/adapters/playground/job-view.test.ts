import { altTextFor, ariaLabelFor, captionFor, jobView } from '../../../adapters/playground/job-view.js';
import { buttonRowsFor } from '../../../commands/definitions.js';
import { ErrorCode, JobError } from '../../../src/errors.js';
import type { JobRecord } from '../../../src/service/types.js';
import { jobRecord } from '../../commands/job-record.js';

function record(extra: Partial<JobRecord> = {}): JobRecord {
  return jobRecord({
    id: 'job123',
    requester: { platform: 'playground', userId: 'local' },
    parameters: { prompt: 'a red <b>circle</b>', aspectRatio: '1:1', seed: 9, chaos: 0 },
    seeds: [1, 2, 3, 4],
    width: 32,
    height: 32,
    createdAt: 1000,
    finishedAt: 2000,
    images: [1, 2, 3, 4].map((seed) => ({ png: new Uint8Array([1]), width: 32, height: 32, seed })),
    ...extra,
  });
}

describe('jobView', () => {
  test('a finished grid has its image URL, the grid size, alt text with the prompt and nine buttons with accessible names', () => {
    const view = jobView(record(), { width: 70, height: 70 });
    expect(view).toMatchObject({ id: 'job123', status: 'completed', prompt: 'a red <b>circle</b>', imageUrl: '/jobs/job123/image', imageWidth: 70, imageHeight: 70 });
    expect(view.alt).toBe('Grid of 4 images for the prompt “a red <b>circle</b>”');
    expect(view.buttons.flat().map((button) => button.ariaLabel)).toEqual([
      'U1: upscale image 1', 'U2: upscale image 2', 'U3: upscale image 3', 'U4: upscale image 4',
      'V1: variations of image 1', 'V2: variations of image 2', 'V3: variations of image 3', 'V4: variations of image 4',
      'Re-roll: four new images from the same prompt',
    ]);
    expect(view.error).toBeUndefined();
  });

  test('the caption is the shared plain-text caption without a dangling dash', () => {
    const caption = captionFor(record());
    expect(caption).toContain('a red <b>circle</b>');
    expect(caption).toContain('--seed 9');
    expect(caption).not.toMatch(/—\s*$/);
    expect(captionFor(record({ kind: 'upscale', parent: { jobId: 'p', index: 2 } }))).toMatch(/ — Image #2 upscaled$/);
  });

  test('upscales and variations say which image they came from', () => {
    const upscale = record({ kind: 'upscale', parent: { jobId: 'p', index: 3 }, images: [{ png: new Uint8Array([1]), width: 64, height: 64, seed: 1 }] });
    expect(altTextFor(upscale)).toBe('Upscaled image 3 for the prompt “a red <b>circle</b>”');
    expect(jobView(upscale)).toMatchObject({ imageWidth: 64, imageHeight: 64 });
    const variation = record({ kind: 'variation', parent: { jobId: 'p', index: 1 }, strength: 'subtle' });
    expect(altTextFor(variation)).toBe('Grid of 4 subtle variations of image 1 for the prompt “a red <b>circle</b>”');
    const labels = buttonRowsFor(upscale).flat().map(ariaLabelFor);
    expect(labels).toEqual(['Vary (Subtle)', 'Vary (Strong)', 'Re-roll: four new images from the same prompt']);
  });

  test('waiting and failed jobs have no image; failures carry the user-facing text and a re-roll', () => {
    const waiting = jobView(record({ status: 'queued', images: undefined, finishedAt: undefined }));
    expect(waiting.imageUrl).toBeUndefined();
    expect(waiting.buttons).toEqual([]);
    const failed = jobView(record({ status: 'cancelled', images: undefined, error: new JobError(ErrorCode.Cancelled, 'The job was cancelled.', 'job123').toJSON() }));
    expect(failed.imageUrl).toBeUndefined();
    expect(failed.error).toBe('🛑 The job was cancelled.');
    expect(failed.buttons.flat().map((button) => button.label)).toEqual(['🔄']);
  });
});
