/**
 * The parts of a generation request that do not depend on where the queue lives, shared by the
 * in-memory service (generation-service.ts) and the Redis scale-out (redis/): checking the
 * parameters against the engine's capabilities, building job records, the user-facing refusals,
 * the engine's view of a request and building the file a platform posts.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/config.js';
import type { EngineCapabilities, EngineImage, EngineResult } from '../engine/engine.js';
import { deriveSeed } from '../engine/random.js';
import { ErrorCode, ImagineError, JobError, LimitError, UserError } from '../errors.js';
import { decodeImage, encodeImage, extensionFor, fitToLimit, type EncodedImage } from '../image/encode.js';
import { composeGrid } from '../image/grid.js';
import type { ImagineParameters, JobKind, JobOutput, JobRecord, Requester, StoredImage } from './types.js';

/** Per-user limits. */
export interface UserLimits {
  ratePerMinute: number;
  burst: number;
  maxRunning: number;
  maxQueued: number;
}

/** A job's expected run time before any has been measured, by kind, in milliseconds. */
export const defaultJobDurationsMs: Record<JobKind, number> = { imagine: 20_000, reroll: 20_000, variation: 20_000, upscale: 15_000 };

/** `platform:userId`, the key of a user's limits. */
export const userKeyOf = (requester: Requester): string => `${requester.platform}:${requester.userId}`;

/** The configured per-user limits, with the overrides `limitsFor` gives some users. */
export function userLimits(config: Config, requester: Requester, limitsFor?: (requester: Requester) => Partial<UserLimits> | undefined): UserLimits {
  const base: UserLimits = {
    ratePerMinute: config.rateLimitPerMinute,
    burst: config.rateLimitBurst,
    maxRunning: config.maxRunningPerUser,
    maxQueued: config.maxQueuedPerUser,
  };
  return { ...base, ...limitsFor?.(requester) };
}

/** True when the requester started the job or is an admin (by flag or by ADMINS). */
export function mayControl(config: Config, requester: Requester, record: JobRecord): boolean {
  const key = userKeyOf(requester);
  return key === userKeyOf(record.requester) || requester.isAdmin === true || config.admins.includes(key);
}

/** "12 s" or "3 min", for messages that say when to retry. */
export function formatWait(ms: number): string {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  if (seconds < 90) return `${seconds} s`;
  return `${Math.ceil(seconds / 60)} min`;
}

/** A copy of a record that a listener may keep while the original changes. */
export function copyRecord(record: JobRecord): JobRecord {
  return { ...record, requester: { ...record.requester }, parameters: { ...record.parameters }, seeds: [...record.seeds], ...(record.images ? { images: [...record.images] } : {}) };
}

/** The four seeds of a grid. */
export const gridSeeds = (seed: number): number[] => [0, 1, 2, 3].map((index) => deriveSeed(seed, index));

/** Refuses parameters the engine cannot draw, with the same messages as the in-memory service. */
export function checkParameters(capabilities: EngineCapabilities, parameters: ImagineParameters): ImagineParameters {
  const prompt = parameters.prompt?.trim() ?? '';
  if (prompt === '') throw new UserError(ErrorCode.PromptEmpty, 'Describe what to draw, e.g. `/imagine a red circle on a blue background`.', { field: 'prompt' });
  if (!capabilities.sizes[parameters.aspectRatio]) {
    throw new UserError(ErrorCode.FlagInvalid, `The aspect ratio ${parameters.aspectRatio} is not available; use one of ${Object.keys(capabilities.sizes).join(', ')}.`, { field: 'ar' });
  }
  if (!Number.isInteger(parameters.seed) || parameters.seed < 0 || parameters.seed > 0xffffffff) {
    throw new UserError(ErrorCode.FlagInvalid, 'The seed must be a whole number from 0 to 4294967295.', { field: 'seed' });
  }
  const { minSteps, maxSteps, minGuidance, maxGuidance } = capabilities.limits;
  if (parameters.steps !== undefined && (!Number.isInteger(parameters.steps) || parameters.steps < minSteps || parameters.steps > maxSteps)) {
    throw new UserError(ErrorCode.FlagInvalid, `Steps must be a whole number from ${minSteps} to ${maxSteps}.`, { field: 'steps' });
  }
  if (parameters.guidance !== undefined && (!Number.isFinite(parameters.guidance) || parameters.guidance < minGuidance || parameters.guidance > maxGuidance)) {
    throw new UserError(ErrorCode.FlagInvalid, `Guidance must be a number from ${minGuidance} to ${maxGuidance}.`, { field: 'guidance' });
  }
  const chaos = parameters.chaos ?? 0;
  if (!Number.isFinite(chaos) || chaos < 0 || chaos > 100) throw new UserError(ErrorCode.FlagInvalid, 'Chaos must be a number from 0 to 100.', { field: 'chaos' });
  return { ...parameters, prompt, chaos };
}

