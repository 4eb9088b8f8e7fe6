/**
 * QUEUE=redis across processes: GPU workers and bots in child processes (FakeEngine with a
 * per-step delay), a real Redis, one queue name and store namespace per test.
 */
import { Redis } from 'ioredis';
import { ErrorCode } from '../../../src/errors.js';
import { decodeImage } from '../../../src/image/encode.js';
import type { JobListener, JobRecord } from '../../../src/service/types.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { params, recordingListener, until, user, type RecordingListener } from '../helpers.js';
import { deploymentsCleanedAfterEach, eventually, redisAvailable, redisUrl, type ChildHandle } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the QUEUE=redis scale-out tests: no Redis answers on 127.0.0.1:6379 (.ci/run starts one).');

const deployment = deploymentsCleanedAfterEach();

/** A recording listener that also notes retry notices, and whether each came before the end. */
function retryingListener(): RecordingListener & { retries: Array<{ attempt: number; beforeEnd: boolean }> } {
  const base = recordingListener();
  const retries: Array<{ attempt: number; beforeEnd: boolean }> = [];
  const retrying: JobListener['retrying'] = ({ attempt }) => {
    retries.push({ attempt, beforeEnd: !base.events.some((event) => event.type === 'completed' || event.type === 'failed') });
  };
  return Object.assign(base, { retries, retrying });
}

const ready = (child: ChildHandle, what: string): Promise<unknown> => child.waitFor((message) => message.type === 'ready', what, 60_000);
const callsOf = (child: ChildHandle): string[] => child.messages.filter((message) => message.type === 'call').map((message) => String(message.prompt));
const botEvent = (child: ChildHandle, tag: string, event: string): Promise<Record<string, unknown>> =>
  child.waitFor((message) => message.type === 'event' && message.tag === tag && message.event === event, `${event} of ${tag}`, 60_000);

