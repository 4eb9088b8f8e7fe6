/**
 * What travels between bot processes and GPU workers through BullMQ: the job's data (a record
 * without images; sources are read from the job store by id), the progress events a worker
 * reports, and the small reference a finished job returns (the file itself waits in Redis).
 */
import type { SerializedError } from '../../errors.js';
import type { DeliveryOptions, JobRecord } from '../types.js';

/** Bumped when the job data changes shape; workers refuse data they do not understand. */
export const protocolVersion = 1;

/** The BullMQ job data of one generation. */
export interface QueuedJobData {
  version: typeof protocolVersion;
  /** The record as admitted: status `queued`, no images. */
  record: JobRecord;
  delivery: DeliveryOptions;
  /** `platform:userId`. */
  userKey: string;
  /** The user's running limit when the job was admitted; an admin's later override beats it unless pinned. */
  maxRunning: number;
  /** True when the bot fixed this user's running limit (`limitsFor`), so that an admin's override does not apply. */
  maxRunningPinned?: boolean;
  /** The BullMQ priority it was queued with (1 + the user's pending jobs, after the user's own waiting jobs). */
  priority: number;
  /** How long the job may run, in milliseconds. */
  timeoutMs: number;
}

/** A worker's report on a job, sent with `job.updateProgress` and heard through QueueEvents. */
export type WorkerEvent =
  | { type: 'started'; attempt: number; etaMs: number; startedAt: number; worker: string }
  | { type: 'progress'; fraction: number; stage: string; etaMs: number }
  | { type: 'retrying'; attempt: number };

/** What a finished job returns: where its file is and what it is. */
export interface OutputReference {
  key: string;
  name: string;
  contentType: string;
  width: number;
  height: number;
  bytes: number;
}

/** The reason BullMQ records for a failure: a serialized error as JSON, so bots can rebuild it. */
export function failureReason(error: SerializedError): string {
  return JSON.stringify({ imagine: error });
}

/** Reads a reason written by {@link failureReason}; undefined for BullMQ's own reasons. */
export function parseFailureReason(reason: string | undefined): SerializedError | undefined {
  if (!reason || !reason.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(reason) as { imagine?: SerializedError };
    return parsed.imagine && typeof parsed.imagine.code === 'string' ? parsed.imagine : undefined;
  } catch {
    return undefined;
  }
}

/** True for a progress payload a worker of this version sent. */
export function isWorkerEvent(data: unknown): data is WorkerEvent {
  return typeof data === 'object' && data !== null && typeof (data as { type?: unknown }).type === 'string';
}
