/**
 * QUEUE=redis when the bot process that admitted a job dies: a bot process killed with SIGKILL
 * (a child), a GPU worker and the adopting bots in this process, against a real Redis. Adopting
 * bots register an orphan delivery that records what it is asked to show, so a test can count
 * how often each job's end is shown.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { ErrorCode } from '../../../src/errors.js';
import { decodeImage } from '../../../src/image/encode.js';
import type { RedisGenerationService } from '../../../src/service/redis/redis-service.js';
import type { JobRecord, OrphanDelivery } from '../../../src/service/types.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { params, recordingListener, until, user, type RecordingListener } from '../helpers.js';
import { deploymentsCleanedAfterEach, eventually, type Deployment, redisAvailable, redisUrl, type ChildHandle } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the QUEUE=redis orphan tests: no Redis answers on 127.0.0.1:6379 (.ci/run starts one).');

/** Heartbeats of the bots in these tests: a killed bot's jobs are adopted within about a second. */
const ownerTimeoutMs = 600;

const deployment = deploymentsCleanedAfterEach();
let client: Redis | undefined;

afterAll(() => {
  client?.disconnect();
});

function redis(): Redis {
  client ??= new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  return client;
}

/** An orphan delivery for the `test` platform that hands out recording listeners, one per job asked about. */
function orphanRecorder(): { delivery: OrphanDelivery; asked: string[]; listeners: Map<string, RecordingListener[]>; completions(jobId: string): number } {
  const asked: string[] = [];
  const listeners = new Map<string, RecordingListener[]>();
  return {
    asked,
    listeners,
    delivery: {
      platform: 'test',
      listenerFor(job: JobRecord) {
        asked.push(job.id);
        const listener = recordingListener();
        listeners.set(job.id, [...(listeners.get(job.id) ?? []), listener]);
        return listener;
      },
    },
    completions: (jobId) => (listeners.get(jobId) ?? []).reduce((count, listener) => count + listener.events.filter((event) => event.type === 'completed' || event.type === 'failed').length, 0),
  };
}

/** The one listener of a job that was shown its end. */
function shownTo(recorder: ReturnType<typeof orphanRecorder>, jobId: string): RecordingListener | undefined {
  return recorder.listeners.get(jobId)?.find((listener) => listener.events.some((event) => event.type === 'completed' || event.type === 'failed'));
}

const ready = (child: ChildHandle, what: string): Promise<unknown> => child.waitFor((message) => message.type === 'ready', what, 60_000);

/** A bot process (a child) that admits jobs and is then killed; its heartbeat lasts {@link ownerTimeoutMs}. */
async function doomedBot(scene: Deployment): Promise<ChildHandle> {
  const owner = scene.spawn('bot-process.ts', { OWNER_TIMEOUT_MS: String(ownerTimeoutMs) });
  await ready(owner, 'the bot that will die');
  return owner;
}

async function imagineIn(owner: ChildHandle, userId: string, prompt: string): Promise<string> {
  const reply = await owner.request({ command: 'imagine', user: userId, prompt, tag: prompt });
  if (!reply.ok) throw new Error(`imagine was refused: ${JSON.stringify(reply)}`);
  return String(reply.jobId);
}

async function kill(owner: ChildHandle): Promise<void> {
  owner.kill('SIGKILL');
  await owner.exited;
}

function adopter(scene: Deployment): Promise<RedisGenerationService> {
  return scene.bot({ ownerTimeoutMs, capabilities: new FakeEngine().capabilities });
}

const undelivered = (scene: Deployment): Promise<number> => redis().hlen(scene.keys.undelivered);
const liveBots = async (scene: Deployment): Promise<number> => (await redis().keys(`${scene.keys.botPrefix}*`)).length;

