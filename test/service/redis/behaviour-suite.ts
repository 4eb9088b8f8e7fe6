/**
 * What every GenerationService must do, whatever holds its queue: run by behaviour.test.ts
 * against the in-memory service and against the Redis service with an in-process GPU worker.
 * Only observable behaviour is asserted (events, records, errors), never timings.
 */
import type { Config } from '../../../src/config/config.js';
import { deriveSeed } from '../../../src/engine/random.js';
import { ErrorCode, LimitError } from '../../../src/errors.js';
import { decodeImage } from '../../../src/image/encode.js';
import type { GenerationService, JobRecord, Requester } from '../../../src/service/types.js';
import type { UserLimits } from '../../../src/service/generation-service.js';
import { FakeEngine, colourForSeed, meanColour } from '../../fakes/fake-engine.js';
import { params, recordingListener, until, user } from '../helpers.js';

/** A running service over a FakeEngine, however it is wired. */
export interface ServiceUnderTest {
  service: GenerationService;
  engine: FakeEngine;
}

/** Builds a service for one test; the suite's afterEach calls `cleanup`. */
export interface ServiceFactory {
  create(options: { engine: FakeEngine; config?: Partial<Config>; limitsFor?: (requester: Requester) => Partial<UserLimits> | undefined; randomSeed?: () => number }): Promise<ServiceUnderTest>;
  cleanup(): Promise<void>;
}

function expectClose(actual: number[], expected: number[], tolerance = 3): void {
  actual.forEach((value, index) => expect(Math.abs(value - expected[index]!)).toBeLessThanOrEqual(tolerance));
}

