/**
 * A bot process for the scale-out tests: a RedisGenerationService in a child process, driven over
 * IPC. Requests: `imagine` (user, prompt, seed, tag), `burst` (the same, `count` times at once),
 * `upscale` (user, jobId, index, tag), `cancel` (user, jobId), `set-limits` (changes), `get-limits`,
 * `info` (user), `ping`. Every listener call is sent back as an `event` message with its tag, so the
 * test sees what a platform adapter in this process would see.
 * With ORPHANS=1 the process registers an orphan delivery for the `test` platform: what it shows of
 * jobs adopted from a dead bot comes back tagged `orphan`; and one for the `web` platform that, like
 * the playground's, shows nothing. `imagine` takes a `platform` (default `test`). OWNER_TIMEOUT_MS
 * shortens the heartbeat. SIGTERM shuts the service down gracefully (GRACE_MS, default 1000) and
 * sends `stopped` once everything it sent before has gone out.
 */
import { loadConfig, type Config } from '../../../src/config/config.js';
import type { SerializedError } from '../../../src/errors.js';
import { createJobStore } from '../../../src/service/job-store.js';
import { createRedisGenerationService } from '../../../src/service/redis/redis-service.js';
import type { JobListener } from '../../../src/service/types.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { childDeployment } from './harness.js';

const { names, namespace, redisUrl } = childDeployment();
const overrides = JSON.parse(process.env.IMAGINE_TEST_CONFIG ?? '{}') as Partial<Config>;
const config = loadConfig({ queue: 'redis', redisUrl, storeUrl: redisUrl, logLevel: 'silent', ...overrides }, {}, false);
const store = await createJobStore(config, { namespace });
const ownerTimeoutMs = process.env.OWNER_TIMEOUT_MS ? Number(process.env.OWNER_TIMEOUT_MS) : undefined;
const service = await createRedisGenerationService({ config, store, names, refreshIntervalMs: 200, capabilities: new FakeEngine().capabilities, ...(ownerTimeoutMs ? { ownerTimeoutMs } : {}) });

const send = (message: Record<string, unknown>): void => void process.send?.(message);
const listenerFor = (tag: string): JobListener => ({
  queued: ({ job, position }) => send({ type: 'event', tag, event: 'queued', jobId: job.id, position }),
  started: ({ job }) => send({ type: 'event', tag, event: 'started', jobId: job.id }),
  progress: ({ job, fraction }) => send({ type: 'event', tag, event: 'progress', jobId: job.id, fraction }),
  retrying: ({ job, attempt }) => send({ type: 'event', tag, event: 'retrying', jobId: job.id, attempt }),
  completed: ({ job, file }) => send({ type: 'event', tag, event: 'completed', jobId: job.id, bytes: file.data.length }),
  failed: ({ job, error }: { job: { id: string }; error: SerializedError }) => send({ type: 'event', tag, event: 'failed', jobId: job.id, code: error.code, message: error.message }),
  handedOver: ({ job }) => send({ type: 'event', tag, event: 'handed-over', jobId: job.id, status: job.status }),
});
if (process.env.ORPHANS === '1') {
  service.registerOrphanDelivery({ platform: 'test', listenerFor: () => listenerFor('orphan') });
  service.registerOrphanDelivery({ platform: 'web', listenerFor: () => undefined });
}
const requester = (id: string, platform = 'test') => ({ platform, userId: id });
const outcome = (promise: Promise<{ job: { id: string }; position: number }>) =>
  promise.then(
    (ticket) => ({ ok: true, jobId: ticket.job.id, position: ticket.position }),
    (error: { code?: string; message?: string }) => ({ ok: false, code: error.code, message: error.message }),
  );

process.on('message', (message: { requestId: number; command: string; user: string; platform?: string; prompt?: string; seed?: number; tag?: string; count?: number; jobId?: string; index?: number; changes?: Record<string, number> }) => {
  const reply = (body: Record<string, unknown>): void => send({ type: 'reply', requestId: message.requestId, ...body });
  const imagine = (tag: string) => outcome(service.imagine(requester(message.user, message.platform), { prompt: message.prompt ?? 'x', aspectRatio: '1:1', seed: message.seed ?? 1, chaos: 0 }, listenerFor(tag)));
  switch (message.command) {
    case 'imagine':
      void imagine(message.tag ?? 'job').then(reply);
      break;
    case 'burst':
      void Promise.all(Array.from({ length: message.count ?? 1 }, (_, index) => imagine(`${message.tag ?? 'burst'}-${index}`))).then((results) => reply({ results }));
      break;
    case 'cancel':
      void service.cancel(requester(message.user), message.jobId ?? '').then((record) => reply({ ok: true, status: record.status }), (error: { code?: string; message?: string }) => reply({ ok: false, code: error.code, message: error.message }));
      break;
    case 'ping':
      reply({ ok: true });
      break;
    case 'upscale':
      void outcome(service.upscale(requester(message.user), message.jobId ?? '', message.index ?? 1, listenerFor(message.tag ?? 'upscale'))).then(reply);
      break;
    case 'set-limits':
      void service.setLimits(message.changes ?? {}).then((limits) => reply({ ok: true, limits }), (error: { name?: string; message?: string }) => reply({ ok: false, name: error.name, message: error.message }));
      break;
    case 'get-limits':
      void service.getLimits().then((limits) => reply({ ok: true, limits }));
      break;
    case 'info':
      void service.info(requester(message.user)).then((info) => reply({ ok: true, limits: info.limits, queued: info.queued.length }));
      break;
    default:
      reply({ ok: false, message: `unknown command ${message.command}` });
  }
});
send({ type: 'ready' });
const graceMs = process.env.GRACE_MS ? Number(process.env.GRACE_MS) : 1000;
process.on('SIGTERM', () => void service.shutdown(graceMs).then(() => (process.send ? process.send({ type: 'stopped' }, undefined, undefined, () => process.exit(0)) : process.exit(0))));
process.on('disconnect', () => process.exit(0));
