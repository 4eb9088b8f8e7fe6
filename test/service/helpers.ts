/** Shared helpers for the service tests: a configuration in a temporary folder and a recording listener. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { SerializedError } from '../../src/errors.js';
import type { ImagineParameters, JobListener, JobOutput, JobRecord, Requester } from '../../src/service/types.js';

/** A temporary DATA_DIR, removed by `cleanup`. */
export function temporaryFolder(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'imagine-service-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A configuration that reads no environment or .env file. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return loadConfig({ storeUrl: 'memory://', logLevel: 'silent', ...overrides }, {}, false);
}

export function user(id: string, extra: Partial<Requester> = {}): Requester {
  return { platform: 'test', userId: id, displayName: id, ...extra };
}

export function params(prompt = 'a red circle', extra: Partial<ImagineParameters> = {}): ImagineParameters {
  return { prompt, aspectRatio: '1:1', seed: 42, chaos: 0, ...extra };
}

export type ListenerEvent =
  | { type: 'queued'; position: number; etaMs: number; job: JobRecord }
  | { type: 'started'; etaMs: number; job: JobRecord }
  | { type: 'progress'; fraction: number; stage: string; etaMs: number; job: JobRecord }
  | { type: 'completed'; output: JobOutput }
  | { type: 'failed'; error: SerializedError; job: JobRecord }
  | { type: 'handed-over'; job: JobRecord };

/** A listener that records every call and resolves `settled` at completed or failed (never after a handover). */
export interface RecordingListener extends JobListener {
  events: ListenerEvent[];
  settled: Promise<ListenerEvent>;
  positions(): number[];
}

export function recordingListener(options: { completed?: (output: JobOutput) => void | Promise<void> } = {}): RecordingListener {
  const events: ListenerEvent[] = [];
  let settle!: (event: ListenerEvent) => void;
  const settled = new Promise<ListenerEvent>((resolve) => (settle = resolve));
  return {
    events,
    settled,
    positions: () => events.flatMap((event) => (event.type === 'queued' ? [event.position] : [])),
    queued: ({ job, position, etaMs }) => void events.push({ type: 'queued', job, position, etaMs }),
    started: ({ job, etaMs }) => void events.push({ type: 'started', job, etaMs }),
    progress: ({ job, fraction, stage, etaMs }) => void events.push({ type: 'progress', job, fraction, stage, etaMs }),
    async completed(output) {
      await options.completed?.(output);
      const event: ListenerEvent = { type: 'completed', output };
      events.push(event);
      settle(event);
    },
    failed({ job, error }) {
      const event: ListenerEvent = { type: 'failed', job, error };
      events.push(event);
      settle(event);
    },
    handedOver: ({ job }) => void events.push({ type: 'handed-over', job }),
  };
}

/** Waits until `predicate` holds, polling the event loop (never a wall-clock assertion). */
export async function until(predicate: () => boolean, what = 'condition', limitMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > limitMs) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
