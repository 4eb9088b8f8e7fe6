/**
 * The generation service: one fair, rate-limited queue in front of the engine, shared by every
 * platform. Jobs wait in per-user lanes of a {@link FairScheduler}; p-queue runs at most
 * `GPU_SLOTS` at once and each time a slot frees the scheduler picks the next job, so nothing is
 * pre-ordered FIFO. Every job ends in `listener.completed` or `listener.failed`.
 */
import { randomBytes, randomInt } from 'node:crypto';
import PQueue from 'p-queue';
import type { Config } from '../config/config.js';
import type { EngineImage, EngineProgress, EngineResult, ImageEngine, VariationStrength } from '../engine/engine.js';
import { deriveSeed } from '../engine/random.js';
import { EngineError, ErrorCode, ImagineError, JobError, LimitError, UserError, isAbortError, serializeError } from '../errors.js';
import { composeGrid } from '../image/grid.js';
import { decodeImage, encodeImage, extensionFor, fitToLimit, type EncodedImage } from '../image/encode.js';
import { silentLogger, type Logger } from '../logger.js';
import { systemClock, type Clock } from './clock.js';
import { FairScheduler } from './fair-scheduler.js';
import { createJobStore, type JobStore } from './job-store.js';
import { ServiceMetrics } from './metrics.js';
import { TokenBuckets } from './rate-limiter.js';
import type {
  DeliveryOptions,
  GenerationService,
  ImagineParameters,
  InfoSnapshot,
  JobKind,
  JobListener,
  JobOutput,
  JobRecord,
  JobTicket,
  MessageReference,
  Requester,
  StoredImage,
} from './types.js';

/** Per-user limits. */
export interface UserLimits {
  ratePerMinute: number;
  burst: number;
  maxRunning: number;
  maxQueued: number;
}

/** A job's expected run time before any has been measured, by kind, in milliseconds. */
export const defaultJobDurationsMs: Record<JobKind, number> = { imagine: 20_000, reroll: 20_000, variation: 20_000, upscale: 15_000 };

/** How much a new measurement moves the moving average of job durations. */
const durationSmoothing = 0.3;

export interface GenerationServiceOptions {
  config: Config;
  engine: ImageEngine;
  /** Default: {@link createJobStore} from the configuration. The service closes it on shutdown. */
  store?: JobStore;
  logger?: Logger;
  clock?: Clock;
  /** Overrides of the configured limits for some users (admins, benchmarks). */
  limitsFor?: (requester: Requester) => Partial<UserLimits> | undefined;
  /** Seeds of the duration averages. */
  defaultDurationsMs?: Partial<Record<JobKind, number>>;
  /** Random base seeds for rerolls and variations. */
  randomSeed?: () => number;
  /**
   * Which engine failures are worth one more try (the listener hears `retrying`). Default: the
   * engine worker thread died (out of memory, a native crash), which the WorkerEngine restarts.
   */
  isRetryable?: (error: unknown) => boolean;
  /** Tries per job in all, including the first. Default 2. */
  maxAttempts?: number;
}

/** True for the errors the WorkerEngine raises when its thread died under a call. */
export function isWorkerCrash(error: unknown): boolean {
  return error instanceof EngineError && /engine worker (stopped unexpectedly|exited)/i.test(error.message);
}

/** What {@link createGenerationService} returns. */
export type RunningGenerationService = GenerationService & { readonly store: JobStore; readonly metrics: ServiceMetrics; ready(): boolean };

type Work = (signal: AbortSignal, onProgress: (progress: EngineProgress) => void) => Promise<EngineResult>;

interface ActiveJob {
  record: JobRecord;
  listener: JobListener;
  delivery: DeliveryOptions;
  userKey: string;
  limits: UserLimits;
  work: Work;
  controller: AbortController;
  abortReason?: 'cancelled' | 'timeout' | 'shutdown';
  state: 'queued' | 'running' | 'finished';
  lastPosition?: number;
  fraction: number;
  startedAt?: number;
  events: EventChain;
  persisting: Promise<void>;
  /** Resolves once the job is finished and its record written. */
  done: Promise<void>;
  markDone: () => void;
}

/**
 * Runs one job's listener calls in order. A queued or progress update that has not gone out yet
 * is replaced by a newer one of its kind, so a slow platform edit never builds a backlog of
 * stale positions.
 */