(redisUp ? describe : describe.skip)('QUEUE=redis across processes', () => {
  test('a worker killed mid-job: another worker finishes it, and the user hears a retry notice, then the result', async () => {
    const scene = deployment('killed');
    const workers = [scene.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100', WORKER_ID: 'w1' }), scene.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100', WORKER_ID: 'w2' })];
    await Promise.all(workers.map((worker) => ready(worker, 'a worker')));
    const bot = await scene.bot();
    const listener = retryingListener();
    const ticket = await bot.imagine(user('alice'), params('survive', { seed: 3 }), listener);
    const holder = await Promise.race(workers.map((worker) => worker.waitFor((message) => message.type === 'call', 'the first engine call').then(() => worker)));
    await until(() => listener.events.some((event) => event.type === 'progress'), 'progress', 30_000);
    holder.kill('SIGKILL');
    const survivor = workers.find((worker) => worker !== holder)!;

    const final = await listener.settled;
    if (final.type !== 'completed') throw new Error(`expected completed, got ${JSON.stringify(final)}`);
    expect(listener.retries).toEqual([{ attempt: 1, beforeEnd: true }]);
    expect(callsOf(survivor)).toEqual(['survive']);
    expect(callsOf(holder)).toEqual(['survive']);
    const stored = await bot.getJob(ticket.job.id);
    expect(stored).toMatchObject({ status: 'completed', attempts: 1 });
    const grid = await decodeImage(final.output.file.data);
    expect(grid.width).toBe(final.output.file.width);
  });

  test('a job that loses its workers more often than allowed fails with a message, never silence', async () => {
    const scene = deployment('lost');
    const workers = [0, 1].map(() => scene.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100', MAX_STALLED: '0' }));
    await Promise.all(workers.map((worker) => ready(worker, 'a worker')));
    const bot = await scene.bot();
    const listener = retryingListener();
    const ticket = await bot.imagine(user('unlucky'), params('doomed'), listener);
    const holder = await Promise.race(workers.map((worker) => worker.waitFor((message) => message.type === 'call', 'the first engine call').then(() => worker)));
    holder.kill('SIGKILL');
    const final = await listener.settled;
    expect(final).toMatchObject({ type: 'failed', error: { code: ErrorCode.Engine, message: expect.stringContaining('stalled more than allowable limit') } });
    await eventually(async () => (await bot.getJob(ticket.job.id))?.status === 'failed', 'the failed record');
    expect((await bot.info(user('unlucky'))).running).toEqual([]);
    expect(callsOf(workers.find((worker) => worker !== holder)!)).toEqual([]);
  });

  test('a worker stopped gracefully puts a long job back: another worker finishes it', async () => {
    const scene = deployment('stopped');
    const workers = [scene.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100', GRACE_MS: '100' }), scene.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100', GRACE_MS: '100' })];
    await Promise.all(workers.map((worker) => ready(worker, 'a worker')));
    const bot = await scene.bot();
    const listener = retryingListener();
    await bot.imagine(user('alice'), params('put back'), listener);
    const holder = await Promise.race(workers.map((worker) => worker.waitFor((message) => message.type === 'call', 'the first engine call').then(() => worker)));
    holder.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
    const final = await listener.settled;
    expect(final.type).toBe('completed');
    expect(listener.retries.map((retry) => retry.attempt)).toEqual([1]);
    expect(callsOf(workers.find((worker) => worker !== holder)!)).toEqual(['put back']);
  });

  test('fair order across two bot processes: light users go before a heavy backlog queued by another bot', async () => {
    const scene = deployment('fair');
    const limits = { maxQueuedPerUser: 10, rateLimitBurst: 10 };
    const other = scene.spawn('bot-process.ts', { IMAGINE_TEST_CONFIG: JSON.stringify(limits) });
    await ready(other, 'the other bot');
    const bot = await scene.bot({ configOverrides: limits, capabilities: new FakeEngine().capabilities });
    for (let index = 0; index < 4; index += 1) {
      expect(await other.request({ command: 'imagine', user: 'heavy', prompt: `heavy ${index}`, tag: `heavy-${index}` })).toMatchObject({ ok: true });
    }
    const light = [recordingListener(), recordingListener()];
    const tickets = [await bot.imagine(user('a'), params('light a'), light[0]!), await bot.imagine(user('b'), params('light b'), light[1]!)];
    // Only the heavy user's first job is ahead of them.
    expect(tickets.map((ticket) => ticket.position)).toEqual([2, 3]);

    const worker = scene.spawn('worker-process.ts', { STEPS: '2', STEP_MS: '20' });
    await Promise.all([...light.map((listener) => listener.settled), ...[0, 1, 2, 3].map((index) => botEvent(other, `heavy-${index}`, 'completed'))]);
    expect(callsOf(worker)).toEqual(['heavy 0', 'light a', 'light b', 'heavy 1', 'heavy 2', 'heavy 3']);
    expect(light.map((listener) => listener.events.at(-1)?.type)).toEqual(['completed', 'completed']);
  });

  test('per-user limits hold across bot processes and workers; duplicate presses are dropped', async () => {
    const scene = deployment('limits');
    const limits = { maxRunningPerUser: 1, maxQueuedPerUser: 2, rateLimitBurst: 3, rateLimitPerMinute: 1 };
    const other = scene.spawn('bot-process.ts', { IMAGINE_TEST_CONFIG: JSON.stringify(limits) });
    await ready(other, 'the other bot');
    const bot = await scene.bot({ configOverrides: limits, capabilities: new FakeEngine().capabilities });

    // Both bots fire five jobs for the same user at once: one running + two waiting may be admitted in all.
    const [remote, local] = await Promise.all([
      other.request({ command: 'burst', user: 'same', count: 5, prompt: 'remote' }),
      Promise.all(Array.from({ length: 5 }, () => bot.imagine(user('same'), params('local'), recordingListener()).then((ticket) => ({ ok: true, jobId: ticket.job.id }), (error: { code: string }) => ({ ok: false, code: error.code })))),
    ]);
    const outcomes: Array<{ ok: boolean; code?: string; jobId?: string }> = [...(remote.results as Array<{ ok: boolean; code?: string; jobId?: string }>), ...local];
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(3);
    expect(new Set(outcomes.filter((outcome) => !outcome.ok).map((outcome) => outcome.code))).toEqual(new Set([ErrorCode.TooManyQueued]));

    // Two workers, but the user may run one job at a time: the three run one after another.
    const workers = [scene.spawn('worker-process.ts', { STEPS: '4', STEP_MS: '40' }), scene.spawn('worker-process.ts', { STEPS: '4', STEP_MS: '40' })];
    const ids = outcomes.flatMap((outcome) => (outcome.ok && outcome.jobId ? [outcome.jobId] : []));
    let records: JobRecord[] = [];
    await eventually(async () => {
      records = (await Promise.all(ids.map((id) => bot.getJob(id)))).filter((record): record is JobRecord => record !== undefined);
      return records.length === 3 && records.every((record) => record.status === 'completed');
    }, 'the three jobs to finish', 60_000);
    records.sort((a, b) => a.startedAt! - b.startedAt!);
    for (let index = 1; index < records.length; index += 1) expect(records[index]!.startedAt!).toBeGreaterThanOrEqual(records[index - 1]!.finishedAt!);
    expect(workers.flatMap(callsOf)).toHaveLength(3);

    // The burst of three tokens was spent across both bots: the next job is refused for the rate.
    await expect(other.request({ command: 'imagine', user: 'same', prompt: 'late' })).resolves.toMatchObject({ ok: false, code: ErrorCode.RateLimited });

    // The same button pressed in two bot processes at once starts one job.
    const pressed = await Promise.all([
      other.request({ command: 'upscale', user: 'presser', jobId: ids[0], index: 2 }),
      bot.upscale(user('presser'), ids[0]!, 2, recordingListener()).then(() => ({ ok: true }), (error: { code: string; message: string }) => ({ ok: false, code: error.code, message: error.message })),
    ]);
    expect(pressed.filter((outcome) => outcome.ok)).toHaveLength(1);
    expect(pressed.find((outcome) => !outcome.ok)).toMatchObject({ code: ErrorCode.InvalidAction, message: 'You pressed that button a moment ago; that job is already on its way.' });
  });

  test('an admin limit change made through one bot process is enforced by another at once and outlives their restarts', async () => {
    const scene = deployment('admin-limits');
    const environment = { IMAGINE_TEST_CONFIG: JSON.stringify({ maxRunningPerUser: 1, maxQueuedPerUser: 5, rateLimitBurst: 100, rateLimitPerMinute: 1000 }) };
    const [first, second] = [scene.spawn('bot-process.ts', environment), scene.spawn('bot-process.ts', environment)];
    await Promise.all([ready(first, 'the first bot'), ready(second, 'the second bot')]);
    // No worker: every job waits. As configured, the second bot takes three jobs of one user.
    expect((await second.request({ command: 'burst', user: 'before', count: 3 })).results).toEqual([0, 1, 2].map(() => expect.objectContaining({ ok: true })));

    expect(await first.request({ command: 'set-limits', changes: { maxQueued: 1 } })).toMatchObject({ ok: true, limits: { maxQueued: 1, maxRunning: 1 } });
    expect(await second.request({ command: 'get-limits' })).toMatchObject({ limits: { maxQueued: 1, maxRunning: 1, burst: 100, ratePerMinute: 1000 } });
    expect(await second.request({ command: 'info', user: 'after' })).toMatchObject({ limits: { maxQueued: 1 } });
    // One place to run and one to wait: the second bot refuses the third job with the limit error.
    expect(await second.request({ command: 'imagine', user: 'after', prompt: 'one' })).toMatchObject({ ok: true });
    expect(await second.request({ command: 'imagine', user: 'after', prompt: 'two' })).toMatchObject({ ok: true });
    expect(await second.request({ command: 'imagine', user: 'after', prompt: 'three' })).toMatchObject({ ok: false, code: ErrorCode.TooManyQueued, message: expect.stringContaining('the limit is 1') });
    expect(await first.request({ command: 'set-limits', changes: { maxQueued: -1 } })).toMatchObject({ ok: false, name: 'RangeError' });

    // Both bots go away; a new one, configured as before, still enforces the change.
    second.kill('SIGKILL');
    await Promise.all([first.stop(), second.exited]);
    const restarted = scene.spawn('bot-process.ts', environment);
    await ready(restarted, 'the restarted bot');
    expect(await restarted.request({ command: 'get-limits' })).toMatchObject({ limits: { maxQueued: 1 } });
    expect(await restarted.request({ command: 'info', user: 'later' })).toMatchObject({ limits: { maxQueued: 1 } });
    const later = await restarted.request({ command: 'burst', user: 'later', count: 3 });
    expect((later.results as Array<{ ok: boolean; code?: string }>).filter((outcome) => outcome.ok)).toHaveLength(2);
    expect((later.results as Array<{ ok: boolean; code?: string }>).find((outcome) => !outcome.ok)).toMatchObject({ code: ErrorCode.TooManyQueued });
  });

  test('an engine failure is retried once with a notice; a lasting one is then reported', async () => {
    const scene = deployment('retry');
    const engine = new FakeEngine({ failCalls: [0] });
    await scene.worker(engine);
    const bot = await scene.bot();
    const flaky = retryingListener();
    await bot.imagine(user('a'), params('flaky'), flaky);
    expect((await flaky.settled).type).toBe('completed');
    expect(flaky.retries).toEqual([{ attempt: 1, beforeEnd: true }]);
    expect(engine.calls.map((call) => call.prompt)).toEqual(['flaky', 'flaky']);

    engine.configure({ failPrompts: ['always'] });
    const broken = retryingListener();
    const ticket = await bot.imagine(user('b'), params('always fails'), broken);
    expect(await broken.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Engine }, job: { status: 'failed' } });
    expect(broken.retries.map((retry) => retry.attempt)).toEqual([1]);
    expect(await bot.getJob(ticket.job.id)).toMatchObject({ status: 'failed', attempts: 1, error: { code: ErrorCode.Engine } });
    // The user's running place was given back: they can start another job.
    expect((await bot.info(user('b'))).running).toEqual([]);
  });

  test('a job admitted by one bot process can be cancelled from another; its own bot tells the user', async () => {
    const scene = deployment('cancel');
    const other = scene.spawn('bot-process.ts', {});
    await ready(other, 'the other bot');
    const bot = await scene.bot({ capabilities: new FakeEngine().capabilities });
    const listener = recordingListener();
    const ticket = await bot.imagine(user('owner'), params('never runs'), listener);
    expect(await other.request({ command: 'cancel', user: 'stranger', jobId: ticket.job.id })).toMatchObject({ ok: false, code: ErrorCode.NotPermitted });
    expect(await other.request({ command: 'cancel', user: 'owner', jobId: ticket.job.id })).toMatchObject({ ok: true, status: 'cancelled' });
    expect(await listener.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Cancelled }, job: { status: 'cancelled' } });
    expect(await bot.getJob(ticket.job.id)).toMatchObject({ status: 'cancelled' });
    expect((await bot.info(user('owner'))).queued).toEqual([]);
  });

  test('a bot killed while its jobs run: the jobs finish and a restarted bot serves their buttons', async () => {
    const scene = deployment('restart');
    const worker = scene.spawn('worker-process.ts', { STEPS: '10', STEP_MS: '60' });
    const first = scene.spawn('bot-process.ts', {});
    await Promise.all([ready(worker, 'the worker'), ready(first, 'the first bot')]);
    const one = await first.request({ command: 'imagine', user: 'u', prompt: 'one', tag: 'one' });
    const two = await first.request({ command: 'imagine', user: 'u', prompt: 'two', tag: 'two' });
    await botEvent(first, 'one', 'started');
    first.kill('SIGKILL');
    await first.exited;

    const restarted = await scene.bot();
    const ids = [String(one.jobId), String(two.jobId)];
    await eventually(async () => (await Promise.all(ids.map((id) => restarted.getJob(id)))).every((record) => record?.status === 'completed'), 'both jobs to finish', 60_000);
    const upscale = recordingListener();
    await restarted.upscale(user('u'), ids[1]!, 4, upscale);
    expect((await upscale.settled).type).toBe('completed');
    const info = await restarted.info(user('u'));
    expect(info).toMatchObject({ running: [], queued: [] });
    expect(callsOf(worker)).toEqual(['one', 'two', 'two']);
  });

  test('a bot process stopped for a restart hands its jobs over: a bot process started after it posts each result once; a job nobody else can post fails as before', async () => {
    const scene = deployment('handover');
    // Slow enough that the third job still waits when the bot stops.
    const worker = scene.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100' });
    const first = scene.spawn('bot-process.ts', { ORPHANS: '1', GRACE_MS: '600000' });
    await Promise.all([ready(worker, 'the worker'), ready(first, 'the first bot')]);
    const running = await first.request({ command: 'imagine', user: 'u1', prompt: 'running', tag: 'running' });
    const waiting = await first.request({ command: 'imagine', user: 'u2', prompt: 'waiting', tag: 'waiting' });
    const page = await first.request({ command: 'imagine', user: 'u3', platform: 'web', prompt: 'page', tag: 'page' });
    await botEvent(first, 'running', 'started');
    first.kill('SIGTERM');
    // A ten-minute grace: it returns at once because nothing it could not hand over is left running.
    await first.waitFor((message) => message.type === 'stopped', 'the first bot to stop', 60_000);
    expect(await first.exited).toBe(0);
    const eventsOf = (tag: string): unknown[] => first.messages.filter((message) => message.type === 'event' && message.tag === tag).map((message) => message.event);
    expect(eventsOf('running').at(-1)).toBe('handed-over');
    expect(eventsOf('waiting').at(-1)).toBe('handed-over');
    expect([...eventsOf('running'), ...eventsOf('waiting')].filter((event) => event !== 'queued' && event !== 'started' && event !== 'progress')).toEqual(['handed-over', 'handed-over']);
    expect(first.messages.find((message) => message.tag === 'page' && message.event === 'failed')).toMatchObject({ jobId: page.jobId, code: ErrorCode.ShuttingDown });

    const restarted = scene.spawn('bot-process.ts', { ORPHANS: '1' });
    await ready(restarted, 'the restarted bot');
    const ids = [String(running.jobId), String(waiting.jobId)];
    const shown = (jobId: string): Array<Record<string, unknown>> =>
      restarted.messages.filter((message) => message.type === 'event' && message.tag === 'orphan' && message.jobId === jobId && (message.event === 'completed' || message.event === 'failed'));
    await Promise.all(ids.map((id) => restarted.waitFor((message) => shown(id).includes(message), `the result of ${id}`, 60_000)));
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      await eventually(async () => (await client.hlen(scene.keys.undelivered)) === 0, 'both jobs to be recorded as shown');
    } finally {
      client.disconnect();
    }
    await restarted.request({ command: 'ping', user: 'test' });
    expect(ids.map((id) => shown(id).map((message) => message.event))).toEqual([['completed'], ['completed']]);
    expect(callsOf(worker)).toEqual(['running', 'waiting']);
  });

  test('a bot killed while its jobs run: of two bot processes started after it, exactly one posts each result', async () => {
    const scene = deployment('orphaned');
    const worker = scene.spawn('worker-process.ts', { STEPS: '10', STEP_MS: '60' });
    const first = scene.spawn('bot-process.ts', { OWNER_TIMEOUT_MS: '1000' });
    await Promise.all([ready(worker, 'the worker'), ready(first, 'the first bot')]);
    const one = await first.request({ command: 'imagine', user: 'u', prompt: 'one', tag: 'one' });
    const two = await first.request({ command: 'imagine', user: 'u', prompt: 'two', tag: 'two' });
    await botEvent(first, 'one', 'started');
    first.kill('SIGKILL');
    await first.exited;

    const bots = [0, 1].map(() => scene.spawn('bot-process.ts', { ORPHANS: '1', OWNER_TIMEOUT_MS: '1000' }));
    await Promise.all(bots.map((bot) => ready(bot, 'a new bot')));
    const ids = [String(one.jobId), String(two.jobId)];
    const shown = (bot: ChildHandle, jobId: string): Array<Record<string, unknown>> =>
      bot.messages.filter((message) => message.type === 'event' && message.tag === 'orphan' && message.jobId === jobId && (message.event === 'completed' || message.event === 'failed'));
    await Promise.all(ids.map((id) => Promise.race(bots.map((bot) => bot.waitFor((message) => shown(bot, id).includes(message), `the result of ${id}`, 60_000)))));
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      await eventually(async () => (await client.hlen(scene.keys.undelivered)) === 0, 'both jobs to be recorded as shown');
    } finally {
      client.disconnect();
    }
    // Every message a bot sent before answering this has arrived.
    await Promise.all(bots.map((bot) => bot.request({ command: 'ping', user: 'test' })));
    expect(ids.map((id) => bots.flatMap((bot) => shown(bot, id)).map((message) => message.event))).toEqual([['completed'], ['completed']]);
    expect(callsOf(worker)).toEqual(['one', 'two']);
  });
});
