/**
 * Job records in Keyv: a SQLite file under DATA_DIR by default, Redis for scale-out, or a Map in
 * memory. Records keep everything the buttons need after a restart; binary fields (PNG bytes,
 * embeddings) are written as base64 explicitly because Keyv's JSON would turn typed arrays into
 * objects of indices. Every failure becomes a {@link StoreError}; nothing here crashes the process.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import type { Config } from '../config/config.js';
import { StoreError, redactSecrets } from '../errors.js';
import type { Logger } from '../logger.js';
import type { JobRecord, StoredImage } from './types.js';

/** Where job records live. */
export interface JobStore {
  /** What backs the store, e.g. `sqlite`, `redis`, `memory`. */
  readonly kind: string;
  get(id: string): Promise<JobRecord | undefined>;
  set(record: JobRecord): Promise<void>;
  delete(id: string): Promise<void>;
  close(): Promise<void>;
}

/** A job record as JSON-safe data. */
export interface SerializedJobRecord extends Omit<JobRecord, 'images'> {
  format: 1;
  images?: Array<Omit<StoredImage, 'png' | 'artifact'> & { png: string; artifact?: { kind: string; dims: number[]; values: string } }>;
}

const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** Turns a record into JSON-safe data, typed arrays as base64. */
export function serializeJobRecord(record: JobRecord): SerializedJobRecord {
  const { images, ...rest } = record;
  const result: SerializedJobRecord = { ...rest, format: 1 };
  if (images) {
    result.images = images.map((image) => {
      const { png, artifact, ...fields } = image;
      const entry: NonNullable<SerializedJobRecord['images']>[number] = { ...fields, png: toBase64(png) };
      if (artifact) entry.artifact = { kind: artifact.kind, dims: [...artifact.dims], values: toBase64(new Uint8Array(artifact.values.buffer, artifact.values.byteOffset, artifact.values.byteLength)) };
      return entry;
    });
  }
  return result;
}

/** The inverse of {@link serializeJobRecord}. */
export function deserializeJobRecord(data: SerializedJobRecord): JobRecord {
  const { images, format: _format, ...rest } = data;
  const record: JobRecord = { ...rest };
  if (images) {
    record.images = images.map((image) => {
      const { png, artifact, ...fields } = image;
      const bytes = Buffer.from(png, 'base64');
      const entry: StoredImage = { ...fields, png: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
      if (artifact) {
        const raw = Buffer.from(artifact.values, 'base64');
        // Copy into a fresh, aligned buffer: a Float32Array view needs a 4-byte aligned offset.
        const values = new Float32Array(raw.byteLength / 4);
        new Uint8Array(values.buffer).set(raw);
        entry.artifact = { kind: artifact.kind, dims: [...artifact.dims], values };
      }
      return entry;
    });
  }
  return record;
}

/** Options for {@link KeyvJobStore}. */
export interface KeyvJobStoreOptions {
  /** How long a record lives after its last write, in milliseconds; undefined = forever. */
  ttlMs?: number;
  kind: string;
  logger?: Logger;
}

/** A {@link JobStore} over any Keyv instance. */
export class KeyvJobStore implements JobStore {
  readonly kind: string;
  private readonly keyv: Keyv<SerializedJobRecord>;
  private readonly ttlMs: number | undefined;
  private closed = false;

  constructor(keyv: Keyv<SerializedJobRecord>, options: KeyvJobStoreOptions) {
    this.keyv = keyv;
    this.kind = options.kind;
    this.ttlMs = options.ttlMs;
    keyv.throwOnErrors = true;
    // Without a listener a backend error would only surface as an unhandled event.
    keyv.on('error', (error: unknown) => options.logger?.warn({ err: error, store: this.kind }, 'job store error'));
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const data = await this.attempt('read', id, () => this.keyv.get(id));
    return data ? deserializeJobRecord(data) : undefined;
  }

  async set(record: JobRecord): Promise<void> {
    const data = serializeJobRecord(record);
    await this.attempt('write', record.id, () => this.keyv.set(record.id, data, this.ttlMs));
  }

  async delete(id: string): Promise<void> {
    await this.attempt('delete', id, () => this.keyv.delete(id));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.keyv.disconnect();
    } catch {
      // Closing twice or closing a broken connection is not worth failing a shutdown for.
    }
  }

  private async attempt<T>(action: string, id: string, operation: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(`The job store is closed; could not ${action} job ${id}.`);
    try {
      return await operation();
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new StoreError(`The job store (${this.kind}) could not ${action} job ${id}: ${redactSecrets(detail)}`, { cause: error });
    }
  }
}

