/**
 * The generation service: one fair, rate-limited queue in front of the engine, shared by every
 * platform. Jobs wait in per-user lanes of a {@link FairScheduler}; p-queue runs at most
 * `GPU_SLOTS` at once and each time a slot frees the scheduler picks the next job, so nothing is
 * pre-ordered FIFO. Every job ends in `listener.completed` or `listener.failed`.
 */
import { randomInt } from 'node:crypto';
import PQueue from 'p-queue';
import type { Config } from '../config/config.js';
import type { EngineProgress, EngineResult, ImageEngine, VariationStrength } from '../engine/engine.js';
import { EngineError, ErrorCode, ImagineError, JobError, LimitError, UserError, isAbortError, serializeError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { systemClock, type Clock } from './clock.js';
import { EventChain } from './event-chain.js';
import { FairScheduler } from './fair-scheduler.js';
import {
  abortError,
  buildOutput,
  checkIndex,
  checkParameters,
  copyRecord,
  defaultJobDurationsMs,
  engineImage,
  engineParameters,
  gridSeeds,
  imageOf,
  mayControl,
  newRecord,
  raceAbort,
  rateLimitedError,
  requireFinished,
  shuttingDownError,
  tooManyQueuedError,
  tooManyRunningError,
  userKeyOf,
  userLimits,
  withTimeout,
  type UserLimits,
} from './job-requests.js';
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
} from './types.js';