class EventChain {
  private readonly pending: Array<{ kind: string | undefined; run: () => unknown }> = [];
  private draining: Promise<void> | undefined;
  private readonly onError: (error: unknown, what: string) => void;

  constructor(onError: (error: unknown, what: string) => void) {
    this.onError = onError;
  }

  push(run: () => unknown, replaceable?: 'queued' | 'progress'): void {
    const last = this.pending[this.pending.length - 1];
    if (replaceable && last?.kind === replaceable) last.run = run;
    else this.pending.push({ kind: replaceable, run });
    this.draining ??= this.drain();
  }

  idle(): Promise<void> {
    return this.draining ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    // Let the caller take the ticket (its continuation is a microtask) before listeners run.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const event = this.pending.shift()!;
      try {
        await event.run();
      } catch (error) {
        this.onError(error, 'listener');
      }
    }
    this.draining = undefined;
  }
}

const userKeyOf = (requester: Requester): string => `${requester.platform}:${requester.userId}`;

/** "12 s" or "3 min", for messages that say when to retry. */
export function formatWait(ms: number): string {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  if (seconds < 90) return `${seconds} s`;
  return `${Math.ceil(seconds / 60)} min`;
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40).replace(/-+$/g, '') || 'image';
}

function copyRecord(record: JobRecord): JobRecord {
  return { ...record, requester: { ...record.requester }, parameters: { ...record.parameters }, seeds: [...record.seeds], ...(record.images ? { images: [...record.images] } : {}) };
}

export class QueueGenerationService implements GenerationService {
  readonly store: JobStore;
  readonly metrics: ServiceMetrics;
  private readonly config: Config;
  private readonly engine: ImageEngine;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly limitsFor: GenerationServiceOptions['limitsFor'];
  private readonly randomSeed: () => number;
  private readonly isRetryable: (error: unknown) => boolean;
  private readonly maxAttempts: number;
  private readonly slots: number;
  private readonly queue: PQueue;
  private readonly scheduler = new FairScheduler<ActiveJob>();
  private readonly buckets: TokenBuckets;
  private readonly active = new Map<string, ActiveJob>();
  private readonly runningByUser = new Map<string, number>();
  private readonly laneLimits = new Map<string, number>();
  private readonly averageMs: Record<JobKind, number>;
  private dispatched = 0;
  private refreshScheduled = false;
  private accepting = true;
  private shutdownPromise: Promise<void> | undefined;