/** Options for {@link createJobStore}. */
export interface CreateJobStoreOptions {
  logger?: Logger;
  /** Keeps stores of tests or tenants apart. Default `imagine:jobs`. */
  namespace?: string;
  /** Overrides JOB_RETENTION_DAYS, in milliseconds (tests of expiry). */
  ttlMs?: number;
}

/** The store URL the configuration implies. */
export function jobStoreUrl(config: Pick<Config, 'storeUrl' | 'queue' | 'redisUrl' | 'dataDir'>): string {
  if (config.storeUrl) return config.storeUrl;
  if (config.queue === 'redis') return config.redisUrl;
  return `sqlite://${path.join(config.dataDir, 'jobs.sqlite')}`;
}

/**
 * Builds the job store from the configuration: `sqlite://<path>` (default, under DATA_DIR),
 * `redis://...` or `memory://`. Retention is a TTL of JOB_RETENTION_DAYS.
 */
export async function createJobStore(config: Pick<Config, 'storeUrl' | 'queue' | 'redisUrl' | 'dataDir' | 'jobRetentionDays'>, options: CreateJobStoreOptions = {}): Promise<JobStore> {
  const url = jobStoreUrl(config);
  const ttlMs = options.ttlMs ?? Math.round(config.jobRetentionDays * 24 * 60 * 60 * 1000);
  const namespace = options.namespace ?? 'imagine:jobs';
  const logger = options.logger;
  if (url.startsWith('memory:')) {
    return new KeyvJobStore(new Keyv<SerializedJobRecord>({ store: new Map(), namespace }), { ttlMs, kind: 'memory', ...(logger ? { logger } : {}) });
  }
  if (url.startsWith('sqlite:')) {
    const file = url.replace(/^sqlite:\/\//, '').replace(/^sqlite:/, '');
    try {
      mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    } catch (error) {
      throw new StoreError(`Could not create the folder for the job store ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    const { default: KeyvSqlite } = await import('@keyv/sqlite');
    const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 5000 });
    return new KeyvJobStore(new Keyv<SerializedJobRecord>({ store: adapter as unknown as KeyvStoreAdapter, namespace }), { ttlMs, kind: 'sqlite', ...(logger ? { logger } : {}) });
  }
  if (url.startsWith('redis:') || url.startsWith('rediss:')) {
    const { default: KeyvRedis } = await import('@keyv/redis');
    // A few quick retries, then the operation fails with a StoreError; the next operation
    // connects afresh. Redis being down must cost a user a clear error, not a hung command.
    const client = { url, socket: { connectTimeout: 2000, reconnectStrategy: (attempts: number) => (attempts >= 3 ? new Error('Redis is not reachable.') : 100 * 2 ** attempts) } };
    const adapter = new KeyvRedis(client, { namespace, throwOnConnectError: true });
    const keyv = new Keyv<SerializedJobRecord>({ store: adapter as unknown as KeyvStoreAdapter, namespace, useKeyPrefix: false });
    return new KeyvJobStore(keyv, { ttlMs, kind: 'redis', ...(logger ? { logger } : {}) });
  }
  throw new StoreError(`The job store URL ${redactSecrets(url)} is not supported; use sqlite://path, redis://host:port or memory://.`);
}