export { defaultJobDurationsMs, formatWait, type UserLimits } from './job-requests.js';

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
    const checked = checkParameters(this.engine.capabilities, parameters);
    const size = this.engine.capabilities.sizes[checked.aspectRatio]!;
    const seeds = gridSeeds(checked.seed);
    const record = this.newRecord('imagine', requester, checked, seeds, size);
    return this.admit(record, listener, options, (signal, onProgress) =>
      this.engine.generate({ ...engineParameters(checked), width: size.width, height: size.height, seeds, chaos: checked.chaos, signal, onProgress }),
    );
  }

  async reroll(requester: Requester, jobId: string, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    const parent = await this.finishedParent(jobId);
    const parameters: ImagineParameters = { ...parent.parameters, seed: this.randomSeed() };
    const size = this.engine.capabilities.sizes[parameters.aspectRatio] ?? { width: parent.width, height: parent.height };
    const seeds = gridSeeds(parameters.seed);
    const record = this.newRecord('reroll', requester, parameters, seeds, size);
    // Index 0: the whole job rather than one of its images.
    record.parent = { jobId: parent.id, index: 0 };
    return this.admit(record, listener, options, (signal, onProgress) =>
      this.engine.generate({ ...engineParameters(parameters), width: size.width, height: size.height, seeds, chaos: parameters.chaos, signal, onProgress }),
    );
  }

  async vary(requester: Requester, jobId: string, index: number, strength: VariationStrength, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    if (strength !== 'subtle' && strength !== 'strong') throw new UserError(ErrorCode.InvalidAction, 'A variation is either subtle or strong.', { field: 'strength' });
    checkIndex(index, 4);
    const parent = await this.finishedParent(jobId);
    const stored = imageOf(parent, index);
    const parameters: ImagineParameters = { ...parent.parameters, seed: this.randomSeed() };
    const seeds = gridSeeds(parameters.seed);
    const record = this.newRecord('variation', requester, parameters, seeds, stored);
    record.parent = { jobId: parent.id, index };
    record.strength = strength;
    return this.admit(record, listener, options, async (signal, onProgress) =>
      this.engine.vary({ ...engineParameters(parameters), source: await engineImage(stored), strength, seeds, signal, onProgress }),
    );
  }

  async upscale(requester: Requester, jobId: string, index: number, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    checkIndex(index, 4);
    const parent = await this.finishedParent(jobId);
    if (parent.kind === 'upscale') throw new UserError(ErrorCode.InvalidAction, 'This image is already upscaled. Use Vary or 🔄 instead.');
    const stored = imageOf(parent, index);
    const factor = this.engine.capabilities.upscaleFactor;
    const record = this.newRecord('upscale', requester, { ...parent.parameters }, [stored.seed], { width: stored.width * factor, height: stored.height * factor });
    record.parent = { jobId: parent.id, index };
    return this.admit(record, listener, options, async (signal, onProgress) => {
      const request = { prompt: parent.parameters.prompt, source: await engineImage(stored), seed: stored.seed, signal, onProgress };
      return this.engine.upscale(parent.parameters.negativePrompt === undefined ? request : { ...request, negativePrompt: parent.parameters.negativePrompt });
    });
  }

  async cancel(requester: Requester, jobId: string): Promise<JobRecord> {
    const job = this.active.get(jobId);
    const record = job?.record ?? (await this.store.get(jobId));
    if (!record) throw new JobError(ErrorCode.JobNotFound, 'That job has expired or never existed, so there is nothing to cancel.', jobId);
    if (!mayControl(this.config, requester, record)) throw new JobError(ErrorCode.NotPermitted, 'Only the person who started this job, or an admin, can cancel it.', jobId);
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
    const limits = userLimits(this.config, requester, this.limitsFor);
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

  private admit(record: JobRecord, listener: JobListener, delivery: DeliveryOptions, work: Work): JobTicket {
    if (!this.accepting) {
      this.metrics.requestRejected(ErrorCode.ShuttingDown);
      throw shuttingDownError();
    }
    const key = userKeyOf(record.requester);
    const limits = userLimits(this.config, record.requester, this.limitsFor);
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
      throw rateLimitedError(limits, retryAfterMs);
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
      // Listeners run after the caller has taken the ticket (its continuation is a microtask).
      events: new EventChain((error) => this.logger.warn({ err: error, jobId: record.id }, 'a listener call failed'), { beforeDrain: () => new Promise((resolve) => setImmediate(resolve)) }),
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
    return tooManyRunningError(running, limits.maxRunning, retryAfterMs);
  }

  private tooManyQueued(waiting: ActiveJob[], limits: UserLimits): LimitError {
    const head = waiting[0]!;
    const retryAfterMs = Math.max(1000, this.quickEstimate(head).etaMs - this.averageMs[head.record.kind]);
    return tooManyQueuedError(waiting.length, limits.maxQueued, retryAfterMs);
  }

  private async finishedParent(jobId: string): Promise<JobRecord> {
    const active = this.active.get(jobId);
    const record = active ? active.record : await this.store.get(jobId);
    // This service runs every job it admits, so an unfinished record it does not hold was cut
    // off by a crash of an earlier process and will never finish.
    return requireFinished(record, jobId, this.config.jobRetentionDays, { interrupted: !active });
  }

  private newRecord(kind: JobKind, requester: Requester, parameters: ImagineParameters, seeds: number[], size: { width: number; height: number }): JobRecord {
    return newRecord(kind, requester, parameters, seeds, size, this.engine.capabilities.name, this.clock.now());
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
  private output(job: ActiveJob, result: EngineResult): Promise<JobOutput> {
    return buildOutput(job.record, result, { format: this.config.gridFormat, uploadLimitBytes: job.delivery.uploadLimitBytes ?? this.config.uploadLimitBytes });
  }

  private abortError(job: ActiveJob): JobError {
    return abortError(job.abortReason ?? 'cancelled', job.record.id, { timeoutMs: this.config.jobTimeoutSeconds * 1000, started: job.state !== 'queued' });
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

/** Builds the service, creating the job store from the configuration when none is given. */
export async function createGenerationService(options: GenerationServiceOptions): Promise<RunningGenerationService> {
  const logger = options.logger ?? silentLogger();
  const store = options.store ?? (await createJobStore(options.config, { logger }));
  return new QueueGenerationService({ ...options, logger, store });
}