(redisUp ? describe : describe.skip)('QUEUE=redis: jobs whose bot process died', () => {
  test('a live bot adopts the running and the waiting job of a killed bot, shows their progress and each result once', async () => {
    const scene = deployment('adopt');
    const engine = new FakeEngine({ hold: true, steps: 4 });
    await scene.worker(engine);
    const owner = await doomedBot(scene);
    const running = await imagineIn(owner, 'u1', 'running');
    const waiting = await imagineIn(owner, 'u2', 'waiting');
    await until(() => engine.calls.length === 1, 'the first job to start', 30_000);
    await kill(owner);

    const orphans = orphanRecorder();
    const bot = await adopter(scene);
    bot.registerOrphanDelivery(orphans.delivery);
    await until(() => orphans.listeners.has(running) && orphans.listeners.has(waiting), 'both jobs to be adopted', 30_000);
    engine.releaseAll();

    const first = orphans.listeners.get(running)![0]!;
    const second = orphans.listeners.get(waiting)![0]!;
    expect((await first.settled).type).toBe('completed');
    expect((await second.settled).type).toBe('completed');
    // Adopted while running: the engine's progress reached the new bot's listener before the result.
    const firstTypes = first.events.map((event) => event.type);
    expect(firstTypes).toContain('progress');
    expect(firstTypes.indexOf('progress')).toBeLessThan(firstTypes.indexOf('completed'));
    // Adopted while waiting: its place in line or its start was shown.
    expect(second.events.some((event) => event.type === 'queued' || event.type === 'started')).toBe(true);
    await eventually(async () => (await undelivered(scene)) === 0, 'both jobs to be recorded as shown');
    expect([orphans.completions(running), orphans.completions(waiting)]).toEqual([1, 1]);
    expect(await bot.getJob(running)).toMatchObject({ status: 'completed' });
  });

  test('two live bots adopting at the same moment: exactly one shows the end of each job', async () => {
    const scene = deployment('twice');
    const engine = new FakeEngine({ hold: true });
    await scene.worker(engine);
    const owner = await doomedBot(scene);
    const ids = [await imagineIn(owner, 'a', 'first'), await imagineIn(owner, 'b', 'second'), await imagineIn(owner, 'c', 'third')];
    await until(() => engine.calls.length === 1, 'the first job to start', 30_000);
    await kill(owner);
    engine.releaseAll();
    const store = await scene.store();
    try {
      await eventually(async () => (await Promise.all(ids.map((id) => store.get(id)))).every((record) => record?.status === 'completed'), 'the jobs to finish', 30_000);
    } finally {
      await store.close();
    }
    await eventually(async () => (await liveBots(scene)) === 0, 'the killed bot to be seen as gone');

    const recorders = [orphanRecorder(), orphanRecorder()];
    const bots = await Promise.all([adopter(scene), adopter(scene)]);
    // Both look at once: every job is a race between the two.
    bots.forEach((bot, index) => bot.registerOrphanDelivery(recorders[index]!.delivery));
    await eventually(async () => (await undelivered(scene)) === 0, 'every job to be shown', 30_000);
    expect(ids.map((id) => recorders[0]!.completions(id) + recorders[1]!.completions(id))).toEqual([1, 1, 1]);
    for (const id of ids) {
      const listener = shownTo(recorders[0]!, id) ?? shownTo(recorders[1]!, id);
      expect((await listener!.settled).type).toBe('completed');
    }
  });

  test('a live owner shows its own jobs: another bot with an orphan delivery shows none of them', async () => {
    const scene = deployment('owned');
    await scene.worker(new FakeEngine({ steps: 4, stepDelayMs: 20 }));
    const bystander = orphanRecorder();
    const other = await adopter(scene);
    other.registerOrphanDelivery(bystander.delivery);
    const owner = await adopter(scene);
    const listeners = [recordingListener(), recordingListener()];
    await owner.imagine(user('a'), params('mine'), listeners[0]!);
    await owner.imagine(user('b'), params('also mine'), listeners[1]!);
    expect((await Promise.all(listeners.map((listener) => listener.settled))).map((event) => event.type)).toEqual(['completed', 'completed']);
    await eventually(async () => (await undelivered(scene)) === 0, 'the jobs to be recorded as shown');
    expect(await other.adoptOrphans()).toBe(0);
    expect(bystander.asked).toEqual([]);
  });

  test('jobs that ended while no bot was alive are shown at start-up; an expired file is drawn again from the stored images', async () => {
    const scene = deployment('late');
    // Held until the owner is dead, so that it cannot show either end itself.
    const engine = new FakeEngine({ failPrompts: ['broken'], hold: true });
    await scene.worker(engine);
    const owner = await doomedBot(scene);
    const lonely = await imagineIn(owner, 'u1', 'lonely');
    const broken = await imagineIn(owner, 'u2', 'broken');
    await kill(owner);
    engine.releaseAll();
    const store = await scene.store();
    try {
      await eventually(async () => (await store.get(lonely))?.status === 'completed' && (await store.get(broken))?.status === 'failed', 'both jobs to end', 30_000);
    } finally {
      await store.close();
    }
    // An hour later: the file and BullMQ's job are gone, only the record is left.
    await redis().del(scene.keys.output(lonely));
    const queue = new Queue(scene.names.queue, { connection: redis(), prefix: scene.names.prefix });
    await queue.remove(lonely);
    await queue.close();
    await eventually(async () => (await liveBots(scene)) === 0, 'the killed bot to be seen as gone');

    const orphans = orphanRecorder();
    const bot = await adopter(scene);
    bot.registerOrphanDelivery(orphans.delivery);
    await until(() => orphans.listeners.has(lonely) && orphans.listeners.has(broken), 'both jobs to be adopted', 30_000);
    const shown = await orphans.listeners.get(lonely)![0]!.settled;
    if (shown.type !== 'completed') throw new Error(`expected completed, got ${JSON.stringify(shown)}`);
    const record = await bot.getJob(lonely);
    const grid = await decodeImage(shown.output.file.data);
    expect([grid.width, grid.height]).toEqual([shown.output.file.width, shown.output.file.height]);
    expect(grid.width).toBeGreaterThan(record!.width);
    expect(shown.output.job).toMatchObject({ id: lonely, status: 'completed' });
    expect(await orphans.listeners.get(broken)![0]!.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Engine } });
    await eventually(async () => (await undelivered(scene)) === 0, 'both jobs to be recorded as shown');
  });

  test('a bot stopped gracefully hands its running and waiting jobs over: not cancelled, the user told once, a live bot shows each result once', async () => {
    const scene = deployment('handover');
    const engine = new FakeEngine({ hold: true, steps: 4 });
    await scene.worker(engine);
    const owner = await adopter(scene);
    owner.registerOrphanDelivery(orphanRecorder().delivery);
    // Like the playground: registered, but its jobs cannot be shown by another process.
    owner.registerOrphanDelivery({ platform: 'web', listenerFor: () => undefined });
    const orphans = orphanRecorder();
    const other = await adopter(scene);
    other.registerOrphanDelivery(orphans.delivery);

    const [running, waiting, page] = [recordingListener(), recordingListener(), recordingListener()];
    const runningId = (await owner.imagine(user('u1'), params('running'), running)).job.id;
    await until(() => running.events.some((event) => event.type === 'started'), 'the first job to start', 30_000);
    const waitingId = (await owner.imagine(user('u2'), params('waiting'), waiting)).job.id;
    const pageId = (await owner.imagine({ platform: 'web', userId: 'u3' }, params('page'), page)).job.id;
    // The engine is held: a shutdown that waited for the running job would not return.
    await owner.shutdown(600_000);

    expect(await page.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.ShuttingDown } });
    for (const [listener, status] of [[running, 'running'], [waiting, 'queued']] as const) {
      expect(listener.events.filter((event) => event.type === 'handed-over')).toEqual([expect.objectContaining({ job: expect.objectContaining({ status }) })]);
      expect(listener.events.at(-1)?.type).toBe('handed-over');
    }
    for (const id of [runningId, waitingId]) expect(await redis().exists(scene.keys.cancelled(id))).toBe(0);
    await until(() => orphans.listeners.has(runningId) && orphans.listeners.has(waitingId), 'both jobs to be adopted', 30_000);
    engine.releaseAll();

    await until(() => shownTo(orphans, runningId) !== undefined && shownTo(orphans, waitingId) !== undefined, 'both results to be shown', 30_000);
    expect((await shownTo(orphans, runningId)!.settled).type).toBe('completed');
    expect((await shownTo(orphans, waitingId)!.settled).type).toBe('completed');
    // Adopted while running: the engine's progress reached the live bot before the result.
    const types = orphans.listeners.get(runningId)!.flatMap((listener) => listener.events.map((event) => event.type));
    expect(types.indexOf('progress')).toBeGreaterThanOrEqual(0);
    expect(types.indexOf('progress')).toBeLessThan(types.indexOf('completed'));
    await eventually(async () => (await undelivered(scene)) === 0, 'both jobs to be recorded as shown');
    expect([orphans.completions(runningId), orphans.completions(waitingId)]).toEqual([1, 1]);
    expect(engine.calls.map((call) => call.prompt)).toEqual(['running', 'waiting']);
    expect(await other.getJob(pageId)).toMatchObject({ status: 'failed', error: { code: ErrorCode.ShuttingDown } });
  });

  test('a running job nobody else can show still gets the grace period, then is stopped and its user told', async () => {
    const scene = deployment('no-handover');
    const engine = new FakeEngine({ hold: true });
    await scene.worker(engine);
    const owner = await adopter(scene);
    owner.registerOrphanDelivery(orphanRecorder().delivery);
    owner.registerOrphanDelivery({ platform: 'web', listenerFor: () => undefined });
    const page = recordingListener();
    await owner.imagine({ platform: 'web', userId: 'u1' }, params('page'), page);
    await until(() => page.events.some((event) => event.type === 'started'), 'the job to start', 30_000);
    await owner.shutdown(200);
    expect(await page.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.ShuttingDown } });
    expect(page.events.some((event) => event.type === 'handed-over')).toBe(false);
    await until(() => engine.calls[0]?.aborted === true, 'the worker to stop the job', 30_000);
  });

  test('SHUTDOWN_HANDOVER=off: a stopping bot fails its waiting jobs even where another bot could show them', async () => {
    const scene = deployment('handover-off');
    const owner = await scene.bot({ ownerTimeoutMs, capabilities: new FakeEngine().capabilities, configOverrides: { shutdownHandover: 'off' } });
    owner.registerOrphanDelivery(orphanRecorder().delivery);
    const waiting = recordingListener();
    const ticket = await owner.imagine(user('u1'), params('waiting'), waiting);
    await owner.shutdown(0);
    expect(await waiting.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.ShuttingDown } });
    expect(waiting.events.some((event) => event.type === 'handed-over')).toBe(false);
    expect(await redis().hexists(scene.keys.undelivered, ticket.job.id)).toBe(0);
  });

  test('a platform that cannot show an orphaned job: it is let go once, and its record stays for the buttons', async () => {
    const scene = deployment('unshown');
    const engine = new FakeEngine({ hold: true });
    await scene.worker(engine);
    const owner = await doomedBot(scene);
    const jobId = await imagineIn(owner, 'u1', 'nobody watches');
    await kill(owner);
    engine.releaseAll();
    let asked = 0;
    const bot = await adopter(scene);
    bot.registerOrphanDelivery({ platform: 'test', listenerFor: () => void (asked += 1) });
    await eventually(async () => (await undelivered(scene)) === 0, 'the job to be let go', 30_000);
    expect(asked).toBeGreaterThan(0);
    expect(await bot.getJob(jobId)).toMatchObject({ status: 'completed' });
    const askedWhenLetGo = asked;
    expect(await bot.adoptOrphans()).toBe(0);
    expect(asked).toBe(askedWhenLetGo);
  });
});