/** Refuses an image number outside 1..count. */
export function checkIndex(index: number, count: number): void {
  if (!Number.isInteger(index) || index < 1 || index > count) {
    throw new UserError(ErrorCode.InvalidAction, `Pick an image from 1 to ${count}.`, { field: 'index' });
  }
}

/** A new record in state `queued`. */
export function newRecord(kind: JobKind, requester: Requester, parameters: ImagineParameters, seeds: number[], size: { width: number; height: number }, engine: string, now: number): JobRecord {
  return {
    id: randomBytes(9).toString('base64url'),
    kind,
    status: 'queued',
    requester: { ...requester },
    parameters: { ...parameters },
    seeds,
    width: size.width,
    height: size.height,
    engine,
    createdAt: now,
  };
}

/** "7 days" or "12 hours". */
export function formatDays(days: number): string {
  if (days >= 1) return `${Number.isInteger(days) ? days : days.toFixed(1)} day${days === 1 ? '' : 's'}`;
  return `${Math.max(1, Math.round(days * 24))} hours`;
}

/**
 * The finished job a button refers to, or the error that explains why there is none. `interrupted`:
 * an unfinished record will never finish (it was cut off by a crash of an earlier process).
 */
export function requireFinished(record: JobRecord | undefined, jobId: string, retentionDays: number, options: { interrupted?: boolean } = {}): JobRecord {
  if (!record) {
    throw new JobError(ErrorCode.JobNotFound, `That job has expired (jobs are kept for ${formatDays(retentionDays)}) or never existed. Run /imagine again to make new images.`, jobId);
  }
  if (record.status !== 'completed' || !record.images?.length) {
    const unfinished = record.status === 'queued' || record.status === 'running';
    const why = unfinished && !options.interrupted
      ? 'is not finished yet; wait for its images, then press the button again'
      : unfinished
        ? 'was interrupted by a restart before it finished, so it has no images to use; run /imagine again'
        : `${record.status === 'cancelled' ? 'was cancelled' : 'failed'}, so it has no images to use; run /imagine again`;
    throw new JobError(ErrorCode.JobNotReady, `That job ${why}.`, jobId);
  }
  return record;
}

/** The stored image a button refers to (1-based). */
export function imageOf(record: JobRecord, index: number): StoredImage {
  const images = record.images ?? [];
  checkIndex(index, images.length);
  return images[index - 1]!;
}

/** Refused because the service is stopping. */
export function shuttingDownError(): ImagineError {
  return new ImagineError(ErrorCode.ShuttingDown, 'The bot is restarting and not taking new work right now. Please try again in a minute.', { userFacing: true });
}

/** Refused by the token bucket. */
export function rateLimitedError(limits: { ratePerMinute: number; burst: number }, retryAfterMs: number): LimitError {
  return new LimitError(ErrorCode.RateLimited, `You're starting jobs too quickly (the limit is ${limits.ratePerMinute} a minute, ${limits.burst} at once). You can start another job in ${formatWait(retryAfterMs)}.`, retryAfterMs);
}

/** Refused because the user's running jobs fill the limit and none may queue. */
export function tooManyRunningError(running: number, maxRunning: number, retryAfterMs: number): LimitError {
  const jobs = running === 1 ? 'a job' : `${running} jobs`;
  return new LimitError(ErrorCode.TooManyRunning, `You already have ${jobs} running (the limit is ${maxRunning}). You can start another job in ${formatWait(retryAfterMs)}, when it finishes.`, retryAfterMs);
}

