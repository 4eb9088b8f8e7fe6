/**
 * The generation service's contract, as adapters and commands see it. Platform types never
 * appear here: an adapter hands the service a plain request and a {@link JobListener} closure,
 * the way bolt-js receivers hand `App.processEvent` a `{ body, ack }` event.
 */
import type { SerializedError } from '../errors.js';
import type { ImageArtifact, VariationStrength } from '../engine/engine.js';
import type { FirstSightings } from './first-sightings.js';

/** Who asked. `platform:userId` identifies a user across the whole service. */
export interface Requester {
  platform: string;
  userId: string;
  displayName?: string;
  /** Set by the adapter from platform roles or ADMIN_USERS. */
  isAdmin?: boolean;
  /** Where the request came from, for the job record and allow-lists. */
  channelId?: string;
  guildId?: string;
}

/** The parameters of an `imagine` request after parsing and validation. */
export interface ImagineParameters {
  prompt: string;
  negativePrompt?: string;
  /** `W:H`, one of the engine's sizes. */
  aspectRatio: string;
  /** The base seed; image i uses a seed derived from it. Random when the user gave none. */
  seed: number;
  steps?: number;
  guidance?: number;
  /** 0..100. */
  chaos: number;
}

export type JobKind = 'imagine' | 'variation' | 'upscale' | 'reroll';
export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

/** One image of a finished job, as stored. */
export interface StoredImage {
  /** PNG bytes. */
  png: Uint8Array;
  width: number;
  height: number;
  seed: number;
  artifact?: ImageArtifact;
}

/** Where a platform showed a job's result, so that its buttons can find the job again. */
export interface MessageReference {
  platform: string;
  channelId?: string;
  messageId?: string;
  threadId?: string;
  [key: string]: string | undefined;
}

/** A job as kept in the store; everything the buttons need after a restart. */
export interface JobRecord {
  id: string;
  kind: JobKind;
  status: JobStatus;
  requester: Requester;
  parameters: ImagineParameters;
  /** For variation and upscale: the job and image (1-based) they came from. */
  parent?: { jobId: string; index: number };
  strength?: VariationStrength;
  /** The engine's seeds, one per image. */
  seeds: number[];
  width: number;
  height: number;
  engine: string;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  images?: StoredImage[];
  promptTruncated?: boolean;
  error?: SerializedError;
  message?: MessageReference;
  /** How many times the job was retried after a worker died. */
  attempts?: number;
}

/** The file a finished job produced: a grid of four, or one upscaled image. */
export interface JobOutput {
  job: JobRecord;
  file: { data: Uint8Array; name: string; contentType: string; width: number; height: number };
}

/** The closure an adapter hands the service to hear about one job. Every method may be async. */
export interface JobListener {
  /** Admitted and waiting; called again when the position changes. */
  queued?(update: { job: JobRecord; position: number; etaMs: number }): void | Promise<void>;
  started?(update: { job: JobRecord; etaMs: number }): void | Promise<void>;
  /** fraction 0..1 of the running job. */
  progress?(update: { job: JobRecord; fraction: number; stage: string; etaMs: number }): void | Promise<void>;
  /** The job is being retried after a worker failure; the user should be told. */
  retrying?(update: { job: JobRecord; attempt: number }): void | Promise<void>;
  completed(output: JobOutput): void | Promise<void>;
  /** Cancellations, timeouts and engine failures all end here, never in silence. */
  failed(update: { job: JobRecord; error: SerializedError }): void | Promise<void>;
  /**
   * This process stops (a restart or deploy) and leaves the job, still queued or running, to
   * another bot process, which shows the rest through its {@link OrphanDelivery}. The user should be
   * told that the result will still come; nothing else is called on this listener afterwards.
   */
  handedOver?(update: { job: JobRecord }): void | Promise<void>;
}

/**
 * How a platform shows a job that the process which admitted it no longer holds (QUEUE=redis: that
 * bot process died or restarted). The listener it returns works from the stored record alone —
 * the message the record names, else the requester's channel — with the platform's own
 * credentials, never the request's short-lived interaction.
 */
export interface OrphanDelivery {
  /** The platform whose jobs it shows, as in {@link Requester.platform}. */
  readonly platform: string;
  /**
   * A listener that shows this job, or undefined when this process cannot (nowhere to post it).
   * A stopping bot also asks it whether a job of its own could be shown elsewhere and drops the
   * listener, so building one must not post anything.
   */
  listenerFor(job: JobRecord): JobListener | undefined;
}

/** Returned as soon as a job is admitted. */
export interface JobTicket {
  job: JobRecord;
  position: number;
  etaMs: number;
}

/** What `info` reports to a user. */
export interface InfoSnapshot {
  requester: Requester;
  running: JobRecord[];
  queued: Array<{ job: JobRecord; position: number }>;
  limits: { ratePerMinute: number; burst: number; maxRunning: number; maxQueued: number; tokensLeft: number; nextTokenInMs: number };
  queueLength: number;
  slots: number;
  engine: string;
  averageJobMs: number;
}

/** Options for a request that produces a file for a platform. */
export interface DeliveryOptions {
  /** The largest file the platform accepts for this request, in bytes. */
  uploadLimitBytes?: number;
}

/** The service every adapter talks to. */
export interface GenerationService {
  imagine(requester: Requester, parameters: ImagineParameters, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket>;
  upscale(requester: Requester, jobId: string, index: number, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket>;
  vary(requester: Requester, jobId: string, index: number, strength: VariationStrength, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket>;
  reroll(requester: Requester, jobId: string, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket>;
  cancel(requester: Requester, jobId: string): Promise<JobRecord>;
  info(requester: Requester): Promise<InfoSnapshot>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Records where a platform showed a job's result. */
  attachMessage(jobId: string, message: MessageReference): Promise<void>;
  /**
   * Stops taking work, lets running jobs finish within the grace period, persists state. In
   * QUEUE=redis, jobs another bot process can show are handed over instead (see {@link JobListener.handedOver}).
   */
  shutdown(graceMs?: number): Promise<void>;
  /**
   * Lets this process show jobs of its platform whose admitting process is gone. Only services
   * whose jobs can outlive that process implement it (QUEUE=redis); adapters register at start-up.
   */
  registerOrphanDelivery?(delivery: OrphanDelivery): void;
  /**
   * Keys that every bot process of the deployment shares for `scope` (QUEUE=redis), e.g. the
   * Discord endpoint's request signatures against replays. Absent where there is one process.
   */
  sightings?(scope: string): FirstSightings;
  /** Counts a command or button press by platform, for /metrics. Never throws. */
  countCommand?(platform: string, command: string): void;
}
