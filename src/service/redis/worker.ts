/**
 * A GPU worker for QUEUE=redis: a BullMQ Worker that runs queued jobs on its own engine.
 *
 * For each job it first claims a running place for the job's user (atomically, in Lua): a user
 * who already runs as many jobs as allowed has the job parked (delayed) until one of theirs
 * finishes. It then reports `started` and progress through `job.updateProgress` (bots hear them
 * through QueueEvents), writes the finished record (PNGs and embeddings) to the job store and
 * the platform file to a Redis key with a TTL, and returns a small reference to it.
 *
 * Nothing is lost when a worker dies: BullMQ's lock expires and another worker's stalled-job
 * check puts the job back; the next start counts as a retry and bots tell the user. Engine
 * failures are retried once; user errors, cancellations and timeouts are final.
 */
import { randomBytes } from 'node:crypto';
import { DelayedError, Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/config.js';
import type { EngineProgress, EngineResult, ImageEngine } from '../../engine/engine.js';
import { ErrorCode, ImagineError, ModelError, isAbortError, serializeError, type SerializedError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logger.js';
import { systemClock, type Clock } from '../clock.js';
import { abortError, abortSignalError, buildOutput, defaultJobDurationsMs, raceAbort } from '../job-requests.js';
import { createJobStore, type JobStore } from '../job-store.js';
import { ServiceMetrics } from '../metrics.js';
import type { JobKind, JobRecord } from '../types.js';
import { bounded, closeRedis, connectRedis, defaultQueueNames, RedisKeys, waitForRedis, type QueueNames } from './keys.js';
import { failureReason, protocolVersion, type OutputReference, type QueuedJobData, type WorkerEvent } from './protocol.js';
import { runRecord } from './requests.js';
import { AdmissionScripts } from './scripts.js';

/** Timing of stalled-job recovery and retries; the defaults recover a killed worker's job within about 20 s. */
export interface WorkerTimings {
  /** How long a worker's lock on a job lasts without renewal (renewed every half). Default 10 000. */
  lockDurationMs: number;
  /** How often workers look for jobs whose worker died. Default 5 000. */
  stalledIntervalMs: number;
  /** Times a job may lose its worker before it fails. Default 2. */
  maxStalledCount: number;
  /** How long a job waits, parked, when its user already runs enough jobs; it is woken earlier when one finishes. Default 1 000. */
  parkMs: number;
  /** How long a finished file waits in Redis for its bot. Default one hour. */
  outputTtlMs: number;
}

/** The timings a worker uses unless told otherwise. */
export const defaultWorkerTimings: WorkerTimings = { lockDurationMs: 10_000, stalledIntervalMs: 5_000, maxStalledCount: 2, parkMs: 1_000, outputTtlMs: 3_600_000 };

/** Options of {@link RedisWorker}. */
export interface RedisWorkerOptions {
  config: Config;
  engine: ImageEngine;
  /** Default: {@link createJobStore} from the configuration (Redis when QUEUE=redis). Closed by {@link RedisWorker.close}. */
  store?: JobStore;
  logger?: Logger;
  clock?: Clock;
  names?: Partial<QueueNames>;
  /** Jobs at once; default GPU_SLOTS. */
  concurrency?: number;
  timings?: Partial<WorkerTimings>;
  /** Shown in logs and the worker registry. */
  id?: string;
}

const durationSmoothing = 0.3;
const progressIntervalMs = 200;
const registryIntervalMs = 5_000;

interface RunningJob {
  controller: AbortController;
  reason?: 'cancelled' | 'timeout' | 'shutdown';
}

/** One GPU worker process's BullMQ worker over its engine; build it with {@link startRedisWorker}. */
export class RedisWorker {
  readonly id: string;
  readonly metrics: ServiceMetrics;
  readonly keys: RedisKeys;
  readonly store: JobStore;
  private readonly config: Config;
  private readonly engine: ImageEngine;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly timings: WorkerTimings;
  private readonly concurrency: number;
  private readonly connection: Redis;
  private readonly subscriber: Redis;
  private readonly scripts: AdmissionScripts;
  /** Created once Redis answers (start), so that a failed start leaves nothing behind. */
  private queue: Queue | undefined;
  private worker: Worker<QueuedJobData, OutputReference> | undefined;
  private readonly running = new Map<string, RunningJob>();
  private readonly averages: Partial<Record<JobKind, number>> = {};
  /** Jobs waiting in the shared queue, as last read (for /metrics). */
  private queueDepth = 0;
  private engineBusy = 0;
  private readonly engineWaiters: Array<() => void> = [];
  private registryTimer: NodeJS.Timeout | undefined;
  private accepting = false;
  private closing: Promise<void> | undefined;

  constructor(options: RedisWorkerOptions & { store: JobStore }) {
    this.config = options.config;
    this.engine = options.engine;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger();
    this.clock = options.clock ?? systemClock;
    this.timings = { ...defaultWorkerTimings, ...options.timings };
    this.concurrency = Math.max(1, options.concurrency ?? options.config.gpuSlots);
    this.id = options.id ?? `worker-${randomBytes(4).toString('hex')}`;
    this.keys = new RedisKeys({ ...defaultQueueNames, ...options.names });
    const onError = (error: Error): void => this.logger.warn({ err: error, worker: this.id }, 'Redis connection error; retrying');
    this.connection = connectRedis(this.config.redisUrl, { blocking: true, name: `imagine-${this.id}`, onError });
    this.subscriber = connectRedis(this.config.redisUrl, { blocking: true, name: `imagine-${this.id}-cancel`, onError });
    this.scripts = new AdmissionScripts(this.connection, this.keys);
    this.metrics = new ServiceMetrics(() => ({ queueDepth: this.queueDepth, running: this.running.size, slots: this.concurrency }));
  }

  /** Connects, publishes the engine's capabilities, registers and starts taking jobs. */
  async start(): Promise<void> {
    await waitForRedis(this.connection, this.config.redisUrl);
    this.queue = new Queue(this.keys.names.queue, { connection: this.connection, prefix: this.keys.names.prefix });
    await this.connection.set(this.keys.capabilities, JSON.stringify(this.engine.capabilities));
    await this.subscriber.subscribe(this.keys.cancelChannel);
    this.subscriber.on('message', (channel: string, jobId: string) => {
      if (channel === this.keys.cancelChannel) this.abort(jobId, 'cancelled');
    });
    await this.register();
    this.registryTimer = setInterval(() => void this.register().catch(() => undefined), registryIntervalMs);
    this.registryTimer.unref();
    this.worker = new Worker<QueuedJobData, OutputReference>(this.keys.names.queue, (job, token) => this.process(job, token), {
      connection: this.connection,
      prefix: this.keys.names.prefix,
      concurrency: this.concurrency,
      lockDuration: this.timings.lockDurationMs,
      stalledInterval: this.timings.stalledIntervalMs,
      maxStalledCount: this.timings.maxStalledCount,
      name: this.id,
    });
    this.worker.on('error', (error) => this.logger.warn({ err: error, worker: this.id }, 'queue worker error'));
    this.worker.on('failed', (job, error) => void this.onFailed(job, error).catch((caught: unknown) => this.logger.warn({ err: caught }, 'recording a failure failed')));
    await this.worker.waitUntilReady();
    this.accepting = true;
    this.logger.info({ worker: this.id, queue: this.keys.names.queue, slots: this.concurrency, engine: this.engine.capabilities.name }, 'GPU worker ready');
  }

  /** True while the worker takes jobs. */
  ready(): boolean {
    return this.accepting && this.connection.status === 'ready';
  }

  /** Jobs running here now. */
  get activeJobs(): number {
    return this.running.size;
  }

  /**
   * Stops taking jobs and lets running ones finish within `graceMs`; jobs still running then are
   * put back in the queue for another worker (their users see a retry notice), never failed.
   */
  close(graceMs: number = this.config.shutdownGraceSeconds * 1000): Promise<void> {
    this.closing ??= this.stop(graceMs);
    return this.closing;
  }

  /** Stops a job running here right away, e.g. for tests that simulate a lost GPU. */
  abort(jobId: string, reason: RunningJob['reason']): void {
    const job = this.running.get(jobId);
    if (!job || job.controller.signal.aborted) return;
    job.reason = reason;
    job.controller.abort();
  }

  private async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    clearInterval(this.registryTimer);
    this.logger.info({ worker: this.id, running: this.running.size, graceMs }, 'GPU worker stopping');
    if (this.worker) {
      const closed = this.worker.close();
      let timer: NodeJS.Timeout | undefined;
      const expired = await Promise.race([closed.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)))]);
      clearTimeout(timer);
      if (expired) for (const jobId of this.running.keys()) this.abort(jobId, 'shutdown');
      await closed;
    }
    if (this.queue) {
      await bounded(this.connection.hdel(this.keys.workers, this.id));
      await bounded(this.queue.close());
    }
    await closeRedis(this.subscriber);
    await closeRedis(this.connection);
    await bounded(this.store.close());
    this.logger.info({ worker: this.id }, 'GPU worker stopped');
  }

  private async register(): Promise<void> {
    const [stats, prioritized, waiting, delayed] = await Promise.all([
      this.connection.hgetall(this.keys.stats),
      this.connection.zcard(this.keys.prioritized),
      this.connection.llen(this.keys.wait),
      this.connection.zcard(this.keys.delayed),
    ]);
    this.queueDepth = prioritized + waiting + delayed;
    for (const [field, text] of Object.entries(stats)) {
      const value = Number(text);
      if (Number.isFinite(value) && value > 0) this.averages[field.replace(/^avg:/, '') as JobKind] = value;
    }
    await this.connection.hset(this.keys.workers, this.id, JSON.stringify({ slots: this.concurrency, seenAt: Date.now(), engine: this.engine.capabilities.name }));
  }

  // --- one job -----------------------------------------------------------------------------

  private async process(job: Job<QueuedJobData, OutputReference>, token: string | undefined): Promise<OutputReference> {
    const data = job.data;
    if (data?.version !== protocolVersion) {
      throw new UnrecoverableError(failureReason(serializeError(new ImagineError(ErrorCode.Internal, `Job ${job.id} has data of an unknown format (this worker speaks version ${protocolVersion}); are bots and workers the same release?`))));
    }
    const record: JobRecord = { ...data.record };
    const claim = await this.scripts.claim({ userKey: data.userKey, jobId: record.id, now: this.clock.now(), maxRunning: data.maxRunning, maxRunningPinned: data.maxRunningPinned === true });
    if (claim.kind === 'park') {
      await job.moveToDelayed(Date.now() + this.timings.parkMs, token);
      throw new DelayedError();
    }
    if (claim.kind === 'cancelled') {
      const error = serializeError(abortError('cancelled', record.id));
      await this.finishFailed(job, record, error);
      throw new UnrecoverableError(failureReason(error));
    }

    const attempt = claim.starts - 1;
    const startedAt = this.clock.now();
    record.status = 'running';
    record.startedAt = startedAt;
    if (attempt > 0) record.attempts = attempt;
    const running: RunningJob = { controller: new AbortController() };
    this.running.set(record.id, running);
    this.metrics.jobStarted(record.kind);
    this.logger.info({ jobId: record.id, kind: record.kind, user: data.userKey, attempt, worker: this.id, waitedMs: startedAt - record.createdAt }, 'job started');
    // Off the engine's path: the reports go out in order ahead of any progress, and the running
    // record is written before the final one.
    const saving = this.saveRecord({ ...record });
    // A cancel published between the claim and now reached nobody; its key did not.
    void this.connection.exists(this.keys.cancelled(record.id)).then((found) => {
      if (found) this.abort(record.id, 'cancelled');
    }, () => undefined);
    let reports: Promise<void> = (async () => {
      if (attempt > 0) await this.report(job, { type: 'retrying', attempt });
      await this.report(job, { type: 'started', attempt, etaMs: this.averageMs(record.kind), startedAt, worker: this.id });
    })();

    const signal = running.controller.signal;
    const timer = setTimeout(() => this.abort(record.id, 'timeout'), data.timeoutMs);
    timer.unref();
    let lastSent = 0;
    let fractionSent = -1;
    const onProgress = (progress: EngineProgress): void => {
      if (signal.aborted) return;
      const now = Date.now();
      if (progress.fraction < 1 && now - lastSent < progressIntervalMs) return;
      if (progress.fraction <= fractionSent) return;
      lastSent = now;
      fractionSent = progress.fraction;
      const elapsed = this.clock.now() - startedAt;
      const etaMs = progress.fraction > 0 ? Math.round((elapsed * (1 - progress.fraction)) / progress.fraction) : 0;
      reports = reports.then(() => this.report(job, { type: 'progress', fraction: progress.fraction, stage: progress.stage, etaMs }));
    };

    try {
      const result = await this.withEngine(signal, () => runRecord(this.engine, record, (id) => this.store.get(id), { signal, onProgress, retentionDays: this.config.jobRetentionDays }));
      if (signal.aborted) throw abortSignalError();
      const output = await buildOutput(record, result, { format: this.config.gridFormat, uploadLimitBytes: data.delivery.uploadLimitBytes ?? this.config.uploadLimitBytes });
      if (signal.aborted) throw abortSignalError();
      const reference: OutputReference = { key: this.keys.output(record.id), name: output.file.name, contentType: output.file.contentType, width: output.file.width, height: output.file.height, bytes: output.file.data.length };
      const finishedAt = this.clock.now();
      record.status = 'completed';
      record.finishedAt = finishedAt;
      const duration = finishedAt - startedAt;
      await saving;
      // Everything the bot reads on 'completed' is written before this returns.
      await Promise.all([
        reports,
        this.connection.set(reference.key, Buffer.from(output.file.data.buffer, output.file.data.byteOffset, output.file.data.byteLength), 'PX', this.timings.outputTtlMs),
        this.saveRecord(record),
        this.scripts.recordDuration(record.kind, duration, durationSmoothing).then((average) => (this.averages[record.kind] = average), () => undefined),
      ]);
      this.metrics.jobCompleted(record.kind, duration);
      await this.release(data, record.id, false);
      this.logger.info({ jobId: record.id, kind: record.kind, durationMs: duration, bytes: reference.bytes, worker: this.id }, 'job completed');
      return reference;
    } catch (caught) {
      await Promise.all([reports.catch(() => undefined), saving]);
      if (running.reason === 'shutdown') {
        // Not the user's problem: the job goes back to the queue and another worker retries it.
        await this.release(data, record.id, true);
        this.logger.info({ jobId: record.id, worker: this.id }, 'job put back for another worker (shutdown)');
        // Delayed until now rather than moved to wait: that wakes idle workers at once.
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      const error = running.reason ? abortError(running.reason, record.id, { timeoutMs: data.timeoutMs }) : caught;
      const serialized = isAbortError(error) ? serializeError(abortError('cancelled', record.id)) : serializeError(error);
      if (this.retriable(error, job)) {
        await this.release(data, record.id, true);
        this.logger.warn({ jobId: record.id, code: serialized.code, err: error, worker: this.id }, 'job failed; it will be retried');
        await this.report(job, { type: 'retrying', attempt: attempt + 1 });
        throw error instanceof Error ? error : new Error(String(error));
      }
      await this.finishFailed(job, record, serialized, error);
      throw new UnrecoverableError(failureReason(serialized));
    } finally {
      clearTimeout(timer);
      this.running.delete(record.id);
    }
  }

  /** Engine failures that are not the user's and not final get one more try, perhaps on another GPU. */
  private retriable(error: unknown, job: Job<QueuedJobData, OutputReference>): boolean {
    if (error instanceof ImagineError && (error.userFacing || error instanceof ModelError || error.code === ErrorCode.Upload)) return false;
    if (isAbortError(error)) return false;
    return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
  }

  private async finishFailed(job: Job<QueuedJobData, OutputReference>, record: JobRecord, error: SerializedError, cause?: unknown): Promise<void> {
    record.status = error.code === ErrorCode.Cancelled ? 'cancelled' : 'failed';
    record.error = error;
    record.finishedAt = this.clock.now();
    this.metrics.jobFailed(error.code);
    const level = error.userFacing ? 'info' : 'warn';
    this.logger[level]({ jobId: record.id, code: error.code, err: cause, worker: this.id }, 'job failed');
    await this.saveRecord(record).catch(() => undefined);
    await this.release(job.data, record.id, false);
  }

  /** A job failed without this worker's processor deciding it (e.g. it lost its workers too often). */
  private async onFailed(job: Job<QueuedJobData, OutputReference> | undefined, error: Error): Promise<void> {
    if (!job?.data?.record || error.name !== 'UnrecoverableError' || error.message.startsWith('{')) return;
    const record: JobRecord = (await this.store.get(job.data.record.id).catch(() => undefined)) ?? { ...job.data.record };
    if (record.status === 'completed' || record.status === 'failed' || record.status === 'cancelled') return;
    await this.finishFailed(job, record, serializeError(lostWorkerError(record.id, error.message)));
  }

  /** Writes a record, keeping a message reference a bot attached meanwhile. */
  private async saveRecord(record: JobRecord): Promise<void> {
    try {
      // Bots stash every message reference under its own key before anything else (attachMessage).
      if (!record.message) {
        const stashed = await this.connection.get(this.keys.message(record.id));
        if (stashed) record.message = JSON.parse(stashed) as JobRecord['message'];
      }
      await this.store.set(record);
    } catch (error) {
      this.logger.error({ err: error, jobId: record.id }, 'could not save the job record');
    }
  }

  /** Frees the user's running place and wakes their parked jobs. */
  private async release(data: QueuedJobData, jobId: string, requeue: boolean): Promise<void> {
    try {
      const parked = await this.scripts.release({ userKey: data.userKey, jobId, requeue, now: this.clock.now(), priority: data.priority });
      for (const id of parked) {
        const waiting = this.queue ? await Job.fromId(this.queue, id) : undefined;
        await waiting?.promote().catch(() => undefined);
      }
    } catch (error) {
      // The prune in the admission scripts frees the place once the job is finished.
      this.logger.warn({ err: error, jobId }, 'could not release the running place');
    }
  }

  private async report(job: Job<QueuedJobData, OutputReference>, event: WorkerEvent): Promise<void> {
    try {
      await job.updateProgress(event);
    } catch (error) {
      this.logger.debug({ err: error, jobId: job.id }, 'progress report failed');
    }
  }

  /** The measured average duration of a kind (shared by all workers), as last read. */
  private averageMs(kind: JobKind): number {
    return Math.round(this.averages[kind] ?? defaultJobDurationsMs[kind]);
  }

  /**
   * Runs an engine call once fewer than `concurrency` calls are in flight. A call whose job was
   * aborted may go on inside an engine that ignores the signal; it keeps its place until it
   * really stops, so that such an engine never runs more calls than it has slots.
   */
  private async withEngine(signal: AbortSignal, call: () => Promise<EngineResult>): Promise<EngineResult> {
    while (this.engineBusy >= this.concurrency) await new Promise<void>((resolve) => this.engineWaiters.push(resolve));
    if (signal.aborted) throw abortSignalError();
    this.engineBusy += 1;
    const engineCall = Promise.resolve().then(call);
    void engineCall.then(() => undefined, () => undefined).then(() => {
      this.engineBusy -= 1;
      this.engineWaiters.shift()?.();
    });
    return raceAbort(engineCall, signal);
  }
}

function lostWorkerError(jobId: string, reason: string): ImagineError {
  return new ImagineError(ErrorCode.Engine, `Job ${jobId} failed: ${reason} (its GPU workers stopped while running it).`);
}

/** Builds and starts a worker, creating the job store from the configuration when none is given. */
export async function startRedisWorker(options: RedisWorkerOptions): Promise<RedisWorker> {
  const logger = options.logger ?? silentLogger();
  const store = options.store ?? (await createJobStore(options.config, { logger }));
  const worker = new RedisWorker({ ...options, logger, store });
  try {
    await worker.start();
  } catch (error) {
    await worker.close(0).catch(() => undefined);
    throw error;
  }
  return worker;
}
