/**
 * A GPU worker in a child process for the scale-out tests: a RedisWorker over a FakeEngine with a
 * per-step delay, so that a test can kill it mid-job. Reports on IPC: `ready`, and `call` for
 * every engine call it receives. SIGTERM closes it gracefully (GRACE_MS).
 */
import { loadConfig } from '../../../src/config/config.js';
import { createJobStore } from '../../../src/service/job-store.js';
import { startRedisWorker } from '../../../src/service/redis/worker.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { childDeployment, testTimings } from './harness.js';

const { names, namespace, redisUrl } = childDeployment();
const env = process.env;
const engine = new FakeEngine({ steps: Number(env.STEPS ?? 10), stepDelayMs: Number(env.STEP_MS ?? 50) });
const config = loadConfig({ queue: 'redis', redisUrl, storeUrl: redisUrl, logLevel: 'silent', gpuSlots: Number(env.SLOTS ?? 1) }, {}, false);
const store = await createJobStore(config, { namespace });
const worker = await startRedisWorker({ config, engine, store, names, timings: { ...testTimings, ...(env.MAX_STALLED ? { maxStalledCount: Number(env.MAX_STALLED) } : {}) }, ...(env.WORKER_ID ? { id: env.WORKER_ID } : {}) });

let reported = 0;
const timer = setInterval(() => {
  while (reported < engine.calls.length) {
    const call = engine.calls[reported]!;
    process.send?.({ type: 'call', worker: worker.id, index: reported, method: call.method, prompt: call.prompt });
    reported += 1;
  }
}, 10);
process.send?.({ type: 'ready', worker: worker.id });

process.on('SIGTERM', () => {
  void worker.close(Number(env.GRACE_MS ?? 5000)).then(async () => {
    clearInterval(timer);
    await engine.close();
    process.exit(0);
  });
});
process.on('disconnect', () => process.exit(0));
