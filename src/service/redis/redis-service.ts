/**
 * The generation service of a bot process in QUEUE=redis. It admits jobs (per-user limits and
 * token bucket checked atomically in Redis, so several bot processes share one set of limits),
 * writes the record to the shared job store and enqueues the job in BullMQ with
 * priority = 1 + the user's pending jobs (but after the user's own waiting jobs), so that waiting
 * jobs interleave users round-robin and each user's jobs keep their order.
 * GPU workers (`npm run worker`, see worker.ts) run them; their reports come back through
 * QueueEvents to the listener of the bot that admitted the job.
 *
 * Admins' runtime limit changes (`getLimits`/`setLimits`) are kept in Redis and read by the
 * admission and claim scripts, so they apply to every bot process and worker at once and outlive
 * restarts; the configured limits apply where no change was made.
 *
 * Listeners live in the bot process that admitted the job, which owns it (see delivery-claims.ts).
 * When that process dies or restarts, a live bot process that registered an {@link OrphanDelivery}
 * for the job's platform adopts the job: at once when it hears the job end, at start-up, and in a
 * sweep every few refreshes. It shows the job's progress (if still running) and its result or
 * failure through the platform, and exactly one bot process shows each job's end.
 *
 * A graceful stop (SIGTERM for a restart or deploy) hands such jobs over rather than failing them:
 * they stay queued or running, their users hear `handedOver` once, and this bot releases them for
 * adoption. Jobs nobody else could show (no delivery for their platform, or SHUTDOWN_HANDOVER=off)
 * end as in memory mode: taken back if waiting, else given the grace period, then cancelled.
 */
