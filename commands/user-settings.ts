/**
 * Per-user defaults set with the `settings` command: the aspect ratio `imagine` uses when the
 * prompt gives none, and the strength of the V1–V4 buttons. Kept in Keyv (a SQLite file under
 * DATA_DIR, or Redis when the job store is Redis); tests use the in-memory store.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Keyv from 'keyv';
import type { Config } from '../src/config/config.js';
import type { VariationStrength } from '../src/engine/engine.js';
import { StoreError } from '../src/errors.js';
import type { Requester } from '../src/service/types.js';

/** One user's defaults; an absent field means "the bot's default". */
export interface UserSettings {
  aspectRatio?: string;
  variationStrength?: VariationStrength;
}

/** Where user settings live. */
export interface UserSettingsStore {
  get(requester: Pick<Requester, 'platform' | 'userId'>): Promise<UserSettings>;
  /** Merges `changes` (an `undefined` field is left alone, a `null` one is cleared) and returns the result. */
  update(requester: Pick<Requester, 'platform' | 'userId'>, changes: { [K in keyof UserSettings]?: UserSettings[K] | null }): Promise<UserSettings>;
  reset(requester: Pick<Requester, 'platform' | 'userId'>): Promise<void>;
  close(): Promise<void>;
}

/** `platform:userId`, the key of a user across the service. */
export function userKey(requester: Pick<Requester, 'platform' | 'userId'>): string {
  return `${requester.platform}:${requester.userId}`;
}

/** A store over any Keyv instance; an in-memory one when none is given. */
export function createUserSettingsStore(keyv: Keyv = new Keyv({ namespace: 'user-settings' })): UserSettingsStore {
  const guard = async <T>(what: string, action: () => Promise<T>): Promise<T> => {
    try {
      return await action();
    } catch (error) {
      throw new StoreError(`Could not ${what} user settings.`, { cause: error });
    }
  };
  return {
    async get(requester) {
      const stored = await guard('read', () => keyv.get<UserSettings>(userKey(requester)));
      return clean(stored ?? {});
    },
    async update(requester, changes) {
      const key = userKey(requester);
      const current = clean((await guard('read', () => keyv.get<UserSettings>(key))) ?? {});
      const next: Record<string, unknown> = { ...current };
      for (const [field, value] of Object.entries(changes)) {
        if (value === null) delete next[field];
        else if (value !== undefined) next[field] = value;
      }
      const result = clean(next as UserSettings);
      await guard('save', () => keyv.set(key, result));
      return result;
    },
    async reset(requester) {
      await guard('reset', () => keyv.delete(userKey(requester)));
    },
    async close() {
      await keyv.disconnect().catch(() => undefined);
    },
  };
}

/**
 * A Keyv for commands' own state, in the backend the configuration names: Redis when `STORE_URL`
 * is a redis:// URL (or `QUEUE=redis`), otherwise a SQLite file next to the job store
 * (`STORE_URL=sqlite://path` → `path-<name>.sqlite`, or `DATA_DIR/<name>.sqlite`).
 */
export async function openCommandKeyv(config: Pick<Config, 'storeUrl' | 'dataDir' | 'queue' | 'redisUrl'>, name: string): Promise<Keyv> {
  const url = config.storeUrl ?? (config.queue === 'redis' ? config.redisUrl : undefined);
  if (url && /^rediss?:\/\//.test(url)) {
    const { default: KeyvRedis } = await import('@keyv/redis');
    return new Keyv({ store: new KeyvRedis(url), namespace: `imagine-${name}` });
  }
  if (url?.startsWith('memory:')) return new Keyv({ namespace: name });
  const file = url?.startsWith('sqlite://') ? `${url.slice('sqlite://'.length).replace(/\.sqlite$/, '')}-${name}.sqlite` : path.join(config.dataDir, `${name}.sqlite`);
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const { default: KeyvSqlite } = await import('@keyv/sqlite');
  return new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${file}`, table: name.replace(/-/g, '_') }), namespace: name });
}

/** The user settings store the configuration asks for (see {@link openCommandKeyv}). */
export async function openUserSettingsStore(config: Pick<Config, 'storeUrl' | 'dataDir' | 'queue' | 'redisUrl'>): Promise<UserSettingsStore> {
  return createUserSettingsStore(await openCommandKeyv(config, 'user-settings'));
}

function clean(settings: UserSettings): UserSettings {
  const result: UserSettings = {};
  if (typeof settings.aspectRatio === 'string' && /^\d{1,5}:\d{1,5}$/.test(settings.aspectRatio)) result.aspectRatio = settings.aspectRatio;
  if (settings.variationStrength === 'subtle' || settings.variationStrength === 'strong') result.variationStrength = settings.variationStrength;
  return result;
}