export function generationServiceBehaviour(factory: ServiceFactory): void {
  afterEach(() => factory.cleanup());

  test('imagine reports start and progress, then delivers the grid and stores the job', async () => {
    const { service, engine } = await factory.create({ engine: new FakeEngine() });
    const listener = recordingListener();
    const ticket = await service.imagine(user('alice'), params('a red circle', { seed: 7 }), listener);
    expect(['queued', 'running']).toContain(ticket.job.status);
    const final = await listener.settled;
    if (final.type !== 'completed') throw new Error(`expected completed, got ${JSON.stringify(final)}`);
    const seeds = [0, 1, 2, 3].map((index) => deriveSeed(7, index));
    expect(engine.calls[0]!.seeds).toEqual(seeds);
    const types = listener.events.map((event) => event.type);
    expect(types).toContain('started');
    expect(types.at(-1)).toBe('completed');
    const fractions = listener.events.flatMap((event) => (event.type === 'progress' ? [event.fraction] : []));
    expect(fractions.at(-1)).toBe(1);
    expect([...fractions].sort((a, b) => a - b)).toEqual(fractions);
    expect(final.output.file.name).toMatch(/^a-red-circle-.+\.png$/);
    const grid = await decodeImage(final.output.file.data);
    expect(grid.width).toBe(final.output.file.width);
    const stored = await service.getJob(ticket.job.id);
    expect(stored).toMatchObject({ status: 'completed' });
    expect(stored?.images?.map((image) => image.seed)).toEqual(seeds);
    expect(stored?.images?.[0]?.artifact?.values).toBeInstanceOf(Float32Array);
  });

  test('bad parameters are refused with the field at fault', async () => {
    const { service } = await factory.create({ engine: new FakeEngine() });
    await expect(service.imagine(user('alice'), params('x', { aspectRatio: '5:1' }), recordingListener())).rejects.toThrow(/5:1 is not available; use one of 1:1/);
    await expect(service.imagine(user('alice'), params('   '), recordingListener())).rejects.toMatchObject({ code: ErrorCode.PromptEmpty });
    await expect(service.imagine(user('alice'), params('x', { steps: 1000 }), recordingListener())).rejects.toMatchObject({ code: ErrorCode.FlagInvalid, field: 'steps' });
  });

  test("one user's backlog does not push back other users' first jobs", async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine, limitsFor: (requester) => (requester.userId === 'heavy' ? { maxQueued: 50, burst: 50 } : undefined) });
    const heavy = [0, 1, 2, 3, 4].map(() => recordingListener());
    for (const [index, listener] of heavy.entries()) await service.imagine(user('heavy'), params(`heavy ${index}`), listener);
    await engine.waitForCalls(1);
    const light = [recordingListener(), recordingListener()];
    const tickets = [await service.imagine(user('a'), params('light a'), light[0]!), await service.imagine(user('b'), params('light b'), light[1]!)];
    expect(tickets.map((ticket) => ticket.position)).toEqual([1, 2]);
    engine.releaseAll();
    await Promise.all([...heavy, ...light].map((listener) => listener.settled));
    expect(engine.calls.map((call) => call.prompt)).toEqual(['heavy 0', 'light a', 'light b', 'heavy 1', 'heavy 2', 'heavy 3', 'heavy 4']);
    // Waiting jobs hear their place: pushed back when the light users arrived, then moving up
    // (how many steps they hear depends on how fast the queue moves).
    const places = heavy[4]!.positions();
    const worst = places.indexOf(Math.max(...places));
    expect(places.length).toBeGreaterThan(1);
    expect(places.slice(worst)).toEqual([...places.slice(worst)].sort((a, b) => b - a));
    expect(places.at(-1)!).toBeLessThan(places[worst]!);
  });

  test("a user's own jobs run in the order they were asked for, even after cancelling some", async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine, config: { rateLimitBurst: 10 } });
    const listeners = [1, 2, 3, 4].map(() => recordingListener());
    const tickets = [];
    for (const [index, listener] of listeners.entries()) tickets.push(await service.imagine(user('a'), params(`a${index + 1}`), listener));
    await engine.waitForCalls(1);
    await service.cancel(user('a'), tickets[1]!.job.id);
    await service.cancel(user('a'), tickets[2]!.job.id);
    const last = recordingListener();
    await service.imagine(user('a'), params('a5'), last);
    engine.releaseAll();
    await Promise.all([...listeners, last].map((listener) => listener.settled));
    expect(engine.calls.map((call) => call.prompt)).toEqual(['a1', 'a4', 'a5']);
  });

  test('the rate limit refuses with the time to wait and queues nothing', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine, config: { rateLimitPerMinute: 10, rateLimitBurst: 3, maxQueuedPerUser: 10 } });
    for (let index = 0; index < 3; index += 1) await service.imagine(user('a'), params(`job ${index}`), recordingListener());
    const error = await service.imagine(user('a'), params('one too many'), recordingListener()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LimitError);
    expect((error as LimitError).code).toBe(ErrorCode.RateLimited);
    expect((error as LimitError).message).toMatch(/^You're starting jobs too quickly \(the limit is 10 a minute, 3 at once\)\. You can start another job in [1-6] s\.$/);
    expect((error as LimitError).retryAfterMs).toBeGreaterThan(0);
    expect((error as LimitError).retryAfterMs).toBeLessThanOrEqual(6000);
    const info = await service.info(user('a'));
    expect(info.running.length + info.queued.length).toBe(3);
    expect(info.limits).toMatchObject({ tokensLeft: 0, ratePerMinute: 10, burst: 3 });
    // Another user has a bucket of their own.
    await expect(service.imagine(user('b'), params('b'), recordingListener())).resolves.toBeDefined();
    engine.releaseAll();
  });

  test('too many waiting jobs are refused, and the refusal costs no token', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine, config: { maxQueuedPerUser: 2, rateLimitBurst: 10 } });
    const first = recordingListener();
    await service.imagine(user('a'), params('job 0'), first);
    await engine.waitForCalls(1);
    for (let index = 1; index < 3; index += 1) await service.imagine(user('a'), params(`job ${index}`), recordingListener());
    const error = (await service.imagine(user('a'), params('too many'), recordingListener()).catch((caught: unknown) => caught)) as LimitError;
    expect(error.code).toBe(ErrorCode.TooManyQueued);
    expect(error.message).toMatch(/^You already have 2 jobs waiting \(the limit is 2\)\. You can start another job in \d+ s, when the first of them starts\.$/);
    const info = await service.info(user('a'));
    expect(info.queued).toHaveLength(2);
    expect(info.running).toHaveLength(1);
    expect(info.limits.tokensLeft).toBe(7);
    engine.releaseAll();
  });

  test('a second job of a user waits while the first runs, even with a free slot', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine, config: { gpuSlots: 2 } });
    const listeners = [recordingListener(), recordingListener(), recordingListener()];
    await service.imagine(user('a'), params('a1'), listeners[0]!);
    await service.imagine(user('a'), params('a2'), listeners[1]!);
    await service.imagine(user('b'), params('b1'), listeners[2]!);
    await engine.waitForCalls(2);
    // Give a wrongly started third call the chance to appear.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(engine.calls.map((call) => call.prompt).sort()).toEqual(['a1', 'b1']);
    engine.releaseAll();
    await Promise.all(listeners.map((listener) => listener.settled));
    expect(engine.calls.map((call) => call.prompt).sort()).toEqual(['a1', 'a2', 'b1']);
  });

  test('cancelling a queued job tells its listener and it never runs', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine });
    const first = recordingListener();
    const second = recordingListener();
    await service.imagine(user('a'), params('running'), first);
    await engine.waitForCalls(1);
    const ticket = await service.imagine(user('b'), params('queued'), second);
    await expect(service.cancel(user('stranger'), ticket.job.id)).rejects.toMatchObject({ code: ErrorCode.NotPermitted });
    const cancelled = await service.cancel(user('b'), ticket.job.id);
    expect(cancelled.status).toBe('cancelled');
    expect(await second.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Cancelled, message: 'The job was cancelled.' } });
    engine.releaseAll();
    await first.settled;
    expect(engine.calls.map((call) => call.prompt)).toEqual(['running']);
    expect((await service.getJob(ticket.job.id))?.status).toBe('cancelled');
    await expect(service.cancel(user('a'), 'no-such-job')).rejects.toMatchObject({ code: ErrorCode.JobNotFound });
  });

  test('cancelling a running job stops the engine call', async () => {
    const engine = new FakeEngine({ stepDelayMs: 5, steps: 2000 });
    const { service } = await factory.create({ engine });
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('long'), listener);
    await until(() => listener.events.some((event) => event.type === 'progress'), 'progress', 30_000);
    await service.cancel(user('a', { isAdmin: true }), ticket.job.id);
    expect(await listener.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Cancelled } });
    await until(() => engine.calls[0]!.aborted === true, 'the engine to stop');
  });

  test('an engine failure reaches the listener and the queue carries on', async () => {
    const engine = new FakeEngine({ failPrompts: ['explode'] });
    const { service } = await factory.create({ engine });
    const bad = recordingListener();
    const good = recordingListener();
    await service.imagine(user('a'), params('please explode'), bad);
    await service.imagine(user('b'), params('fine'), good);
    expect(await bad.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Engine } });
    expect((await good.settled).type).toBe('completed');
  });

  test('a job that runs too long times out with a clear message', async () => {
    const engine = new FakeEngine({ hold: true, ignoreAbort: true });
    const { service } = await factory.create({ engine, config: { jobTimeoutSeconds: 1 } });
    const listener = recordingListener();
    await service.imagine(user('a'), params('slow'), listener);
    const event = await listener.settled;
    expect(event).toMatchObject({ type: 'failed', error: { code: ErrorCode.TimedOut, message: 'The job took longer than 1 s and was stopped. Try again, perhaps with fewer steps.' } });
    engine.releaseAll();
  });

  test('upscale, vary and reroll work on a finished job', async () => {
    let next = 1000;
    const { service, engine } = await factory.create({ engine: new FakeEngine(), randomSeed: () => next++ });
    const first = recordingListener();
    const ticket = await service.imagine(user('a'), params('shapes', { seed: 99 }), first);
    await first.settled;

    const upscale = recordingListener();
    const upscaleTicket = await service.upscale(user('b'), ticket.job.id, 3, upscale);
    expect(upscaleTicket.job).toMatchObject({ kind: 'upscale', parent: { jobId: ticket.job.id, index: 3 } });
    const upscaled = await upscale.settled;
    if (upscaled.type !== 'completed') throw new Error(`upscale: ${JSON.stringify(upscaled)}`);
    const image = await decodeImage(upscaled.output.file.data);
    const size = engine.capabilities.sizes['1:1']!;
    expect([image.width, image.height]).toEqual([size.width * 2, size.height * 2]);
    expectClose(meanColour(image), colourForSeed(deriveSeed(99, 2)));
    expect(upscaled.output.file.name).toMatch(/-u3-/);

    const vary = recordingListener();
    await service.vary(user('a'), ticket.job.id, 2, 'strong', vary);
    expect((await vary.settled).type).toBe('completed');
    expect(engine.calls.find((call) => call.method === 'vary')).toMatchObject({ strength: 'strong', sourceSeed: deriveSeed(99, 1), seeds: [0, 1, 2, 3].map((index) => deriveSeed(1000, index)) });

    const reroll = recordingListener();
    const rerollTicket = await service.reroll(user('a'), ticket.job.id, reroll);
    expect((await reroll.settled).type).toBe('completed');
    expect(rerollTicket.job.parameters).toMatchObject({ prompt: 'shapes', seed: 1001 });
  });

  test('buttons of unknown or unfinished jobs get clear errors', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine });
    await expect(service.upscale(user('a'), 'gone', 1, recordingListener())).rejects.toMatchObject({ code: ErrorCode.JobNotFound, message: expect.stringMatching(/expired.*Run \/imagine again/) });
    const running = await service.imagine(user('a'), params('x'), recordingListener());
    await expect(service.vary(user('a'), running.job.id, 1, 'subtle', recordingListener())).rejects.toMatchObject({ code: ErrorCode.JobNotReady });
    await expect(service.upscale(user('a'), running.job.id, 5, recordingListener())).rejects.toThrow('Pick an image from 1 to 4.');
    engine.releaseAll();
  });

  test('attachMessage keeps the platform reference with the finished job', async () => {
    const { service } = await factory.create({ engine: new FakeEngine() });
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('x'), listener);
    await listener.settled;
    await service.attachMessage(ticket.job.id, { platform: 'test', channelId: 'c1', messageId: 'm1' });
    const stored: JobRecord | undefined = await service.getJob(ticket.job.id);
    expect(stored?.message).toEqual({ platform: 'test', channelId: 'c1', messageId: 'm1' });
    expect(stored?.status).toBe('completed');
    await expect(service.attachMessage('nope', { platform: 'test' })).rejects.toMatchObject({ code: ErrorCode.JobNotFound });
  });

  test('shutdown lets the running job finish, fails waiting jobs clearly and refuses new work', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await factory.create({ engine });
    const running = recordingListener();
    const queued = recordingListener();
    await service.imagine(user('a'), params('running'), running);
    await engine.waitForCalls(1);
    await service.imagine(user('b'), params('queued'), queued);
    const stopping = service.shutdown(60_000);
    expect(await queued.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.ShuttingDown, message: 'The bot is restarting, so your job was not started. Please run the command again in a minute.' } });
    await expect(service.imagine(user('c'), params('late'), recordingListener())).rejects.toMatchObject({ code: ErrorCode.ShuttingDown });
    engine.releaseAll();
    expect((await running.settled).type).toBe('completed');
    await stopping;
    expect(engine.calls.map((call) => call.prompt)).toEqual(['running']);
  });
}
