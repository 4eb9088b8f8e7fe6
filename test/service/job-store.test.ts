import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { StoreError } from '../../src/errors.js';
import { createJobStore, deserializeJobRecord, jobStoreUrl, serializeJobRecord } from '../../src/service/job-store.js';
import { testConfig, temporaryFolder } from './helpers.js';
import { jobStoreContract, sampleRecord } from './job-store-contract.js';

const folders: Array<() => void> = [];
afterAll(() => folders.forEach((cleanup) => cleanup()));

jobStoreContract('memory (Keyv over a Map)', ({ ttlMs }) => createJobStore(testConfig({ storeUrl: 'memory://' }), ttlMs === undefined ? {} : { ttlMs }));

jobStoreContract('sqlite (the default, under DATA_DIR)', ({ ttlMs }) => {
  const folder = temporaryFolder();
  folders.push(folder.cleanup);
  return createJobStore(testConfig({ storeUrl: undefined, dataDir: folder.dir }), ttlMs === undefined ? {} : { ttlMs });
});

function reachable(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const redisUp = await reachable(6379);
if (redisUp) {
  // A namespace of its own per run; the contract deletes every key it wrote.
  const namespace = `imagine-test-${randomBytes(6).toString('hex')}`;
  jobStoreContract('redis (127.0.0.1:6379)', ({ ttlMs }) => createJobStore(testConfig({ storeUrl: 'redis://127.0.0.1:6379' }), { namespace, ...(ttlMs === undefined ? {} : { ttlMs }) }));
} else {
  describe('JobStore contract: redis', () => {
    test.skip('skipped: Redis is not reachable on 127.0.0.1:6379', () => undefined);
  });
}

describe('job store configuration', () => {
  test('the URL follows STORE_URL, then QUEUE=redis, then a SQLite file under DATA_DIR', () => {
    expect(jobStoreUrl(testConfig({ storeUrl: undefined, dataDir: '/srv/imagine' }))).toBe('sqlite:///srv/imagine/jobs.sqlite');
    expect(jobStoreUrl(testConfig({ storeUrl: undefined, queue: 'redis', redisUrl: 'redis://cache:6379' }))).toBe('redis://cache:6379');
    expect(jobStoreUrl(testConfig({ storeUrl: 'memory://' }))).toBe('memory://');
  });

  test('an unsupported URL is a StoreError that hides any password', async () => {
    const error = await createJobStore(testConfig({ storeUrl: 'postgres://user:hunter22@db/x' })).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as Error).message).toMatch(/not supported; use sqlite:\/\/path, redis:\/\/host:port or memory:\/\//);
  });

  test('serialised records are plain JSON: typed arrays become base64 strings', () => {
    const record = sampleRecord();
    const json = JSON.stringify(serializeJobRecord(record));
    expect(json).not.toContain('"0":');
    expect(typeof JSON.parse(json).images[0].png).toBe('string');
    expect(deserializeJobRecord(JSON.parse(json))).toEqual(record);
  });

  test('an unreachable Redis is reported as a StoreError, not a crash', async () => {
    const store = await createJobStore(testConfig({ storeUrl: 'redis://127.0.0.1:1' }), { namespace: 'unreachable' });
    await expect(store.get('x')).rejects.toBeInstanceOf(StoreError);
    await store.close();
  });
});