  constructor(options: GenerationServiceOptions & { store: JobStore }) {
    this.config = options.config;
    this.engine = options.engine;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger();
    this.clock = options.clock ?? systemClock;
    this.limitsFor = options.limitsFor;
    this.randomSeed = options.randomSeed ?? (() => randomInt(0, 2 ** 32));
    this.isRetryable = options.isRetryable ?? isWorkerCrash;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 2);
    this.slots = Math.max(1, options.config.gpuSlots);
    this.queue = new PQueue({ concurrency: this.slots });
    this.buckets = new TokenBuckets(this.clock);
    this.averageMs = { ...defaultJobDurationsMs, ...options.defaultDurationsMs };
    this.metrics = new ServiceMetrics(() => ({ queueDepth: this.scheduler.size, running: this.dispatched, slots: this.slots }));
  }

  /** True while the service takes work. */
  ready(): boolean {
    return this.accepting;
  }

  async imagine(requester: Requester, parameters: ImagineParameters, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    const checked = this.checkParameters(parameters);
    const size = this.engine.capabilities.sizes[checked.aspectRatio]!;
    const seeds = [0, 1, 2, 3].map((index) => deriveSeed(checked.seed, index));
    const record = this.newRecord('imagine', requester, checked, seeds, size.width, size.height);
    return this.admit(record, listener, options, (signal, onProgress) =>
      this.engine.generate({ ...this.engineParameters(checked), width: size.width, height: size.height, seeds, chaos: checked.chaos, signal, onProgress }),
    );
  }

  async reroll(requester: Requester, jobId: string, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    const parent = await this.finishedParent(jobId);
    const parameters: ImagineParameters = { ...parent.parameters, seed: this.randomSeed() };
    const size = this.engine.capabilities.sizes[parameters.aspectRatio] ?? { width: parent.width, height: parent.height };
    const seeds = [0, 1, 2, 3].map((index) => deriveSeed(parameters.seed, index));
    const record = this.newRecord('reroll', requester, parameters, seeds, size.width, size.height);
    // Index 0: the whole job rather than one of its images.
    record.parent = { jobId: parent.id, index: 0 };
    return this.admit(record, listener, options, (signal, onProgress) =>
      this.engine.generate({ ...this.engineParameters(parameters), width: size.width, height: size.height, seeds, chaos: parameters.chaos, signal, onProgress }),
    );
  }

  async vary(requester: Requester, jobId: string, index: number, strength: VariationStrength, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    if (strength !== 'subtle' && strength !== 'strong') throw new UserError(ErrorCode.InvalidAction, 'A variation is either subtle or strong.', { field: 'strength' });
    this.checkIndex(index, 4);
    const parent = await this.finishedParent(jobId);
    const stored = this.imageOf(parent, index);
    const parameters: ImagineParameters = { ...parent.parameters, seed: this.randomSeed() };
    const seeds = [0, 1, 2, 3].map((position) => deriveSeed(parameters.seed, position));
    const record = this.newRecord('variation', requester, parameters, seeds, stored.width, stored.height);
    record.parent = { jobId: parent.id, index };
    record.strength = strength;
    return this.admit(record, listener, options, async (signal, onProgress) =>
      this.engine.vary({ ...this.engineParameters(parameters), source: await this.engineImage(stored), strength, seeds, signal, onProgress }),
    );
  }

  async upscale(requester: Requester, jobId: string, index: number, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    this.checkIndex(index, 4);
    const parent = await this.finishedParent(jobId);
    if (parent.kind === 'upscale') throw new UserError(ErrorCode.InvalidAction, 'This image is already upscaled. Use Vary or 🔄 instead.');
    const stored = this.imageOf(parent, index);
    const factor = this.engine.capabilities.upscaleFactor;
    const record = this.newRecord('upscale', requester, { ...parent.parameters }, [stored.seed], stored.width * factor, stored.height * factor);
    record.parent = { jobId: parent.id, index };
    return this.admit(record, listener, options, async (signal, onProgress) => {
      const request = { prompt: parent.parameters.prompt, source: await this.engineImage(stored), seed: stored.seed, signal, onProgress };
      return this.engine.upscale(parent.parameters.negativePrompt === undefined ? request : { ...request, negativePrompt: parent.parameters.negativePrompt });
    });
  }

  async cancel(requester: Requester, jobId: string): Promise<JobRecord> {
    const job = this.active.get(jobId);
    const record = job?.record ?? (await this.store.get(jobId));
    if (!record) throw new JobError(ErrorCode.JobNotFound, 'That job has expired or never existed, so there is nothing to cancel.', jobId);
    if (!this.mayControl(requester, record)) throw new JobError(ErrorCode.NotPermitted, 'Only the person who started this job, or an admin, can cancel it.', jobId);
    if (!job || job.state === 'finished') throw new UserError(ErrorCode.InvalidAction, `That job has already ${record.status === 'completed' ? 'finished' : 'ended'}; there is nothing to cancel.`);
    job.abortReason = 'cancelled';
    if (job.state === 'queued') {
      this.scheduler.remove((candidate) => candidate === job);
      this.finishFailed(job, this.abortError(job));
      this.scheduleRefresh();
    } else {
      job.controller.abort();
    }
    return { ...copyRecord(job.record), status: 'cancelled' };
  }

  async info(requester: Requester): Promise<InfoSnapshot> {
    const key = userKeyOf(requester);
    const limits = this.limits(requester);
    const bucket = this.buckets.peek(key, limits);
    const ordered = this.scheduler.ordered();
    return {
      requester,
      running: [...this.active.values()].filter((job) => job.state === 'running' && job.userKey === key).map((job) => copyRecord(job.record)),
      queued: ordered.map((job, index) => ({ job, position: index + 1 })).filter(({ job }) => job.userKey === key).map(({ job, position }) => ({ job: copyRecord(job.record), position })),
      limits: { ratePerMinute: limits.ratePerMinute, burst: limits.burst, maxRunning: limits.maxRunning, maxQueued: limits.maxQueued, tokensLeft: Math.floor(bucket.tokens), nextTokenInMs: bucket.nextTokenInMs },
      queueLength: this.scheduler.size,
      slots: this.slots,
      engine: this.engine.capabilities.name,
      averageJobMs: Math.round(this.averageMs.imagine),
    };
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    const job = this.active.get(jobId);
    if (job) return copyRecord(job.record);
    return this.store.get(jobId);
  }

  countCommand(platform: string, command: string): void {
    this.metrics.countCommand(platform, command);
  }

  async attachMessage(jobId: string, message: MessageReference): Promise<void> {
    const job = this.active.get(jobId);
    if (job) {
      job.record.message = { ...message };
      await this.persist(job);
      return;
    }
    const record = await this.store.get(jobId);
    if (!record) throw new JobError(ErrorCode.JobNotFound, 'That job has expired or never existed.', jobId);
    record.message = { ...message };
    await this.store.set(record);
  }

  shutdown(graceMs: number = this.config.shutdownGraceSeconds * 1000): Promise<void> {
    this.shutdownPromise ??= this.stop(graceMs);
    return this.shutdownPromise;
  }

  // --- admission -------------------------------------------------------------------------

  private limits(requester: Requester): UserLimits {
    const base: UserLimits = {
      ratePerMinute: this.config.rateLimitPerMinute,
      burst: this.config.rateLimitBurst,
      maxRunning: this.config.maxRunningPerUser,
      maxQueued: this.config.maxQueuedPerUser,
    };
    return { ...base, ...this.limitsFor?.(requester) };
  }

  private admit(record: JobRecord, listener: JobListener, delivery: DeliveryOptions, work: Work): JobTicket {
    if (!this.accepting) {
      this.metrics.requestRejected(ErrorCode.ShuttingDown);
      throw new ImagineError(ErrorCode.ShuttingDown, 'The bot is restarting and not taking new work right now. Please try again in a minute.', { userFacing: true });
    }
    const key = userKeyOf(record.requester);
    const limits = this.limits(record.requester);
    const running = this.runningByUser.get(key) ?? 0;
    const waiting = this.scheduler.laneItems(key);
    if (running + waiting.length >= limits.maxRunning + limits.maxQueued) {
      const error = waiting.length === 0 ? this.tooManyRunning(key, running, limits) : this.tooManyQueued(waiting, limits);
      this.metrics.requestRejected(error.code);
      throw error;
    }
    const retryAfterMs = this.buckets.take(key, limits);
    if (retryAfterMs > 0) {
      this.metrics.requestRejected(ErrorCode.RateLimited);
      throw new LimitError(ErrorCode.RateLimited, `You're starting jobs too quickly (the limit is ${limits.ratePerMinute} a minute, ${limits.burst} at once). You can start another job in ${formatWait(retryAfterMs)}.`, retryAfterMs);
    }

    let markDone!: () => void;
    const done = new Promise<void>((resolve) => (markDone = resolve));
    const job: ActiveJob = {
      record,
      listener,
      delivery,
      userKey: key,
      limits,
      work,
      controller: new AbortController(),
      state: 'queued',
      fraction: 0,
      events: new EventChain((error, what) => this.logger.warn({ err: error, jobId: record.id }, `a ${what} call failed`)),
      persisting: Promise.resolve(),
      done,
      markDone,
    };
    this.active.set(record.id, job);
    this.laneLimits.set(key, limits.maxRunning);
    this.scheduler.enqueue(key, job);
    // Written after the acknowledgement: the ack path stays short even in a burst of commands.
    setImmediate(() => void this.persist(job).catch(() => undefined));
    this.logger.info({ jobId: record.id, kind: record.kind, user: key, queued: this.scheduler.size }, 'job admitted');
    this.pump();
    const { position, etaMs } = this.quickEstimate(job);
    this.scheduleRefresh();
    return { job: copyRecord(record), position, etaMs };
  }

  /**
   * A job's place and expected finish without sorting the queue (O(n)), for acknowledgements.
   * Exact for one slot; with several it spreads the work ahead evenly over the slots.
   */
  private quickEstimate(job: ActiveJob): { position: number; etaMs: number } {
    const own = this.averageMs[job.record.kind];
    if (job.state !== 'queued') return { position: 0, etaMs: Math.round(job.state === 'running' ? this.remainingMs(job) : own) };
    let aheadMs = 0;
    const position = this.scheduler.positionOf(job, (other) => (aheadMs += this.averageMs[other.record.kind]));
    const free: number[] = [];
    for (const other of this.active.values()) if (other.state === 'running') free.push(this.remainingMs(other));
    while (free.length < this.slots) free.push(0);
    const startMs = this.slots === 1 ? free[0]! + aheadMs : (free.reduce((sum, value) => sum + value, 0) + aheadMs) / this.slots;
    return { position, etaMs: Math.round(startMs + own) };
  }

  /** Position updates for a burst of changes go out once, after the burst. */
  private scheduleRefresh(): void {
    if (this.refreshScheduled) return;
    this.refreshScheduled = true;
    setImmediate(() => {
      this.refreshScheduled = false;
      this.refreshPositions();
    });
  }

  private tooManyRunning(key: string, running: number, limits: UserLimits): LimitError {
    const remaining = [...this.active.values()].filter((job) => job.userKey === key && job.state === 'running').map((job) => this.remainingMs(job));
    const retryAfterMs = remaining.length > 0 ? Math.min(...remaining) : this.averageMs.imagine;
    const jobs = running === 1 ? 'a job' : `${running} jobs`;
    return new LimitError(ErrorCode.TooManyRunning, `You already have ${jobs} running (the limit is ${limits.maxRunning}). You can start another job in ${formatWait(retryAfterMs)}, when it finishes.`, retryAfterMs);
  }

  private tooManyQueued(waiting: ActiveJob[], limits: UserLimits): LimitError {
    const head = waiting[0]!;
    const retryAfterMs = Math.max(1000, this.quickEstimate(head).etaMs - this.averageMs[head.record.kind]);
    return new LimitError(ErrorCode.TooManyQueued, `You already have ${waiting.length} job${waiting.length === 1 ? '' : 's'} waiting (the limit is ${limits.maxQueued}). You can start another job in ${formatWait(retryAfterMs)}, when the first of them starts.`, retryAfterMs);
  }

  private checkParameters(parameters: ImagineParameters): ImagineParameters {
    const capabilities = this.engine.capabilities;
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

  private engineParameters(parameters: ImagineParameters): { prompt: string; negativePrompt?: string; steps?: number; guidance?: number } {
    const result: { prompt: string; negativePrompt?: string; steps?: number; guidance?: number } = { prompt: parameters.prompt };
    if (parameters.negativePrompt !== undefined) result.negativePrompt = parameters.negativePrompt;
    if (parameters.steps !== undefined) result.steps = parameters.steps;
    if (parameters.guidance !== undefined) result.guidance = parameters.guidance;
    return result;
  }

  private checkIndex(index: number, count: number): void {
    if (!Number.isInteger(index) || index < 1 || index > count) {
      throw new UserError(ErrorCode.InvalidAction, `Pick an image from 1 to ${count}.`, { field: 'index' });
    }
  }

  private async finishedParent(jobId: string): Promise<JobRecord> {
    const active = this.active.get(jobId);
    const record = active ? active.record : await this.store.get(jobId);
    if (!record) {
      throw new JobError(ErrorCode.JobNotFound, `That job has expired (jobs are kept for ${formatDays(this.config.jobRetentionDays)}) or never existed. Run /imagine again to make new images.`, jobId);
    }
    if (record.status !== 'completed' || !record.images?.length) {
      const unfinished = record.status === 'queued' || record.status === 'running';
      // This service runs every job it admits, so an unfinished record it does not hold was cut
      // off by a crash of an earlier process and will never finish.
      const why = unfinished && active
        ? 'is not finished yet; wait for its images, then press the button again'
        : unfinished
          ? 'was interrupted by a restart before it finished, so it has no images to use; run /imagine again'
          : `${record.status === 'cancelled' ? 'was cancelled' : 'failed'}, so it has no images to use; run /imagine again`;
      throw new JobError(ErrorCode.JobNotReady, `That job ${why}.`, jobId);
    }
    return record;
  }

  private imageOf(record: JobRecord, index: number): StoredImage {
    const images = record.images ?? [];
    this.checkIndex(index, images.length);
    return images[index - 1]!;
  }

  private async engineImage(stored: StoredImage): Promise<EngineImage> {
    const image: EngineImage = { image: await decodeImage(stored.png), seed: stored.seed };
    if (stored.artifact) image.artifact = stored.artifact;
    return image;
  }

  private newRecord(kind: JobKind, requester: Requester, parameters: ImagineParameters, seeds: number[], width: number, height: number): JobRecord {
    return {
      id: randomBytes(9).toString('base64url'),
      kind,
      status: 'queued',
      requester: { ...requester },
      parameters: { ...parameters },
      seeds,
      width,
      height,
      engine: this.engine.capabilities.name,
      createdAt: this.clock.now(),
    };
  }

  private mayControl(requester: Requester, record: JobRecord): boolean {
    const key = userKeyOf(requester);
    return key === userKeyOf(record.requester) || requester.isAdmin === true || this.config.admins.includes(key);
  }

  // --- scheduling --------------------------------------------------------------------------

  /** Starts jobs while slots are free; the fair scheduler picks each one at the moment a slot frees. */
  private pump(): void {
    let started = false;
    while (this.accepting && this.dispatched < this.slots) {
      const job = this.scheduler.next((lane) => (this.runningByUser.get(lane) ?? 0) < (this.laneLimits.get(lane) ?? 1));
      if (!job) break;
      started = true;
      this.dispatched += 1;
      this.runningByUser.set(job.userKey, (this.runningByUser.get(job.userKey) ?? 0) + 1);
      job.state = 'running';
      void this.queue.add(() => this.run(job)).catch((error: unknown) => this.logger.error({ err: error, jobId: job.record.id }, 'the queue failed to run a job'));
    }
    if (started) this.scheduleRefresh();
  }

  /** Expected milliseconds from now until each queued or running job finishes. */
  private estimates(): Map<ActiveJob, number> {
    const result = new Map<ActiveJob, number>();
    const free: number[] = [];
    for (const job of this.active.values()) {
      if (job.state !== 'running') continue;
      const remaining = this.remainingMs(job);
      result.set(job, remaining);
      free.push(remaining);
    }
    while (free.length < this.slots) free.push(0);
    free.sort((a, b) => a - b);
    for (const job of this.scheduler.ordered()) {
      const slot = free.indexOf(Math.min(...free));
      const finish = free[slot]! + this.averageMs[job.record.kind];
      free[slot] = finish;
      result.set(job, finish);
    }
    return result;
  }

  private remainingMs(job: ActiveJob): number {
    const expected = this.averageMs[job.record.kind];
    if (job.startedAt === undefined) return expected;
    const elapsed = this.clock.now() - job.startedAt;
    // Once a job is some way in, its own pace predicts its end better than the average.
    if (job.fraction >= 0.1) return Math.max(0, (elapsed * (1 - job.fraction)) / job.fraction);
    return Math.max(0, expected - elapsed);
  }

  private refreshPositions(estimates = this.estimates()): void {
    this.scheduler.ordered().forEach((job, index) => {
      const position = index + 1;
      if (job.lastPosition === position) return;
      job.lastPosition = position;
      const etaMs = Math.round(estimates.get(job) ?? this.averageMs[job.record.kind]);
      const record = copyRecord(job.record);
      job.events.push(() => job.listener.queued?.({ job: record, position, etaMs }), 'queued');
    });
  }

  // --- running -----------------------------------------------------------------------------

  private async run(job: ActiveJob): Promise<void> {
    const record = job.record;
    const startedAt = this.clock.now();
    job.startedAt = startedAt;
    record.status = 'running';
    record.startedAt = startedAt;
    this.metrics.jobStarted(record.kind);
    void this.persist(job).catch(() => undefined);
    const startRecord = copyRecord(record);
    const startEta = Math.round(this.averageMs[record.kind]);
    job.events.push(() => job.listener.started?.({ job: startRecord, etaMs: startEta }));
    this.logger.info({ jobId: record.id, kind: record.kind, user: job.userKey, waitedMs: startedAt - record.createdAt }, 'job started');

    const signal = job.controller.signal;
    const timeoutMs = this.config.jobTimeoutSeconds * 1000;
    const timer = setTimeout(() => {
      job.abortReason ??= 'timeout';
      job.controller.abort();
    }, timeoutMs);
    timer.unref?.();
    const onProgress = (progress: EngineProgress): void => {
      if (signal.aborted || job.state !== 'running') return;
      const fraction = Math.min(1, Math.max(job.fraction, progress.fraction));
      job.fraction = fraction;
      const update = { job: copyRecord(record), fraction, stage: progress.stage, etaMs: Math.round(this.remainingMs(job)) };
      job.events.push(() => job.listener.progress?.(update), 'progress');
    };

    let engineCall: Promise<EngineResult> | undefined;
    try {
      let result: EngineResult;
      for (let attempt = 1; ; attempt += 1) {
        engineCall = Promise.resolve().then(() => job.work(signal, onProgress));
        try {
          result = await raceAbort(engineCall, signal);
          break;
        } catch (error) {
          if (signal.aborted || attempt >= this.maxAttempts || !this.isRetryable(error)) throw error;
          this.logger.warn({ err: error, jobId: record.id, attempt }, 'engine call failed; trying again');
          record.attempts = attempt;
          job.fraction = 0;
          const snapshot = copyRecord(record);
          job.events.push(() => job.listener.retrying?.({ job: snapshot, attempt }));
        }
      }
      if (signal.aborted) throw this.abortError(job);
      const output = await this.output(job, result);
      if (signal.aborted) throw this.abortError(job);
      clearTimeout(timer);
      const finishedAt = this.clock.now();
      record.status = 'completed';
      record.finishedAt = finishedAt;
      job.state = 'finished';
      const duration = finishedAt - startedAt;
      this.averageMs[record.kind] += durationSmoothing * (duration - this.averageMs[record.kind]);
      this.metrics.jobCompleted(record.kind, duration);
      this.logger.info({ jobId: record.id, kind: record.kind, user: job.userKey, durationMs: duration, bytes: output.file.data.length }, 'job completed');
      output.job = copyRecord(record);
      await this.persist(job).catch(() => undefined);
      job.events.push(async () => {
        try {
          await job.listener.completed(output);
        } catch (error) {
          this.logger.warn({ err: error, jobId: record.id }, 'delivering a finished job failed');
          this.metrics.jobFailed(ErrorCode.Upload);
          const failure = new ImagineError(ErrorCode.Upload, `Delivering job ${record.id} failed.`, { cause: error });
          await job.listener.failed({ job: copyRecord(record), error: serializeError(failure) });
        }
      });
      this.retire(job);
    } catch (error) {
      clearTimeout(timer);
      const failure = signal.aborted ? this.abortError(job) : error;
      this.finishFailed(job, failure);
    } finally {
      // The slot stays taken until the engine really stops, so that an engine that ignores the
      // abort never runs two jobs on one slot.
      if (engineCall) await engineCall.then(() => undefined, () => undefined);
      this.dispatched -= 1;
      const running = (this.runningByUser.get(job.userKey) ?? 1) - 1;
      if (running > 0) this.runningByUser.set(job.userKey, running);
      else this.runningByUser.delete(job.userKey);
      this.pump();
      this.scheduleRefresh();
    }
  }

  /** Encodes the images for the record and the file for the platform. */
  private async output(job: ActiveJob, result: EngineResult): Promise<JobOutput> {
    const record = job.record;
    if (result.images.length === 0) throw new ImagineError(ErrorCode.Engine, 'The engine returned no images.');
    const images: StoredImage[] = await Promise.all(result.images.map(async (image) => {
      const stored: StoredImage = { png: new Uint8Array(await encodeImage(image.image, 'png')), width: image.image.width, height: image.image.height, seed: image.seed };
      if (image.artifact) stored.artifact = image.artifact;
      return stored;
    }));
    const format = this.config.gridFormat;
    let file: EncodedImage;
    if (images.length === 4) {
      file = await composeGrid(result.images.map((image) => image.image), { format });
    } else {
      const first = result.images[0]!.image;
      file = { data: await encodeImage(first, format), width: first.width, height: first.height, contentType: format === 'webp' ? 'image/webp' : 'image/png' };
    }
    file = await fitToLimit(file, job.delivery.uploadLimitBytes ?? this.config.uploadLimitBytes);
    record.images = images;
    record.width = images[0]!.width;
    record.height = images[0]!.height;
    record.promptTruncated = result.promptTruncated;
    const name = `${slug(record.parameters.prompt)}-${record.kind === 'upscale' ? `u${record.parent?.index ?? 1}-` : ''}${record.id}.${extensionFor(file.contentType)}`;
    return { job: copyRecord(record), file: { data: new Uint8Array(file.data.buffer, file.data.byteOffset, file.data.byteLength), name, contentType: file.contentType, width: file.width, height: file.height } };
  }

  private abortError(job: ActiveJob): JobError {
    const id = job.record.id;
    switch (job.abortReason) {
      case 'timeout':
        return new JobError(ErrorCode.TimedOut, `The job took longer than ${formatWait(this.config.jobTimeoutSeconds * 1000)} and was stopped. Try again, perhaps with fewer steps.`, id);
      case 'shutdown':
        return new JobError(ErrorCode.ShuttingDown, job.state === 'queued'
          ? 'The bot is restarting, so your job was not started. Please run the command again in a minute.'
          : 'The bot restarted before your job finished. Please run the command again in a minute.', id);
      default:
        return new JobError(ErrorCode.Cancelled, 'The job was cancelled.', id);
    }
  }

  private finishFailed(job: ActiveJob, error: unknown): void {
    if (job.state === 'finished') return;
    const record = job.record;
    const serialized = isAbortError(error) ? serializeError(this.abortError(job)) : serializeError(error);
    record.status = serialized.code === ErrorCode.Cancelled ? 'cancelled' : 'failed';
    record.error = serialized;
    record.finishedAt = this.clock.now();
    job.state = 'finished';
    this.metrics.jobFailed(serialized.code);
    const level = error instanceof ImagineError && error.userFacing ? 'info' : 'warn';
    this.logger[level]({ jobId: record.id, kind: record.kind, user: job.userKey, code: serialized.code, err: error }, 'job failed');
    const snapshot = copyRecord(record);
    job.events.push(() => job.listener.failed({ job: snapshot, error: serialized }));
    void this.persist(job).catch(() => undefined).then(() => this.retire(job));
  }

  /** Drops a finished job from memory once its last write has landed. */
  private retire(job: ActiveJob): void {
    void job.persisting.then(() => {
      if (this.active.get(job.record.id) === job) this.active.delete(job.record.id);
      job.markDone();
    });
  }

  /** Writes the job's current record after any earlier write of it; failures are logged. */
  private persist(job: ActiveJob): Promise<void> {
    const next = job.persisting.then(async () => {
      try {
        await this.store.set(job.record);
      } catch (error) {
        this.logger.error({ err: error, jobId: job.record.id }, 'could not save the job record');
        throw error;
      }
    });
    job.persisting = next.catch(() => undefined);
    return next;
  }

  // --- shutdown ----------------------------------------------------------------------------

  private async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    this.logger.info({ queued: this.scheduler.size, running: this.dispatched, graceMs }, 'shutting down');
    for (const job of this.scheduler.drain()) {
      job.abortReason = 'shutdown';
      this.finishFailed(job, this.abortError(job));
    }
    const running = [...this.active.values()].filter((job) => job.state === 'running');
    const allDone = Promise.all(running.map((job) => job.done));
    let timer: NodeJS.Timeout | undefined;
    const expired = await Promise.race([allDone.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)))]);
    clearTimeout(timer);
    if (expired) {
      for (const job of running) {
        if (job.state !== 'running') continue;
        job.abortReason ??= 'shutdown';
        job.controller.abort();
      }
      await allDone;
    }
    // Let the last listener calls (failure notices, final posts) go out, within a bound.
    const jobs = [...this.active.values()];
    await withTimeout(Promise.all(jobs.map((job) => Promise.all([job.events.idle(), job.persisting]))), 10_000);
    await this.store.close();
    this.logger.info('shut down');
  }
}

function formatDays(days: number): string {
  if (days >= 1) return `${Number.isInteger(days) ? days : days.toFixed(1)} day${days === 1 ? '' : 's'}`;
  return `${Math.max(1, Math.round(days * 24))} hours`;
}

/** Rejects as soon as the signal aborts, even when the promise never settles. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError());
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

function abortError(): Error {
  const error = new Error('The operation was aborted.');
  error.name = 'AbortError';
  return error;
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Builds the service, creating the job store from the configuration when none is given. */
export async function createGenerationService(options: GenerationServiceOptions): Promise<RunningGenerationService> {
  const logger = options.logger ?? silentLogger();
  const store = options.store ?? (await createJobStore(options.config, { logger }));
  return new QueueGenerationService({ ...options, logger, store });
}