/** Refused because the user's waiting jobs fill the limit. */
export function tooManyQueuedError(waiting: number, maxQueued: number, retryAfterMs: number): LimitError {
  return new LimitError(ErrorCode.TooManyQueued, `You already have ${waiting} job${waiting === 1 ? '' : 's'} waiting (the limit is ${maxQueued}). You can start another job in ${formatWait(retryAfterMs)}, when the first of them starts.`, retryAfterMs);
}

/** The error a stopped job reports, by why it was stopped. */
export function abortError(reason: 'cancelled' | 'timeout' | 'shutdown', jobId: string, options: { timeoutMs?: number; started?: boolean } = {}): JobError {
  switch (reason) {
    case 'timeout':
      return new JobError(ErrorCode.TimedOut, `The job took longer than ${formatWait(options.timeoutMs ?? 0)} and was stopped. Try again, perhaps with fewer steps.`, jobId);
    case 'shutdown':
      return new JobError(ErrorCode.ShuttingDown, options.started
        ? 'The bot restarted before your job finished. Please run the command again in a minute.'
        : 'The bot is restarting, so your job was not started. Please run the command again in a minute.', jobId);
    default:
      return new JobError(ErrorCode.Cancelled, 'The job was cancelled.', jobId);
  }
}

/** The text settings of a request, as the engine takes them. */
export function engineParameters(parameters: ImagineParameters): { prompt: string; negativePrompt?: string; steps?: number; guidance?: number } {
  const result: { prompt: string; negativePrompt?: string; steps?: number; guidance?: number } = { prompt: parameters.prompt };
  if (parameters.negativePrompt !== undefined) result.negativePrompt = parameters.negativePrompt;
  if (parameters.steps !== undefined) result.steps = parameters.steps;
  if (parameters.guidance !== undefined) result.guidance = parameters.guidance;
  return result;
}

/** A stored image decoded for the engine. */
export async function engineImage(stored: StoredImage): Promise<EngineImage> {
  const image: EngineImage = { image: await decodeImage(stored.png), seed: stored.seed };
  if (stored.artifact) image.artifact = stored.artifact;
  return image;
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40).replace(/-+$/g, '') || 'image';
}

/**
 * Encodes an engine result: lossless PNGs (with artifacts) into the record, and the file for the
 * platform (a 2×2 grid, or the single upscaled image) fitted under `uploadLimitBytes`.
 */
export async function buildOutput(record: JobRecord, result: EngineResult, options: { format: 'png' | 'webp'; uploadLimitBytes: number }): Promise<JobOutput> {
  if (result.images.length === 0) throw new ImagineError(ErrorCode.Engine, 'The engine returned no images.');
  const images: StoredImage[] = await Promise.all(result.images.map(async (image) => {
    const stored: StoredImage = { png: new Uint8Array(await encodeImage(image.image, 'png')), width: image.image.width, height: image.image.height, seed: image.seed };
    if (image.artifact) stored.artifact = image.artifact;
    return stored;
  }));
  const format = options.format;
  let file: EncodedImage;
  if (images.length === 4) {
    file = await composeGrid(result.images.map((image) => image.image), { format });
  } else {
    const first = result.images[0]!.image;
    file = { data: await encodeImage(first, format), width: first.width, height: first.height, contentType: format === 'webp' ? 'image/webp' : 'image/png' };
  }
  file = await fitToLimit(file, options.uploadLimitBytes);
  record.images = images;
  record.width = images[0]!.width;
  record.height = images[0]!.height;
  record.promptTruncated = result.promptTruncated;
  const name = `${slug(record.parameters.prompt)}-${record.kind === 'upscale' ? `u${record.parent?.index ?? 1}-` : ''}${record.id}.${extensionFor(file.contentType)}`;
  return { job: copyRecord(record), file: { data: new Uint8Array(file.data.buffer, file.data.byteOffset, file.data.byteLength), name, contentType: file.contentType, width: file.width, height: file.height } };
}

/** The error an aborted operation rejects with (its name is AbortError). */
export function abortSignalError(): Error {
  const error = new Error('The operation was aborted.');
  error.name = 'AbortError';
  return error;
}

/** Rejects as soon as the signal aborts, even when the promise never settles. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortSignalError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortSignalError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Waits for the promise, but no longer than `ms`. */
export async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