import { randomInt } from 'node:crypto';
import { Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/config.js';
import type { EngineCapabilities, VariationStrength } from '../../engine/engine.js';
import { EngineError, ErrorCode, ImagineError, JobError, StoreError, UserError, serializeError, type SerializedError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logger.js';
import { systemClock, type Clock } from '../clock.js';
import { EventChain } from '../event-chain.js';
import {
  abortError,
  buildOutput,
  checkIndex,
  checkParameters,
  copyRecord,
  defaultJobDurationsMs,
  engineImage,
  gridSeeds,
  imageOf,
  mayControl,
  newRecord,
  rateLimitedError,
  requireFinished,
  shuttingDownError,
  tooManyQueuedError,
  tooManyRunningError,
  userKeyOf,
  userLimits,
  withTimeout,
  type UserLimits,
} from '../job-requests.js';
import { createJobStore, type JobStore } from '../job-store.js';
import { checkLimitChanges, limitNames, withOverrides, type LimitControls, type LimitValues } from '../limits.js';
import { ServiceMetrics } from '../metrics.js';
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
  OrphanDelivery,
  Requester,
} from '../types.js';
import { DeliveryClaims } from './delivery-claims.js';
import { RedisFirstSightings } from './first-sightings.js';
import type { FirstSightings } from '../first-sightings.js';
import { bounded, closeRedis, connectRedis, defaultQueueNames, RedisKeys, waitForRedis, type QueueNames } from './keys.js';
import { failureReason, isWorkerEvent, parseFailureReason, protocolVersion, type OutputReference, type QueuedJobData, type WorkerEvent } from './protocol.js';
import { RemoteEngine } from './remote-engine.js';
import { AdmissionScripts, type PinnedLimits } from './scripts.js';

/** Options of {@link RedisGenerationService}. */
export interface RedisGenerationServiceOptions {
  config: Config;
  /** Default: {@link createJobStore} from the configuration (Redis when QUEUE=redis). Closed on shutdown. */
  store?: JobStore;
  logger?: Logger;
  /** Time for token buckets and records; every bot and worker should agree on it (NTP). */
  clock?: Clock;
  names?: Partial<QueueNames>;
  /** The engine's capabilities; by default those the GPU workers published in Redis. */
  capabilities?: EngineCapabilities;
  /** How long start-up waits for a worker to publish capabilities. Default 120 000 ms. */
  capabilitiesTimeoutMs?: number;
  /** Overrides of the configured limits for some users (admins, benchmarks); they beat an admin's runtime changes. */
  limitsFor?: (requester: Requester) => Partial<UserLimits> | undefined;
  /** Seeds of the duration averages until workers have measured some. */
  defaultDurationsMs?: Partial<Record<JobKind, number>>;
  /** Random base seeds for rerolls and variations. */
  randomSeed?: () => number;
  /** A second press of the same button by the same user within this window is refused. Default 10 000 ms. */
  pressWindowMs?: number;
  /** How often positions, averages and live workers are re-read. Default 1 000 ms. */
  refreshIntervalMs?: number;
  /** Tries a job gets for engine failures (stalls are counted separately by the workers). Default 2. */
  attempts?: number;
  /** How long this bot may miss its heartbeat before other bots adopt its jobs. Default 15 000 ms. */
  ownerTimeoutMs?: number;
  /** How long a claim on showing a job's end outlives a bot that died while showing it. Default 120 000 ms. */
  deliveryLeaseMs?: number;
}

interface LocalJob {
  record: JobRecord;
  listener: JobListener;
  userKey: string;
  priority: number;
  state: 'queued' | 'running' | 'finished';
  /** Set while this process takes the job out of the queue, so that its own 'removed' event is not taken for someone else's cancel. */
  removing?: boolean;
  lastPosition?: number;
  announcedAttempt: number;
  started: boolean;
  fraction: number;
  startedAt?: number;
  chain: EventChain;
  done: Promise<void>;
  markDone: () => void;
}

const finishedStatuses = new Set(['completed', 'failed', 'cancelled']);
const workerSeenWithinMs = 15_000;

/** Rounds up to whole milliseconds, ignoring floating-point dust. */
function wholeMs(ms: number): number {
  return Math.ceil(ms - 1e-6);
}

/** The {@link GenerationService} of a bot process when QUEUE=redis; build it with {@link createRedisGenerationService}. */
export class RedisGenerationService implements GenerationService, LimitControls {
  readonly store: JobStore;
  readonly metrics: ServiceMetrics;
  readonly keys: RedisKeys;
  /** The engine as this process sees it: the workers' capabilities. */
  readonly engine: RemoteEngine;
  private readonly config: Config;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly options: RedisGenerationServiceOptions;
  private readonly randomSeed: () => number;
  private readonly connection: Redis;
  private readonly eventsConnection: Redis;
  private readonly scripts: AdmissionScripts;
  private readonly claims: DeliveryClaims;
  /** How each platform shows jobs whose bot process is gone, by platform. */
  private readonly orphanDeliveries = new Map<string, OrphanDelivery>();
  /** Jobs being adopted right now, so that two triggers do not adopt one job twice. */
  private readonly adopting = new Set<string>();
  private sweeping: Promise<number> | undefined;
  /** Created once Redis answers (start), so that a failed start leaves nothing behind. */
  private queue!: Queue<QueuedJobData, OutputReference>;
  private queueEvents: QueueEvents | undefined;
  private currentCapabilities: EngineCapabilities | undefined;
  private readonly jobs = new Map<string, LocalJob>();
  private readonly averageMs: Record<JobKind, number>;
  private gauges = { waiting: 0, active: 0, slots: 0 };
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshScheduled = false;
  private refreshing: Promise<void> | undefined;
  private ticks = 0;
  private accepting = false;
  private shutdownPromise: Promise<void> | undefined;

  constructor(options: RedisGenerationServiceOptions & { store: JobStore }) {
    this.options = options;
    this.config = options.config;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger();
    this.clock = options.clock ?? systemClock;
    this.randomSeed = options.randomSeed ?? (() => randomInt(0, 2 ** 32));
    this.keys = new RedisKeys({ ...defaultQueueNames, ...options.names });
    const onError = (error: Error): void => this.logger.warn({ err: error }, 'Redis connection error; retrying');
    this.connection = connectRedis(this.config.redisUrl, { name: 'imagine-bot', onError });
    this.eventsConnection = connectRedis(this.config.redisUrl, { blocking: true, name: 'imagine-bot-events', onError });
    this.scripts = new AdmissionScripts(this.connection, this.keys);
    this.claims = new DeliveryClaims(this.connection, this.keys, {
      ...(options.ownerTimeoutMs !== undefined ? { ownerTimeoutMs: options.ownerTimeoutMs } : {}),
      ...(options.deliveryLeaseMs !== undefined ? { leaseMs: options.deliveryLeaseMs } : {}),
      onError: (error) => this.logger.warn({ err: error }, 'could not renew the bot heartbeat'),
    });
    this.averageMs = { ...defaultJobDurationsMs, ...options.defaultDurationsMs };
    this.currentCapabilities = options.capabilities;
    this.engine = new RemoteEngine(() => this.capabilities);
    this.metrics = new ServiceMetrics(() => ({ queueDepth: this.gauges.waiting, running: this.gauges.active, slots: this.gauges.slots }));
  }

  /** The capabilities of the engine the workers run. */
  get capabilities(): EngineCapabilities {
    if (!this.currentCapabilities) throw new EngineError('No GPU worker has published its model yet; start one with `npm run worker`.', { code: ErrorCode.ProviderUnavailable });
    return this.currentCapabilities;
  }

  /** Connects, waits for the workers' capabilities, and starts hearing queue events. */
  async start(): Promise<void> {
    await waitForRedis(this.connection, this.config.redisUrl);
    this.queue = new Queue<QueuedJobData, OutputReference>(this.keys.names.queue, { connection: this.connection, prefix: this.keys.names.prefix });
    this.queue.on('error', (error) => this.logger.warn({ err: error }, 'queue connection error'));
    if (!this.currentCapabilities) this.currentCapabilities = await this.waitForCapabilities(this.options.capabilitiesTimeoutMs ?? 120_000);
    // Hear every event after this moment, including those of jobs added before the first XREAD.
    const last = (await this.connection.xrevrange(this.keys.events, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
    const events = new QueueEvents(this.keys.names.queue, { connection: this.eventsConnection, prefix: this.keys.names.prefix, lastEventId: last, blockingTimeout: 5000 });
    this.queueEvents = events;
    events.on('error', (error) => this.logger.warn({ err: error }, 'queue events error'));
    events.on('progress', ({ jobId, data }) => this.onWorkerEvent(jobId, data));
    events.on('stalled', ({ jobId }) => this.onStalled(jobId));
    events.on('completed', ({ jobId, returnvalue }) => this.onCompleted(jobId, returnvalue as unknown));
    events.on('failed', ({ jobId, failedReason }) => this.onFailed(jobId, failedReason));
    events.on('removed', ({ jobId }) => this.onRemoved(jobId));
    for (const event of ['active', 'waiting', 'delayed', 'added'] as const) events.on(event, () => this.scheduleRefresh());
    await events.waitUntilReady();
    await this.refresh();
    // Saved changes outlive restarts and beat the environment: say so, or a changed setting looks ignored.
    const [limits, configured] = [await this.getLimits(), this.configuredLimits()];
    const changed = limitNames.filter((name) => limits[name] !== configured[name]);
    if (changed.length > 0) this.logger.info({ limits, changed }, 'limits changed by an admin (admin set-limit) apply instead of the configured ones');
    this.refreshTimer = setInterval(() => this.scheduleRefresh(), this.options.refreshIntervalMs ?? 1000);
    this.refreshTimer.unref();
    await this.claims.start();
    this.accepting = true;
    this.logger.info({ queue: this.keys.names.queue, engine: this.capabilities.name, workerSlots: this.gauges.slots, bot: this.claims.botId }, 'redis generation service ready');
  }

  /** True while the service takes work and Redis answers. */
  ready(): boolean {
    return this.accepting && this.connection.status === 'ready';
  }

  async imagine(requester: Requester, parameters: ImagineParameters, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    this.checkAccepting();
    const capabilities = this.capabilities;
    const checked = checkParameters(capabilities, parameters);
    const size = capabilities.sizes[checked.aspectRatio]!;
    const record = newRecord('imagine', requester, checked, gridSeeds(checked.seed), size, capabilities.name, this.clock.now());
    return this.admit(record, listener, options);
  }

  async reroll(requester: Requester, jobId: string, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    this.checkAccepting();
    const parent = await this.finishedParent(jobId);
    const parameters: ImagineParameters = { ...parent.parameters, seed: this.randomSeed() };
    const size = this.capabilities.sizes[parameters.aspectRatio] ?? { width: parent.width, height: parent.height };
    const record = newRecord('reroll', requester, parameters, gridSeeds(parameters.seed), size, this.capabilities.name, this.clock.now());
    record.parent = { jobId: parent.id, index: 0 };
    return this.admit(record, listener, options, `${jobId}:0:reroll`);
  }

  async vary(requester: Requester, jobId: string, index: number, strength: VariationStrength, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    this.checkAccepting();
    if (strength !== 'subtle' && strength !== 'strong') throw new UserError(ErrorCode.InvalidAction, 'A variation is either subtle or strong.', { field: 'strength' });
    checkIndex(index, 4);
    const parent = await this.finishedParent(jobId);
    const stored = imageOf(parent, index);
    const parameters: ImagineParameters = { ...parent.parameters, seed: this.randomSeed() };
    const record = newRecord('variation', requester, parameters, gridSeeds(parameters.seed), stored, this.capabilities.name, this.clock.now());
    record.parent = { jobId: parent.id, index };
    record.strength = strength;
    return this.admit(record, listener, options, `${jobId}:${index}:vary-${strength}`);
  }

  async upscale(requester: Requester, jobId: string, index: number, listener: JobListener, options: DeliveryOptions = {}): Promise<JobTicket> {
    this.checkAccepting();
    checkIndex(index, 4);
    const parent = await this.finishedParent(jobId);
    if (parent.kind === 'upscale') throw new UserError(ErrorCode.InvalidAction, 'This image is already upscaled. Use Vary or 🔄 instead.');
    const stored = imageOf(parent, index);
    const factor = this.capabilities.upscaleFactor;
    const record = newRecord('upscale', requester, { ...parent.parameters }, [stored.seed], { width: stored.width * factor, height: stored.height * factor }, this.capabilities.name, this.clock.now());
    record.parent = { jobId: parent.id, index };
    return this.admit(record, listener, options, `${jobId}:${index}:upscale`);
  }

  async cancel(requester: Requester, jobId: string): Promise<JobRecord> {
    const local = this.jobs.get(jobId);
    const record = (await this.store.get(jobId)) ?? local?.record;
    if (!record) throw new JobError(ErrorCode.JobNotFound, 'That job has expired or never existed, so there is nothing to cancel.', jobId);
    if (!mayControl(this.config, requester, record)) throw new JobError(ErrorCode.NotPermitted, 'Only the person who started this job, or an admin, can cancel it.', jobId);
    const state = await this.queue.getJobState(jobId);
    if (finishedStatuses.has(record.status) || state === 'completed' || state === 'failed' || state === 'unknown' || local?.state === 'finished') {
      throw new UserError(ErrorCode.InvalidAction, `That job has already ${record.status === 'completed' || state === 'completed' ? 'finished' : 'ended'}; there is nothing to cancel.`);
    }
    const error = abortError('cancelled', jobId);
    await this.connection.set(this.keys.cancelled(jobId), '1', 'PX', 7 * 24 * 3_600_000);
    if (local) local.removing = true;
    const removed = await this.queue.remove(jobId).catch(() => 0);
    if (local && removed !== 1) local.removing = false;
    if (removed === 1) {
      // It had not started: nobody else will write its record.
      await this.forgetQueued(userKeyOf(record.requester), jobId);
      const cancelled = { ...copyRecord(record), status: 'cancelled' as const, error: serializeError(error), finishedAt: this.clock.now() };
      await this.store.set(cancelled).catch((caught: unknown) => this.logger.warn({ err: caught, jobId }, 'could not save the cancelled record'));
      if (local) this.finishFailed(local, cancelled, cancelled.error);
    } else {
      // Running (or being picked up right now): the worker that holds it stops and reports.
      await this.connection.publish(this.keys.cancelChannel, jobId);
    }
    this.scheduleRefresh();
    return { ...copyRecord(record), status: 'cancelled' };
  }

  async info(requester: Requester): Promise<InfoSnapshot> {
    const key = userKeyOf(requester);
    const configured = this.limitsOf(requester);
    const now = this.clock.now();
    const [{ tokens, limits }, runningIds, queuedIds] = await Promise.all([
      this.scripts.peek(key, now, configured.limits, configured.pinned),
      this.connection.zrange(this.keys.running(key), 0, -1),
      this.connection.zrange(this.keys.queued(key), 0, -1),
    ]);
    const whole = Math.floor(tokens);
    const nextTokenInMs = tokens >= limits.burst ? 0 : wholeMs(((whole + 1 - tokens) * 60_000) / limits.ratePerMinute);
    const records = async (ids: string[]): Promise<JobRecord[]> => (await Promise.all(ids.map((id) => this.getJob(id)))).filter((record): record is JobRecord => record !== undefined && !finishedStatuses.has(record.status));
    const [running, queuedRecords, priorities] = await Promise.all([records(runningIds), records(queuedIds), this.priorities(queuedIds)]);
    const positions = await this.scripts.positions(queuedIds.map((id, index) => ({ id, priority: priorities[index]! })));
    const queued = queuedRecords
      .map((job) => ({ job, position: Math.abs(positions[queuedIds.indexOf(job.id)] ?? 0) }))
      .sort((a, b) => a.position - b.position);
    await this.refresh();
    return {
      requester,
      running,
      queued,
      limits: { ratePerMinute: limits.ratePerMinute, burst: limits.burst, maxRunning: limits.maxRunning, maxQueued: limits.maxQueued, tokensLeft: whole, nextTokenInMs },
      queueLength: this.gauges.waiting,
      slots: this.gauges.slots,
      engine: this.capabilities.name,
      averageJobMs: Math.round(this.averageMs.imagine),
    };
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    const stored = await this.store.get(jobId);
    if (stored) return stored;
    const local = this.jobs.get(jobId);
    return local ? copyRecord(local.record) : undefined;
  }

  async attachMessage(jobId: string, message: MessageReference): Promise<void> {
    const ttl = Math.round(this.config.jobRetentionDays * 24 * 3_600_000);
    // Stashed first, so that a worker writing the final record meanwhile picks it up.
    await this.connection.set(this.keys.message(jobId), JSON.stringify(message), 'PX', ttl);
    const local = this.jobs.get(jobId);
    if (local) local.record.message = { ...message };
    const record = (await this.store.get(jobId)) ?? (local ? copyRecord(local.record) : undefined);
    if (!record) {
      await this.connection.del(this.keys.message(jobId));
      throw new JobError(ErrorCode.JobNotFound, 'That job has expired or never existed.', jobId);
    }
    // Workers write every record until it is final; only a final one is safe to write here.
    if (finishedStatuses.has(record.status)) {
      record.message = { ...message };
      await this.store.set(record);
    }
  }

  shutdown(graceMs: number = this.config.shutdownGraceSeconds * 1000): Promise<void> {
    this.shutdownPromise ??= this.stop(graceMs);
    return this.shutdownPromise;
  }

  // --- runtime limits ----------------------------------------------------------------------

  /** The limits every bot of this deployment enforces now: an admin's changes over this bot's configuration. */
  async getLimits(): Promise<LimitValues> {
    let stored: Record<string, string>;
    try {
      stored = await this.connection.hgetall(this.keys.limits);
    } catch (error) {
      throw new StoreError('Could not read the limits from Redis.', { cause: error });
    }
    return withOverrides(this.configuredLimits(), stored);
  }

  /**
   * Saves the changes in Redis, where every bot's next admission (and every worker's next claim)
   * reads them; they outlive restarts. Throws a RangeError for a value outside `limitRanges`.
   */
  async setLimits(changes: Partial<LimitValues>): Promise<LimitValues> {
    const checked = checkLimitChanges(changes);
    if (Object.keys(checked).length === 0) return this.getLimits();
    let replies: Array<[Error | null, unknown]> | null;
    try {
      replies = await this.connection.multi().hset(this.keys.limits, checked).hgetall(this.keys.limits).exec();
    } catch (error) {
      throw new StoreError('Could not save the limits in Redis.', { cause: error });
    }
    const failure = replies?.find(([error]) => error)?.[0];
    if (!replies || failure) throw new StoreError('Could not save the limits in Redis.', { cause: failure ?? undefined });
    this.logger.info({ changes: checked }, 'limits changed for every bot');
    return withOverrides(this.configuredLimits(), replies[1]?.[1] as Record<string, string> | undefined);
  }

  /** This bot's configured limits, before an admin's changes. */
  private configuredLimits(): LimitValues {
    return { ratePerMinute: this.config.rateLimitPerMinute, burst: this.config.rateLimitBurst, maxRunning: this.config.maxRunningPerUser, maxQueued: this.config.maxQueuedPerUser };
  }

  /** A user's configured limits, and which of them `limitsFor` fixed (an admin's change does not apply to those). */
  private limitsOf(requester: Requester): { limits: UserLimits; pinned: PinnedLimits } {
    const fixed = this.options.limitsFor?.(requester) ?? {};
    const pinned: PinnedLimits = {};
    for (const name of limitNames) if (fixed[name] !== undefined) pinned[name] = true;
    return { limits: userLimits(this.config, requester, this.options.limitsFor), pinned };
  }

  // --- admission -------------------------------------------------------------------------

  private checkAccepting(): void {
    if (!this.accepting) {
      this.metrics.requestRejected(ErrorCode.ShuttingDown);
      throw shuttingDownError();
    }
  }

  private async admit(record: JobRecord, listener: JobListener, delivery: DeliveryOptions, press?: string): Promise<JobTicket> {
    this.checkAccepting();
    const userKey = userKeyOf(record.requester);
    const configured = this.limitsOf(record.requester);
    const now = this.clock.now();
    const result = await this.scripts
      .admit({ userKey, jobId: record.id, now, limits: configured.limits, pinned: configured.pinned, ...(press ? { pressSignature: `${press}:${userKey}` } : {}), pressTtlMs: this.options.pressWindowMs ?? 10_000 })
      .catch((error: unknown) => {
        throw new StoreError(`The job queue (Redis) could not admit the job: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      });
    // The limits in force (an admin may have changed them in Redis), for the messages and the workers.
    const { limits } = result;
    if (result.kind === 'duplicate') {
      this.metrics.requestRejected(ErrorCode.InvalidAction);
      throw new UserError(ErrorCode.InvalidAction, 'You pressed that button a moment ago; that job is already on its way.');
    }
    if (result.kind === 'full') {
      const error = result.queued === 0
        ? tooManyRunningError(result.running, limits.maxRunning, result.oldestRunningStart === undefined ? this.averageMs.imagine : Math.max(0, this.averageMs.imagine - (now - result.oldestRunningStart)))
        : tooManyQueuedError(result.queued, limits.maxQueued, Math.max(1000, await this.startDelayOf(result.headId)));
      this.metrics.requestRejected(error.code);
      throw error;
    }
    if (result.kind === 'rate') {
      this.metrics.requestRejected(ErrorCode.RateLimited);
      throw rateLimitedError(limits, Math.max(1, wholeMs(result.retryAfterMs)));
    }

    // BullMQ: a lower number runs first, equal numbers in arrival order.
    const priority = result.priority;
    const job = this.localJob(record, listener, userKey, priority);
    this.jobs.set(record.id, job);
    const data: QueuedJobData = { version: protocolVersion, record, delivery: { ...delivery }, userKey, maxRunning: limits.maxRunning, ...(configured.pinned.maxRunning ? { maxRunningPinned: true } : {}), priority, timeoutMs: this.config.jobTimeoutSeconds * 1000 };
    try {
      // Owned by this bot until shown, so that another bot shows it if this one dies meanwhile.
      await this.claims.track(record.id, record.requester.platform, now);
      // The record is written before the job can start, so that no later write of a worker is overtaken.
      await this.store.set(record);
      await this.queue.add(record.kind, data, {
        jobId: record.id,
        priority,
        attempts: this.options.attempts ?? 2,
        removeOnComplete: { age: 3600, count: 10_000 },
        removeOnFail: { age: 24 * 3600, count: 10_000 },
      });
    } catch (error) {
      this.jobs.delete(record.id);
      await this.forgetQueued(userKey, record.id).catch(() => undefined);
      await this.claims.done(record.id).catch(() => undefined);
      this.logger.error({ err: error, jobId: record.id }, 'could not queue the job');
      throw error instanceof ImagineError ? error : new StoreError(`The job queue (Redis) could not take the job: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    this.logger.info({ jobId: record.id, kind: record.kind, user: userKey, priority }, 'job admitted');
    const [place] = await this.scripts.positions([{ id: record.id, priority }]).catch(() => [1]);
    const position = job.state === 'queued' ? Math.abs(place ?? 0) : 0;
    const etaMs = this.etaFor(position, record.kind);
    if (position > 0 && job.state === 'queued') {
      job.lastPosition = position;
      const snapshot = copyRecord(record);
      job.chain.push(() => listener.queued?.({ job: snapshot, position, etaMs }));
    }
    this.scheduleRefresh();
    return { job: copyRecord(record), position, etaMs };
  }

  /** A job this process shows through `listener`, from now until its end has been shown. */
  private localJob(record: JobRecord, listener: JobListener, userKey: string, priority: number): LocalJob {
    let markDone!: () => void;
    const done = new Promise<void>((resolve) => (markDone = resolve));
    return {
      record,
      listener,
      userKey,
      priority,
      state: 'queued',
      announcedAttempt: 0,
      started: false,
      fraction: 0,
      chain: new EventChain((error) => this.logger.warn({ err: error, jobId: record.id }, 'a listener call failed')),
      done,
      markDone,
    };
  }

  /** Drops a job that will never start from its user's sets. */
  private forgetQueued(userKey: string, jobId: string): Promise<void> {
    return this.scripts.forget(userKey, jobId);
  }

  private async finishedParent(jobId: string): Promise<JobRecord> {
    return requireFinished(await this.store.get(jobId), jobId, this.config.jobRetentionDays);
  }

  // --- estimates -----------------------------------------------------------------------------

  /** Expected time until a job at `position` (1-based; 0 = running) finishes. */
  private etaFor(position: number, kind: JobKind): number {
    const own = this.averageMs[kind];
    if (position <= 0) return Math.round(own);
    const slots = Math.max(1, this.gauges.slots);
    // Jobs running now are on average half done.
    const busy = Math.min(this.gauges.active, slots) / slots;
    return Math.round(own * ((position - 1) / slots + busy * 0.5) + own);
  }

  private async startDelayOf(jobId: string | undefined): Promise<number> {
    if (!jobId) return this.averageMs.imagine;
    const [priority] = await this.priorities([jobId]);
    const [place] = await this.scripts.positions([{ id: jobId, priority: priority! }]);
    return this.etaFor(Math.abs(place ?? 1), 'imagine') - this.averageMs.imagine;
  }

  private async priorities(ids: string[]): Promise<number[]> {
    if (ids.length === 0) return [];
    const pipeline = this.connection.pipeline();
    for (const id of ids) pipeline.hget(`${this.keys.jobPrefix}${id}`, 'priority');
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([, value]) => Number(value ?? 1) || 1);
  }

  private async waitForCapabilities(timeoutMs: number): Promise<EngineCapabilities> {
    const deadline = Date.now() + timeoutMs;
    let logged = false;
    for (;;) {
      const text = await this.connection.get(this.keys.capabilities);
      if (text) return JSON.parse(text) as EngineCapabilities;
      if (Date.now() > deadline) {
        throw new EngineError(`No GPU worker has joined the queue "${this.keys.names.queue}" within ${Math.round(timeoutMs / 1000)} s. Start one with \`npm run worker\` (QUEUE=redis, the same REDIS_URL).`, { code: ErrorCode.ProviderUnavailable });
      }
      if (!logged) this.logger.info({ queue: this.keys.names.queue }, 'waiting for a GPU worker to publish its model');
      logged = true;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Position updates for a burst of events go out once, after the burst. */
  private scheduleRefresh(): void {
    if (this.refreshScheduled || this.shutdownPromise) return;
    this.refreshScheduled = true;
    setTimeout(() => {
      this.refreshScheduled = false;
      void this.refresh().catch((error: unknown) => this.logger.debug({ err: error }, 'refresh failed'));
    }, 20).unref();
  }

  /** Re-reads averages, live workers and queue sizes, and tells waiting listeners their new place. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.readState().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async readState(): Promise<void> {
    this.ticks += 1;
    const replies = (await this.connection
      .pipeline()
      .hgetall(this.keys.stats)
      .hgetall(this.keys.workers)
      .zcard(this.keys.prioritized)
      .llen(this.keys.wait)
      .zcard(this.keys.delayed)
      .llen(this.keys.active)
      .get(this.keys.capabilities)
      .exec()) ?? [];
    const value = (index: number): unknown => replies[index]?.[1];
    const stats = (value(0) ?? {}) as Record<string, string>;
    for (const [field, text] of Object.entries(stats)) {
      const kind = field.replace(/^avg:/, '') as JobKind;
      const average = Number(text);
      if (kind in this.averageMs && Number.isFinite(average) && average > 0) this.averageMs[kind] = average;
    }
    let slots = 0;
    const now = Date.now();
    for (const text of Object.values((value(1) ?? {}) as Record<string, string>)) {
      try {
        const entry = JSON.parse(text) as { slots?: number; seenAt?: number };
        if ((entry.seenAt ?? 0) > now - workerSeenWithinMs) slots += entry.slots ?? 1;
      } catch {
        // A malformed entry is ignored.
      }
    }
    this.gauges = { waiting: Number(value(2) ?? 0) + Number(value(3) ?? 0) + Number(value(4) ?? 0), active: Number(value(5) ?? 0), slots };
    const capabilities = value(6);
    if (typeof capabilities === 'string') this.currentCapabilities = JSON.parse(capabilities) as EngineCapabilities;

    const waiting = [...this.jobs.values()].filter((job) => job.state === 'queued');
    const places = await this.scripts.positions(waiting.map((job) => ({ id: job.record.id, priority: job.priority })));
    waiting.forEach((job, index) => {
      const position = Math.abs(places[index] ?? 0);
      if (position === 0 || job.state !== 'queued' || job.lastPosition === position) return;
      job.lastPosition = position;
      const etaMs = this.etaFor(position, job.record.kind);
      const snapshot = copyRecord(job.record);
      job.chain.push(() => job.listener.queued?.({ job: snapshot, position, etaMs }));
    });
    if (this.ticks % 5 === 0) {
      await this.reconcile();
      void this.adoptOrphans().catch((error: unknown) => this.logger.debug({ err: error }, 'looking for orphaned jobs failed'));
    }
  }

  /** Settles local jobs whose end was missed (e.g. the event stream was trimmed while Redis was away). */
  private async reconcile(): Promise<void> {
    const cutoff = this.clock.now() - 5_000;
    for (const job of this.jobs.values()) {
      if (job.state === 'finished' || job.record.createdAt > cutoff) continue;
      const state = await this.queue.getJobState(job.record.id).catch(() => undefined);
      if (state === 'completed') {
        const bullJob = await Job.fromId<QueuedJobData, OutputReference>(this.queue, job.record.id);
        this.onCompleted(job.record.id, bullJob?.returnvalue);
      } else if (state === 'failed') {
        const bullJob = await Job.fromId(this.queue, job.record.id);
        this.onFailed(job.record.id, bullJob?.failedReason ?? '');
      } else if (state === 'unknown') {
        this.onRemoved(job.record.id);
      }
    }
  }

  // --- events from workers -----------------------------------------------------------------

  private onWorkerEvent(jobId: string, data: unknown): void {
    const job = this.jobs.get(jobId);
    if (!job || job.state === 'finished' || !isWorkerEvent(data)) return;
    const event = data as WorkerEvent;
    switch (event.type) {
      case 'started': {
        job.state = 'running';
        job.record.status = 'running';
        job.record.startedAt = event.startedAt;
        if (event.attempt > 0) job.record.attempts = event.attempt;
        job.startedAt = event.startedAt;
        if (job.started) return;
        job.started = true;
        this.metrics.jobStarted(job.record.kind);
        const snapshot = copyRecord(job.record);
        job.chain.push(() => job.listener.started?.({ job: snapshot, etaMs: event.etaMs }));
        this.scheduleRefresh();
        return;
      }
      case 'progress': {
        if (event.fraction < job.fraction) return;
        job.fraction = event.fraction;
        const update = { job: copyRecord(job.record), fraction: event.fraction, stage: event.stage, etaMs: event.etaMs };
        job.chain.push(() => job.listener.progress?.(update), 'progress');
        return;
      }
      case 'retrying':
        this.announceRetry(job, event.attempt);
        return;
    }
  }

  private onStalled(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job || job.state === 'finished') return;
    this.announceRetry(job, job.announcedAttempt + 1);
  }

  /** Tells the user once per retry that their job starts over (a worker died or failed). */
  private announceRetry(job: LocalJob, attempt: number): void {
    if (attempt <= job.announcedAttempt) return;
    job.announcedAttempt = attempt;
    job.record.attempts = attempt;
    job.fraction = 0;
    this.logger.info({ jobId: job.record.id, attempt }, 'job is being retried');
    const snapshot = copyRecord(job.record);
    job.chain.push(() => job.listener.retrying?.({ job: snapshot, attempt }));
  }

  private onCompleted(jobId: string, returnvalue: unknown): void {
    const job = this.jobs.get(jobId);
    if (!job) {
      this.adoptSoon(jobId);
      return;
    }
    if (job.state === 'finished') return;
    job.state = 'finished';
    const reference = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as OutputReference | undefined;
    this.deliverEnd(job, async () => {
      let output: JobOutput;
      try {
        output = await this.readOutput(job, reference);
      } catch (error) {
        this.logger.warn({ err: error, jobId }, 'could not read a finished job');
        const failure = serializeError(error instanceof ImagineError ? error : new ImagineError(ErrorCode.Upload, `Reading the result of job ${jobId} failed.`, { cause: error }));
        this.metrics.jobFailed(failure.code);
        await job.listener.failed({ job: copyRecord(job.record), error: failure });
        return;
      }
      const duration = (output.job.finishedAt ?? this.clock.now()) - (output.job.startedAt ?? job.startedAt ?? output.job.createdAt);
      this.metrics.jobCompleted(output.job.kind, duration);
      job.record = copyRecord(output.job);
      try {
        await job.listener.completed(output);
        if (reference?.key) await this.connection.del(reference.key).catch(() => undefined);
      } catch (error) {
        this.logger.warn({ err: error, jobId }, 'delivering a finished job failed');
        this.metrics.jobFailed(ErrorCode.Upload);
        const failure = new ImagineError(ErrorCode.Upload, `Delivering job ${jobId} failed.`, { cause: error });
        await job.listener.failed({ job: copyRecord(output.job), error: serializeError(failure) });
      }
    });
    this.retire(job);
  }

  /**
   * The finished file: from Redis, where the worker left it, or drawn again from the stored images
   * when it has expired (a job adopted long after it finished).
   */
  private async readOutput(job: LocalJob, reference: OutputReference | undefined): Promise<JobOutput> {
    const [data, record] = await Promise.all([reference?.key ? this.connection.getBuffer(reference.key) : null, this.store.get(job.record.id)]);
    if (data && reference) {
      const finished = record ?? { ...copyRecord(job.record), status: 'completed' as const };
      return { job: finished, file: { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), name: reference.name, contentType: reference.contentType, width: reference.width, height: reference.height } };
    }
    if (record?.status === 'completed' && record.images && record.images.length > 0) {
      const images = await Promise.all(record.images.map((image) => engineImage(image)));
      const output = await buildOutput(copyRecord(record), { images, promptTruncated: record.promptTruncated ?? false }, { format: this.config.gridFormat, uploadLimitBytes: this.config.uploadLimitBytes });
      return { job: record, file: output.file };
    }
    if (!reference?.key) throw new ImagineError(ErrorCode.Internal, `Job ${job.record.id} finished without a result.`);
    throw new ImagineError(ErrorCode.Upload, `The result of job ${job.record.id} expired before it could be delivered.`);
  }

  private onFailed(jobId: string, failedReason: string): void {
    const job = this.jobs.get(jobId);
    if (!job) {
      this.adoptSoon(jobId);
      return;
    }
    if (job.state === 'finished') return;
    const error = parseFailureReason(failedReason) ?? serializeError(new ImagineError(ErrorCode.Engine, `Job ${jobId} failed: ${failedReason || 'no reason given'} (its GPU workers stopped while running it).`));
    job.state = 'finished';
    this.deliverEnd(job, async () => {
      const stored = await this.store.get(jobId).catch(() => undefined);
      const record = stored && finishedStatuses.has(stored.status) ? stored : { ...copyRecord(job.record), status: error.code === ErrorCode.Cancelled ? ('cancelled' as const) : ('failed' as const), error, finishedAt: this.clock.now() };
      this.metrics.jobFailed(error.code);
      await job.listener.failed({ job: record, error });
    });
    this.retire(job);
  }

  private onRemoved(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job) {
      this.adoptSoon(jobId);
      return;
    }
    if (job.state === 'finished' || job.removing) return;
    job.state = 'finished';
    this.deliverEnd(job, async () => {
      // Another bot process took the job out of the queue: a cancel.
      const stored = await this.store.get(jobId).catch(() => undefined);
      const error = stored?.error ?? serializeError(abortError('cancelled', jobId));
      const record = { ...(stored ?? copyRecord(job.record)), status: 'cancelled' as const, error };
      this.metrics.jobFailed(error.code);
      await job.listener.failed({ job: record, error });
    });
    this.retire(job);
  }

  /** Ends a local job with a failure decided here (cancelled before it started, shutdown). */
  private finishFailed(job: LocalJob, record: JobRecord, error: SerializedError): void {
    if (job.state === 'finished') return;
    job.state = 'finished';
    this.metrics.jobFailed(error.code);
    const snapshot = copyRecord(record);
    this.deliverEnd(job, async () => {
      await job.listener.failed({ job: snapshot, error });
    });
    this.retire(job);
  }

  /**
   * Shows a job's end once across bot processes: claims it, shows it, and records that it was
   * shown. A bot that adopted the job while this one seemed gone shows it instead.
   */
  private deliverEnd(job: LocalJob, show: () => Promise<void>): void {
    const jobId = job.record.id;
    job.chain.push(async () => {
      const outcome = await this.claims.claim(jobId).catch((error: unknown) => {
        // Better shown twice than never: without Redis nobody else can claim it either.
        this.logger.warn({ err: error, jobId }, 'could not claim showing a finished job; showing it anyway');
        return 'claimed' as const;
      });
      if (outcome !== 'claimed') {
        this.logger.info({ jobId, outcome }, 'another bot process shows the end of this job');
        return;
      }
      try {
        await show();
      } finally {
        await this.claims.done(jobId).catch((error: unknown) => this.logger.warn({ err: error, jobId }, 'could not record that a job was shown'));
      }
    });
  }

  /** Keys that every bot process of this deployment shares for `scope` (e.g. the Discord endpoint's replay signatures). */
  sightings(scope: string): FirstSightings {
    return new RedisFirstSightings(this.connection, this.keys.seen(scope));
  }

  // --- jobs whose bot process is gone -------------------------------------------------------

  /** Lets this process show jobs of `delivery.platform` whose bot process is gone; looks for them at once. */
  registerOrphanDelivery(delivery: OrphanDelivery): void {
    this.orphanDeliveries.set(delivery.platform, delivery);
    if (this.accepting) void this.adoptOrphans().catch((error: unknown) => this.logger.warn({ err: error }, 'looking for orphaned jobs failed'));
  }

  /**
   * Adopts the jobs of registered platforms whose owner is gone: finished ones are shown now, the
   * others from their next event on. Runs at registration and every few refreshes; returns how
   * many jobs this call adopted.
   */
  adoptOrphans(): Promise<number> {
    this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweep(): Promise<number> {
    if (!this.accepting || this.orphanDeliveries.size === 0) return 0;
    const ids = await this.claims.orphans([...this.orphanDeliveries.keys()]);
    let adopted = 0;
    for (const id of ids) {
      if (!this.jobs.has(id) && (await this.adoptOrphan(id))) adopted += 1;
    }
    return adopted;
  }

  /** A job this process does not hold has an event: adopt it if its owner is gone. */
  private adoptSoon(jobId: string): void {
    if (!this.accepting || this.orphanDeliveries.size === 0) return;
    void this.adoptOrphan(jobId).catch((error: unknown) => this.logger.warn({ err: error, jobId }, 'adopting an orphaned job failed'));
  }

  /** Takes over showing one job whose owner is gone; true when this process now holds it. */
  private async adoptOrphan(jobId: string): Promise<boolean> {
    if (this.jobs.has(jobId) || this.adopting.has(jobId) || !this.accepting) return false;
    this.adopting.add(jobId);
    try {
      if ((await this.claims.peek(jobId)) !== 'free') return false;
      const record = await this.store.get(jobId);
      if (!record) {
        // Expired, or its admission never finished: there is nothing to show.
        await this.claims.done(jobId);
        return false;
      }
      const delivery = this.orphanDeliveries.get(record.requester.platform);
      if (!delivery) return false;
      if (!record.message) {
        // Where the job is shown (a status message) waits under its own key until a worker writes the record (attachMessage).
        const stashed = await this.connection.get(this.keys.message(jobId));
        if (stashed) record.message = JSON.parse(stashed) as MessageReference;
      }
      const state = await this.queue.getJobState(jobId);
      const finished = state === 'completed' || state === 'failed' || state === 'unknown';
      let listener: JobListener | undefined;
      try {
        listener = delivery.listenerFor(copyRecord(record));
      } catch (error) {
        this.logger.warn({ err: error, jobId }, 'the platform could not show an orphaned job');
      }
      if (!listener) {
        // Nobody can show it (e.g. the page that asked is gone); its record stays for its buttons.
        if (finished && (await this.claims.claim(jobId)) === 'claimed') await this.claims.done(jobId);
        return false;
      }
      // Finished jobs are claimed when their end is shown (deliverEnd); running ones change owner now.
      if (!finished && (await this.claims.adopt(jobId)) !== 'adopted') return false;
      if (this.jobs.has(jobId) || !this.accepting) return false;
      const [priority] = await this.priorities([jobId]);
      const job = this.localJob(copyRecord(record), listener, userKeyOf(record.requester), priority ?? 1);
      if (state === 'active') {
        job.state = 'running';
        job.started = true;
        if (record.startedAt !== undefined) job.startedAt = record.startedAt;
      }
      this.jobs.set(jobId, job);
      this.logger.info({ jobId, platform: record.requester.platform, state }, 'adopted a job whose bot process is gone');
      // A job that ended while it was being adopted sent its last event to nobody.
      await this.settleAdopted(job, finished ? state : await this.queue.getJobState(jobId));
      if (!finished) this.scheduleRefresh();
      return true;
    } finally {
      this.adopting.delete(jobId);
    }
  }

  /** Shows the end of an adopted job that has already ended; nothing for one still queued or running. */
  private async settleAdopted(job: LocalJob, state: string): Promise<void> {
    const jobId = job.record.id;
    if (state === 'completed') {
      const bullJob = await Job.fromId<QueuedJobData, OutputReference>(this.queue, jobId);
      this.onCompleted(jobId, bullJob?.returnvalue);
    } else if (state === 'failed') {
      const bullJob = await Job.fromId(this.queue, jobId);
      this.onFailed(jobId, bullJob?.failedReason ?? '');
    } else if (state === 'unknown') {
      // BullMQ no longer has it (removed by a cancel, or cleaned up): the record tells how it ended.
      const stored = await this.store.get(jobId);
      if (stored?.status === 'completed') this.onCompleted(jobId, undefined);
      else if (stored?.error && finishedStatuses.has(stored.status)) this.onFailed(jobId, failureReason(stored.error));
      else this.onRemoved(jobId);
    }
  }

  private retire(job: LocalJob): void {
    void job.chain.idle().then(() => {
      if (this.jobs.get(job.record.id) === job) this.jobs.delete(job.record.id);
      job.markDone();
    });
    this.scheduleRefresh();
  }

  // --- shutdown ----------------------------------------------------------------------------

  /**
   * Whether another bot process could show this job from its stored record: SHUTDOWN_HANDOVER is
   * on and the delivery registered for its platform gives a listener for it (the listener is dropped).
   */
  private showableElsewhere(job: LocalJob): boolean {
    if (this.config.shutdownHandover !== 'on') return false;
    const delivery = this.orphanDeliveries.get(job.record.requester.platform);
    if (!delivery) return false;
    try {
      return delivery.listenerFor(copyRecord(job.record)) !== undefined;
    } catch (error) {
      this.logger.warn({ err: error, jobId: job.record.id }, 'the platform could not say whether it shows a job after a restart');
      return false;
    }
  }

  /**
   * Leaves jobs to other bot processes (a restart or deploy): they keep their place in the queue or
   * go on running on their worker, their users are told the result still comes, and this bot gives
   * up owning them, so that a live bot (or this one, restarted) adopts them and shows the rest.
   */
  private async handOver(jobs: LocalJob[]): Promise<void> {
    if (jobs.length === 0) return;
    for (const job of jobs) {
      // From now on this process shows nothing of the job: its later events are the adopter's.
      job.state = 'finished';
      const snapshot = copyRecord(job.record);
      job.chain.push(() => job.listener.handedOver?.({ job: snapshot }));
    }
    // Told before released, so that no adopter posts the result before the notice.
    await withTimeout(Promise.all(jobs.map((job) => job.chain.idle())), 10_000);
    const ids = jobs.map((job) => job.record.id);
    // Without Redis the heartbeat lapses instead, and other bots adopt the jobs then.
    await this.claims.release(ids).catch((error: unknown) => this.logger.warn({ err: error }, 'could not release handed-over jobs; other bots adopt them once the heartbeat lapses'));
    for (const job of jobs) this.retire(job);
    this.logger.info({ jobs: ids }, 'handed jobs over to other bot processes');
  }

  private async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    clearInterval(this.refreshTimer);
    const local = [...this.jobs.values()];
    const leaving = local.filter((job) => job.state !== 'finished' && this.showableElsewhere(job));
    const staying = local.filter((job) => !leaving.includes(job));
    this.logger.info({ jobs: local.length, handedOver: leaving.length, graceMs }, 'shutting down');
    // Jobs nobody else could show and that have not started are taken back and their users told, as in memory mode.
    for (const job of staying.filter((candidate) => candidate.state === 'queued')) {
      job.removing = true;
      const removed = await this.queue.remove(job.record.id).catch(() => 0);
      if (removed !== 1) {
        job.removing = false;
        continue;
      }
      await this.forgetQueued(job.userKey, job.record.id).catch(() => undefined);
      const error = serializeError(abortError('shutdown', job.record.id, { started: false }));
      const record = { ...copyRecord(job.record), status: 'failed' as const, error, finishedAt: this.clock.now() };
      await this.store.set(record).catch(() => undefined);
      this.finishFailed(job, record, error);
    }
    await this.handOver(leaving);
    const pending = staying.filter((job) => job.state !== 'finished');
    let timer: NodeJS.Timeout | undefined;
    const expired = await Promise.race([Promise.all(pending.map((job) => job.done)).then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)))]);
    clearTimeout(timer);
    if (expired) {
      for (const job of pending) {
        if (job.state === 'finished') continue;
        // No other bot process could show its result: stop the work and say so, rather than leave
        // it running for nobody.
        await this.connection.set(this.keys.cancelled(job.record.id), '1', 'PX', 24 * 3_600_000).catch(() => undefined);
        await this.connection.publish(this.keys.cancelChannel, job.record.id).catch(() => undefined);
        const error = serializeError(abortError('shutdown', job.record.id, { started: job.state === 'running' }));
        this.finishFailed(job, { ...copyRecord(job.record), status: 'failed', error }, error);
      }
    }
    await withTimeout(Promise.all(local.map((job) => job.chain.idle())), 10_000);
    // Whatever else this process leaves unshown is adopted by another bot at once, not after the timeout.
    await bounded(this.claims.stop());
    if (this.queueEvents) await bounded(this.queueEvents.close());
    if (this.queue) await bounded(this.queue.close());
    await closeRedis(this.eventsConnection);
    await closeRedis(this.connection);
    await bounded(this.store.close());
    this.logger.info('shut down');
  }
}

/** Builds and starts the service, creating the job store from the configuration when none is given. */
export async function createRedisGenerationService(options: RedisGenerationServiceOptions): Promise<RedisGenerationService> {
  const logger = options.logger ?? silentLogger();
  const store = options.store ?? (await createJobStore(options.config, { logger }));
  const service = new RedisGenerationService({ ...options, logger, store });
  try {
    await service.start();
  } catch (error) {
    await service.shutdown(0).catch(() => undefined);
    throw error;
  }
  return service;
}

