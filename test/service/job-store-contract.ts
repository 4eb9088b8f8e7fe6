/**
 * The contract every {@link JobStore} passes, in the style of keyv's storageTestSuite: call
 * `jobStoreContract(name, makeStore)` from a test file with a factory for the implementation.
 */
import { StoreError } from '../../src/errors.js';
import type { JobStore } from '../../src/service/job-store.js';
import type { JobRecord } from '../../src/service/types.js';

/** Makes a fresh store; `ttlMs` is the retention to use (undefined = the default). */
export type MakeJobStore = (options: { ttlMs?: number }) => Promise<JobStore>;

let counter = 0;

/** A finished job record with binary fields, as the service writes it. */
export function sampleRecord(overrides: Partial<JobRecord> = {}): JobRecord {
  counter += 1;
  return {
    id: `Job_-${Date.now().toString(36)}-${counter}`,
    kind: 'imagine',
    status: 'completed',
    requester: { platform: 'discord', userId: '123', displayName: 'Ada', channelId: 'c', guildId: 'g' },
    parameters: { prompt: 'a blue square', negativePrompt: 'text', aspectRatio: '3:2', seed: 4294967295, steps: 20, guidance: 4.5, chaos: 10 },
    seeds: [1, 2, 3, 4],
    width: 48,
    height: 32,
    engine: 'fake engine',
    createdAt: 1_700_000_000_000,
    startedAt: 1_700_000_000_100,
    finishedAt: 1_700_000_001_000,
    images: [0, 1, 2, 3].map((index) => ({
      png: Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10, index, 255, 0]),
      width: 48,
      height: 32,
      seed: index + 1,
      artifact: { kind: 'clip-image-embedding', dims: [1, 3], values: Float32Array.from([0.5, -1.25, index + 1e-7]) },
    })),
    promptTruncated: false,
    message: { platform: 'discord', channelId: 'c', messageId: 'm' },
    ...overrides,
  };
}

export function jobStoreContract(name: string, makeStore: MakeJobStore): void {
  describe(`JobStore contract: ${name}`, () => {
    const opened: Array<{ store: JobStore; ids: Set<string> }> = [];

    async function open(options: { ttlMs?: number } = {}): Promise<JobStore> {
      const store = await makeStore(options);
      const entry = { store, ids: new Set<string>() };
      opened.push(entry);
      const set = store.set.bind(store);
      // Remember what each test wrote so that shared backends (Redis) are left clean.
      store.set = async (record) => {
        entry.ids.add(record.id);
        await set(record);
      };
      return store;
    }

    afterEach(async () => {
      for (const { store, ids } of opened.splice(0)) {
        for (const id of ids) await store.delete(id).catch(() => undefined);
        await store.close();
      }
    });

    test('an unknown id reads as undefined', async () => {
      const store = await open();
      await expect(store.get('never-written')).resolves.toBeUndefined();
    });

    test('a record reads back equal, with PNG bytes and embeddings as typed arrays', async () => {
      const store = await open();
      const record = sampleRecord({ error: { name: 'EngineError', code: 'engine_failed', message: 'x', userFacing: false, fields: {} } });
      await store.set(record);
      const copy = await store.get(record.id);
      expect(copy).toEqual(record);
      expect(copy!.images![2]!.png).toBeInstanceOf(Uint8Array);
      expect(Array.from(copy!.images![2]!.png)).toEqual(Array.from(record.images![2]!.png));
      expect(copy!.images![3]!.artifact!.values).toBeInstanceOf(Float32Array);
      expect(Array.from(copy!.images![3]!.artifact!.values)).toEqual(Array.from(record.images![3]!.artifact!.values));
    });

    test('a record without images or optional fields reads back equal', async () => {
      const store = await open();
      const { images: _images, message: _message, startedAt: _startedAt, finishedAt: _finishedAt, ...bare } = sampleRecord({ status: 'queued' });
      await store.set(bare);
      await expect(store.get(bare.id)).resolves.toEqual(bare);
    });

    test('a later write replaces the earlier one', async () => {
      const store = await open();
      const record = sampleRecord({ status: 'running' });
      await store.set(record);
      await store.set({ ...record, status: 'completed', message: { platform: 'slack', channelId: 'C1', messageId: '171.1' } });
      await expect(store.get(record.id)).resolves.toMatchObject({ status: 'completed', message: { platform: 'slack', messageId: '171.1' } });
    });

    test('delete removes a record and tolerates an unknown id', async () => {
      const store = await open();
      const record = sampleRecord();
      await store.set(record);
      await store.delete(record.id);
      await expect(store.get(record.id)).resolves.toBeUndefined();
      await expect(store.delete('never-written')).resolves.toBeUndefined();
    });

    test('records expire after the retention time', async () => {
      const store = await open({ ttlMs: 100 });
      const record = sampleRecord();
      await store.set(record);
      await expect(store.get(record.id)).resolves.toBeDefined();
      await new Promise((resolve) => setTimeout(resolve, 250));
      await expect(store.get(record.id)).resolves.toBeUndefined();
    });

    test('a closed store fails with a StoreError rather than crashing', async () => {
      const store = await open();
      await store.close();
      await expect(store.get('x')).rejects.toBeInstanceOf(StoreError);
      await expect(store.set(sampleRecord())).rejects.toBeInstanceOf(StoreError);
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
