import { decodeImage } from '../../src/image/encode.js';
import { gridLayout, defaultGutter } from '../../src/image/grid.js';
import { deriveSeed } from '../../src/engine/random.js';
import { ErrorCode, ImagineError, JobError, LimitError, StoreError, UserError } from '../../src/errors.js';
import { ManualClock } from '../../src/service/clock.js';
import { createGenerationService, type GenerationServiceOptions, type RunningGenerationService } from '../../src/service/generation-service.js';
import { createJobStore, type JobStore } from '../../src/service/job-store.js';
import type { JobRecord } from '../../src/service/types.js';
import { FakeEngine, colourForSeed, meanColour } from '../fakes/fake-engine.js';
import { params, recordingListener, temporaryFolder, testConfig, until, user, type RecordingListener } from './helpers.js';

const services: RunningGenerationService[] = [];

async function makeService(options: Partial<GenerationServiceOptions> & { engine?: FakeEngine } = {}): Promise<{ service: RunningGenerationService; engine: FakeEngine }> {
  const engine = options.engine ?? new FakeEngine();
  const service = await createGenerationService({ config: testConfig(), ...options, engine });
  services.push(service);
  return { service, engine };
}

afterEach(async () => {
  for (const service of services.splice(0)) await service.shutdown(0);
});

function expectClose(actual: number[], expected: number[], tolerance = 3): void {
  actual.forEach((value, index) => expect(Math.abs(value - expected[index]!)).toBeLessThanOrEqual(tolerance));
}

describe('imagine', () => {
  test('draws four images into a 2×2 grid, reports start and progress, and stores the job', async () => {
    const { service, engine } = await makeService();
    const listener = recordingListener();
    const ticket = await service.imagine(user('alice'), params('a red circle', { seed: 7 }), listener);
    expect(ticket.position).toBe(0);
    const final = await listener.settled;
    expect(final.type).toBe('completed');
    if (final.type !== 'completed') return;

    const seeds = [0, 1, 2, 3].map((index) => deriveSeed(7, index));
    expect(engine.calls[0]!.seeds).toEqual(seeds);
    const types = listener.events.map((event) => event.type);
    expect(types[0]).toBe('started');
    expect(types.at(-1)).toBe('completed');
    const fractions = listener.events.flatMap((event) => (event.type === 'progress' ? [event.fraction] : []));
    expect(fractions.length).toBeGreaterThan(0);
    expect([...fractions].sort((a, b) => a - b)).toEqual(fractions);
    expect(fractions.at(-1)).toBe(1);

    const grid = await decodeImage(final.output.file.data);
    const size = engine.capabilities.sizes['1:1']!;
    const layout = gridLayout(size.width, size.height, defaultGutter(size.width, size.height));
    expect([grid.width, grid.height]).toEqual([layout.width, layout.height]);
    layout.cells.forEach((cell, index) => {
      expectClose(meanColour(grid, { left: cell.left + 2, top: cell.top + 2, width: size.width - 4, height: size.height - 4 }), colourForSeed(seeds[index]!));
    });
    expect(final.output.file.contentType).toBe('image/png');
    expect(final.output.file.name).toMatch(/^a-red-circle-.+\.png$/);
    expect(final.output.job).toMatchObject({ status: 'completed', images: expect.any(Array) });
    expect(final.output.job.finishedAt).toBeGreaterThanOrEqual(final.output.job.startedAt!);

    const stored = await service.getJob(ticket.job.id);
    expect(stored?.status).toBe('completed');
    expect(stored?.images).toHaveLength(4);
    expect(stored?.images?.map((image) => image.seed)).toEqual(seeds);
  });

  test('refuses an aspect ratio the engine does not offer, naming the choices', async () => {
    const { service } = await makeService();
    await expect(service.imagine(user('alice'), params('x', { aspectRatio: '5:1' }), recordingListener())).rejects.toThrow(/5:1 is not available; use one of 1:1/);
    await expect(service.imagine(user('alice'), params('   '), recordingListener())).rejects.toMatchObject({ code: ErrorCode.PromptEmpty });
    await expect(service.imagine(user('alice'), params('x', { steps: 1000 }), recordingListener())).rejects.toMatchObject({ code: ErrorCode.FlagInvalid, field: 'steps' });
  });

  test('uses the engine size of the aspect ratio', async () => {
    const { service, engine } = await makeService();
    const listener = recordingListener();
    await service.imagine(user('alice'), params('wide', { aspectRatio: '16:9' }), listener);
    await listener.settled;
    const size = engine.capabilities.sizes['16:9']!;
    expect([engine.calls[0]!.width, engine.calls[0]!.height]).toEqual([size.width, size.height]);
  });
});

describe('fair queue', () => {
  test("one user's backlog does not push back another user's first job", async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, limitsFor: (requester) => (requester.userId === 'heavy' ? { maxQueued: 50, burst: 50 } : undefined) });
    const heavy = [0, 1, 2, 3, 4].map(() => recordingListener());
    for (const [index, listener] of heavy.entries()) await service.imagine(user('heavy'), params(`heavy ${index}`), listener);
    await until(() => heavy[1]!.positions().length === 1, 'the first position update');
    const light = [recordingListener(), recordingListener()];
    const tickets = [await service.imagine(user('a'), params('light a'), light[0]!), await service.imagine(user('b'), params('light b'), light[1]!)];
    expect(tickets.map((ticket) => ticket.position)).toEqual([1, 2]);

    engine.releaseAll();
    await Promise.all([...heavy, ...light].map((listener) => listener.settled));
    expect(engine.calls.map((call) => call.prompt)).toEqual(['heavy 0', 'light a', 'light b', 'heavy 1', 'heavy 2', 'heavy 3', 'heavy 4']);
    // The heavy user's waiting jobs were told they moved back when the light users arrived
    // (updates of one burst of commands go out once, after the burst).
    expect(heavy[1]!.positions()).toEqual([1, 3, 2, 1]);
  });

  test('positions and ETAs come from measured durations and update as the queue moves', async () => {
    const clock = new ManualClock();
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, clock, defaultDurationsMs: { imagine: 1000 } });
    const listeners = ['a', 'b', 'c'].map(() => recordingListener());
    const tickets = [];
    for (const [index, id] of ['a', 'b', 'c'].entries()) tickets.push(await service.imagine(user(id), params(id), listeners[index]!));
    expect(tickets.map((ticket) => [ticket.position, ticket.etaMs])).toEqual([[0, 1000], [1, 2000], [2, 3000]]);

    clock.advance(3000);
    engine.release();
    await listeners[0]!.settled;
    await until(() => listeners[2]!.positions().length === 2, 'c to move up');
    expect(listeners[2]!.positions()).toEqual([2, 1]);
    const eta = listeners[2]!.events.filter((event) => event.type === 'queued').map((event) => (event as { etaMs: number }).etaMs);
    // The first job took 3000 ms, so the moving average rose above the 1000 ms seed.
    expect(eta[1]!).toBeGreaterThan(2000);
    const info = await service.info(user('c'));
    expect(info.averageJobMs).toBe(1600);
    engine.releaseAll();
    await Promise.all(listeners.map((listener) => listener.settled));
  });

  test('runs as many jobs at once as there are slots, but only one per user by default', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, config: testConfig({ gpuSlots: 2 }) });
    const listeners = [recordingListener(), recordingListener(), recordingListener()];
    await service.imagine(user('a'), params('a1'), listeners[0]!);
    await service.imagine(user('a'), params('a2'), listeners[1]!);
    await service.imagine(user('b'), params('b1'), listeners[2]!);
    await engine.waitForCalls(2);
    expect(engine.calls.map((call) => call.prompt)).toEqual(['a1', 'b1']);
    expect(service.metrics.running).toBe(2);
    expect(service.metrics.queueDepth).toBe(1);
    engine.releaseAll();
    await Promise.all(listeners.map((listener) => listener.settled));
    expect(engine.calls.map((call) => call.prompt)).toEqual(['a1', 'b1', 'a2']);
  });
});

describe('limits', () => {
  test('the rate limit says when to retry, queues nothing and refills with time', async () => {
    const clock = new ManualClock();
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, clock, config: testConfig({ storeUrl: 'memory://', logLevel: 'silent', rateLimitPerMinute: 10, rateLimitBurst: 3, maxQueuedPerUser: 10 }) });
    for (let index = 0; index < 3; index += 1) await service.imagine(user('a'), params(`job ${index}`), recordingListener());
    const before = (await service.info(user('a'))).queueLength;
    const error = await service.imagine(user('a'), params('one too many'), recordingListener()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LimitError);
    expect((error as LimitError).code).toBe(ErrorCode.RateLimited);
    expect((error as LimitError).message).toBe("You're starting jobs too quickly (the limit is 10 a minute, 3 at once). You can start another job in 6 s.");
    expect((error as LimitError).retryAfterMs).toBe(6000);
    expect((await service.info(user('a'))).queueLength).toBe(before);
    expect((await service.info(user('a'))).limits).toMatchObject({ tokensLeft: 0, nextTokenInMs: 6000 });

    clock.advance(2000);
    await expect(service.imagine(user('a'), params('still early'), recordingListener())).rejects.toThrow('You can start another job in 4 s.');
    clock.advance(4000);
    await expect(service.imagine(user('a'), params('now'), recordingListener())).resolves.toMatchObject({ position: 3 });
    expect(service.metrics.snapshot().rejections).toEqual({ rate_limited: 2 });
    // Another user has a bucket of their own.
    await expect(service.imagine(user('b'), params('b'), recordingListener())).resolves.toBeDefined();
  });

  test('too many queued jobs are refused with the time until the first of them starts', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, config: testConfig({ maxQueuedPerUser: 2, rateLimitBurst: 10 }), defaultDurationsMs: { imagine: 10_000 } });
    for (let index = 0; index < 3; index += 1) await service.imagine(user('a'), params(`job ${index}`), recordingListener());
    const error = (await service.imagine(user('a'), params('too many'), recordingListener()).catch((caught: unknown) => caught)) as LimitError;
    expect(error.code).toBe(ErrorCode.TooManyQueued);
    expect(error.message).toMatch(/^You already have 2 jobs waiting \(the limit is 2\)\. You can start another job in \d+ s, when the first of them starts\.$/);
    expect(error.retryAfterMs).toBeGreaterThan(0);
    expect((await service.info(user('a'))).queued).toHaveLength(2);
    // The refusal cost no token: the user still has the burst minus the three admitted jobs.
    expect((await service.info(user('a'))).limits.tokensLeft).toBe(7);
  });

  test('with no queueing allowed, a second job while one runs is refused as too many running', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, config: testConfig({ maxQueuedPerUser: 0 }), defaultDurationsMs: { imagine: 12_000 } });
    await service.imagine(user('a'), params('first'), recordingListener());
    const error = (await service.imagine(user('a'), params('second'), recordingListener()).catch((caught: unknown) => caught)) as LimitError;
    expect(error.code).toBe(ErrorCode.TooManyRunning);
    expect(error.message).toMatch(/^You already have a job running \(the limit is 1\)\. You can start another job in 1[12] s, when it finishes\.$/);
    expect((await service.info(user('a'))).queueLength).toBe(0);
  });
});

describe('cancel, timeout and failures', () => {
  test('the owner cancels a queued job: it never runs and the listener hears why', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine });
    const first = recordingListener();
    const second = recordingListener();
    await service.imagine(user('a'), params('running'), first);
    const ticket = await service.imagine(user('b'), params('queued'), second);
    const cancelled = await service.cancel(user('b'), ticket.job.id);
    expect(cancelled.status).toBe('cancelled');
    const event = await second.settled;
    expect(event).toMatchObject({ type: 'failed', error: { code: ErrorCode.Cancelled, message: 'The job was cancelled.' } });
    engine.releaseAll();
    await first.settled;
    expect(engine.calls.map((call) => call.prompt)).toEqual(['running']);
    expect((await service.getJob(ticket.job.id))?.status).toBe('cancelled');
  });

  test('cancelling a running job aborts the engine call', async () => {
    const engine = new FakeEngine({ stepDelayMs: 5, steps: 1000 });
    const { service } = await makeService({ engine });
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('long'), listener);
    await until(() => listener.events.some((event) => event.type === 'progress'), 'progress');
    await service.cancel(user('a'), ticket.job.id);
    expect(await listener.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Cancelled } });
    await until(() => engine.calls[0]!.aborted === true, 'the engine to stop');
  });

  test('only the owner or an admin may cancel', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, config: testConfig({ admins: ['test:boss'] }) });
    const tickets = await Promise.all(['one', 'two', 'three'].map((prompt, index) => service.imagine(user(`owner${index}`), params(prompt), recordingListener())));
    const refusal = await service.cancel(user('stranger'), tickets[0]!.job.id).catch((caught: unknown) => caught);
    expect(refusal).toBeInstanceOf(JobError);
    expect(refusal).toMatchObject({ code: ErrorCode.NotPermitted, message: 'Only the person who started this job, or an admin, can cancel it.' });
    await expect(service.cancel(user('moderator', { isAdmin: true }), tickets[1]!.job.id)).resolves.toMatchObject({ status: 'cancelled' });
    await expect(service.cancel(user('boss'), tickets[2]!.job.id)).resolves.toMatchObject({ status: 'cancelled' });
    await expect(service.cancel(user('a'), 'no-such-job')).rejects.toMatchObject({ code: ErrorCode.JobNotFound });
  });

  test('a finished job cannot be cancelled', async () => {
    const { service } = await makeService();
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('done'), listener);
    await listener.settled;
    await until(() => service.metrics.running === 0, 'the slot to free');
    await expect(service.cancel(user('a'), ticket.job.id)).rejects.toThrow('That job has already finished; there is nothing to cancel.');
  });

  test('a job that runs too long times out, even when the engine ignores the abort', async () => {
    const engine = new FakeEngine({ hold: true, ignoreAbort: true });
    const { service } = await makeService({ engine, config: testConfig({ jobTimeoutSeconds: 1 }) });
    const listener = recordingListener();
    await service.imagine(user('a'), params('slow'), listener);
    const event = await listener.settled;
    expect(event).toMatchObject({ type: 'failed', error: { code: ErrorCode.TimedOut } });
    expect(event.type === 'failed' && event.error.message).toBe('The job took longer than 1 s and was stopped. Try again, perhaps with fewer steps.');
    engine.releaseAll();
  });

  test('an engine failure reaches the listener and the queue carries on', async () => {
    const engine = new FakeEngine({ failPrompts: ['explode'] });
    const { service } = await makeService({ engine });
    const bad = recordingListener();
    const good = recordingListener();
    await service.imagine(user('a'), params('please explode'), bad);
    await service.imagine(user('b'), params('fine'), good);
    expect(await bad.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Engine } });
    expect((await good.settled).type).toBe('completed');
    expect(service.metrics.snapshot().failures).toEqual({ engine_failed: 1 });
  });

  test('a job whose engine worker died is tried once more, and the listener is told', async () => {
    const engine = new FakeEngine({ crashCalls: [0, 2, 3] });
    const { service } = await makeService({ engine });
    const retried = recordingListener();
    const retryEvents: number[] = [];
    retried.retrying = ({ attempt }) => void retryEvents.push(attempt);
    const ticket = await service.imagine(user('a'), params('crash once'), retried);
    expect((await retried.settled).type).toBe('completed');
    expect(retryEvents).toEqual([1]);
    expect((await service.getJob(ticket.job.id))?.attempts).toBe(1);
    // A second crash of the same job is a failure, not an endless loop.
    const twice = recordingListener();
    await service.imagine(user('b'), params('crash twice'), twice);
    expect(await twice.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Engine } });
    expect(engine.calls).toHaveLength(4);
  });

  test('a listener that fails to deliver the result is told through failed', async () => {
    const { service } = await makeService();
    const listener = recordingListener({ completed: () => Promise.reject(new Error('upload refused')) });
    await service.imagine(user('a'), params('x'), listener);
    expect(await listener.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.Upload } });
  });
});

describe('upload limit', () => {
  test('a grid larger than the platform allows is re-encoded or scaled to fit', async () => {
    const { service } = await makeService({ engine: new FakeEngine({ noise: 60, baseSize: 128 }) });
    const unlimited = recordingListener();
    await service.imagine(user('a'), params('noisy', { seed: 3 }), unlimited);
    const full = await unlimited.settled;
    if (full.type !== 'completed') throw new Error('expected a grid');
    expect(full.output.file.contentType).toBe('image/png');
    const limit = Math.floor(full.output.file.data.length / 5);

    const limited = recordingListener();
    await service.imagine(user('b'), params('noisy', { seed: 3 }), limited, { uploadLimitBytes: limit });
    const fitted = await limited.settled;
    if (fitted.type !== 'completed') throw new Error('expected a grid');
    expect(fitted.output.file.data.length).toBeLessThanOrEqual(limit);
    expect(fitted.output.file.contentType).not.toBe('image/png');
    expect(fitted.output.file.name.endsWith(fitted.output.file.contentType === 'image/webp' ? '.webp' : '.jpg')).toBe(true);
    const decoded = await decodeImage(fitted.output.file.data);
    expectClose(meanColour(decoded), meanColour(await decodeImage(full.output.file.data)), 10);
    // The stored images stay lossless PNG for later buttons.
    expect((await service.getJob(fitted.output.job.id))?.images?.[0]?.png.length).toBeGreaterThan(0);
  });
});

describe('output format', () => {
  test('GRID_FORMAT=webp writes grids and upscales as WebP, while stored images stay PNG', async () => {
    const { service } = await makeService({ config: testConfig({ gridFormat: 'webp' }) });
    const grid = recordingListener();
    const ticket = await service.imagine(user('a'), params('webp please', { seed: 12 }), grid);
    const event = await grid.settled;
    if (event.type !== 'completed') throw new Error('expected a grid');
    expect(event.output.file.contentType).toBe('image/webp');
    expect(event.output.file.name.endsWith('.webp')).toBe(true);
    const stored = await service.getJob(ticket.job.id);
    expect(Array.from(stored!.images![0]!.png.slice(1, 4))).toEqual([0x50, 0x4e, 0x47]);
    const upscale = recordingListener();
    await service.upscale(user('a'), ticket.job.id, 1, upscale);
    const single = await upscale.settled;
    if (single.type !== 'completed') throw new Error('expected an upscale');
    expect(single.output.file.contentType).toBe('image/webp');
    expectClose(meanColour(await decodeImage(single.output.file.data)), colourForSeed(deriveSeed(12, 0)), 6);
  });
});

describe('buttons', () => {
  async function finishedJob(service: RunningGenerationService): Promise<JobRecord> {
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('shapes', { seed: 99 }), listener);
    await listener.settled;
    return ticket.job;
  }

  test('upscale makes one larger image with the colour of the chosen image', async () => {
    const { service, engine } = await makeService();
    const job = await finishedJob(service);
    const listener = recordingListener();
    const ticket = await service.upscale(user('b'), job.id, 3, listener);
    expect(ticket.job).toMatchObject({ kind: 'upscale', parent: { jobId: job.id, index: 3 } });
    const event = await listener.settled;
    if (event.type !== 'completed') throw new Error(`expected completed, got ${event.type}`);
    const image = await decodeImage(event.output.file.data);
    const size = engine.capabilities.sizes['1:1']!;
    expect([image.width, image.height]).toEqual([size.width * 2, size.height * 2]);
    expectClose(meanColour(image), colourForSeed(deriveSeed(99, 2)));
    expect(event.output.file.name).toMatch(/-u3-/);
  });

  test('vary and reroll make new seeds; vary passes the chosen image to the engine', async () => {
    let next = 1000;
    const { service, engine } = await makeService({ randomSeed: () => next++ });
    const job = await finishedJob(service);
    const vary = recordingListener();
    await service.vary(user('a'), job.id, 2, 'strong', vary);
    await vary.settled;
    expect(engine.calls[1]).toMatchObject({ method: 'vary', strength: 'strong', sourceSeed: deriveSeed(99, 1), seeds: [0, 1, 2, 3].map((index) => deriveSeed(1000, index)) });
    const reroll = recordingListener();
    const ticket = await service.reroll(user('a'), job.id, reroll);
    await reroll.settled;
    expect(ticket.job.parameters).toMatchObject({ prompt: 'shapes', seed: 1001 });
    expect(engine.calls[2]).toMatchObject({ method: 'generate', prompt: 'shapes', seeds: [0, 1, 2, 3].map((index) => deriveSeed(1001, index)) });
  });

  test('unknown, unfinished and out-of-range requests get clear errors', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine });
    const missing = await service.upscale(user('a'), 'gone', 1, recordingListener()).catch((caught: unknown) => caught);
    expect(missing).toBeInstanceOf(JobError);
    expect(missing).toMatchObject({ code: ErrorCode.JobNotFound });
    expect((missing as Error).message).toMatch(/expired.*Run \/imagine again/);
    const running = await service.imagine(user('a'), params('x'), recordingListener());
    await expect(service.vary(user('a'), running.job.id, 1, 'subtle', recordingListener())).rejects.toMatchObject({ code: ErrorCode.JobNotReady });
    await expect(service.reroll(user('a'), running.job.id, recordingListener())).rejects.toMatchObject({ code: ErrorCode.JobNotReady });
    const range = await service.upscale(user('a'), running.job.id, 5, recordingListener()).catch((caught: unknown) => caught);
    expect(range).toBeInstanceOf(UserError);
    expect((range as Error).message).toBe('Pick an image from 1 to 4.');
    engine.releaseAll();
  });

  test('a job left unfinished by a crashed process is reported as interrupted', async () => {
    const { service } = await makeService();
    const stale: JobRecord = { id: 'stale-job', kind: 'imagine', status: 'running', requester: user('a'), parameters: params('x'), seeds: [1, 2, 3, 4], width: 32, height: 32, engine: 'fake engine', createdAt: 1 };
    await service.store.set(stale);
    await expect(service.upscale(user('a'), 'stale-job', 1, recordingListener())).rejects.toThrow('That job was interrupted by a restart before it finished, so it has no images to use; run /imagine again.');
  });

  test("a button press counts against the presser's limits", async () => {
    const { service } = await makeService({ config: testConfig({ rateLimitBurst: 1 }) });
    const job = await finishedJob(service);
    const listener = recordingListener();
    await service.upscale(user('b'), job.id, 1, listener);
    await listener.settled;
    await expect(service.upscale(user('b'), job.id, 2, recordingListener())).rejects.toMatchObject({ code: ErrorCode.RateLimited });
  });
});

describe('listener pacing', () => {
  test('a slow listener gets the latest position, not a backlog of stale ones', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine, limitsFor: () => ({ maxQueued: 20, burst: 20 }) });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = recordingListener();
    const seen: number[] = [];
    slow.queued = async ({ position }) => {
      seen.push(position);
      await gate;
    };
    await service.imagine(user('first'), params('running'), recordingListener());
    for (let index = 0; index < 3; index += 1) await service.imagine(user(`early-${index}`), params(`early ${index}`), recordingListener());
    await service.imagine(user('slow'), params('watched'), slow);
    await until(() => seen.length === 1, 'the first position');
    // Three jobs ahead finish one by one while the listener is still busy with the first update.
    for (let index = 0; index < 3; index += 1) {
      engine.release();
      await until(() => engine.calls.length === index + 2, 'the next job to start');
    }
    await until(() => service.metrics.queueDepth === 1, 'the queue to shrink');
    release();
    await until(() => seen.length === 2, 'the latest position');
    expect(seen).toEqual([4, 1]);
    engine.releaseAll();
    expect((await slow.settled).type).toBe('completed');
  });
});

describe('info, messages and metrics', () => {
  test('info lists the user’s jobs, limits and the engine', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine });
    await service.imagine(user('a'), params('one'), recordingListener());
    await service.imagine(user('b'), params('two'), recordingListener());
    await service.imagine(user('a'), params('three'), recordingListener());
    const info = await service.info(user('a'));
    expect(info.running.map((job) => job.parameters.prompt)).toEqual(['one']);
    expect(info.queued.map(({ job, position }) => [job.parameters.prompt, position])).toEqual([['three', 2]]);
    expect(info).toMatchObject({ queueLength: 2, slots: 1, engine: 'fake engine', limits: { ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5, tokensLeft: 1 } });
    engine.releaseAll();
  });

  test('attachMessage keeps the platform reference with the job', async () => {
    const { service } = await makeService();
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('x'), listener);
    await listener.settled;
    await service.attachMessage(ticket.job.id, { platform: 'test', channelId: 'c1', messageId: 'm1' });
    expect((await service.store.get(ticket.job.id))?.message).toEqual({ platform: 'test', channelId: 'c1', messageId: 'm1' });
    await expect(service.attachMessage('nope', { platform: 'test' })).rejects.toMatchObject({ code: ErrorCode.JobNotFound });
  });

  test('metrics count jobs, commands and durations in Prometheus text', async () => {
    const { service } = await makeService();
    service.metrics.countCommand('discord', 'imagine');
    service.metrics.countCommand('discord', 'imagine');
    const listener = recordingListener();
    await service.imagine(user('a'), params('x'), listener);
    await listener.settled;
    const text = service.metrics.toPrometheus();
    expect(text).toContain('imagine_commands_total{platform="discord",command="imagine"} 2');
    expect(text).toContain('imagine_jobs_completed_total{kind="imagine"} 1');
    expect(text).toContain('imagine_job_duration_seconds_count{kind="imagine"} 1');
    expect(text).toContain('imagine_job_duration_seconds_bucket{kind="imagine",le="+Inf"} 1');
    expect(text).toContain('imagine_queue_depth 0');
  });
});

describe('store failures', () => {
  class BrokenStore implements JobStore {
    readonly kind = 'broken';
    async get(): Promise<JobRecord | undefined> {
      throw new StoreError('The job store (broken) could not read.');
    }
    async set(): Promise<void> {
      throw new StoreError('The job store (broken) could not write.');
    }
    async delete(): Promise<void> {}
    async close(): Promise<void> {}
  }

  test('a broken store does not stop a job, and a button reports a StoreError', async () => {
    const { service } = await makeService({ store: new BrokenStore() });
    const listener = recordingListener();
    await service.imagine(user('a'), params('x'), listener);
    expect((await listener.settled).type).toBe('completed');
    await expect(service.upscale(user('a'), 'some-old-job', 1, recordingListener())).rejects.toBeInstanceOf(StoreError);
  });
});

describe('shutdown and restart', () => {
  test('shutdown lets the running job finish, fails queued jobs clearly and refuses new work', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine });
    const running = recordingListener();
    const queued = recordingListener();
    await service.imagine(user('a'), params('running'), running);
    const queuedTicket = await service.imagine(user('b'), params('queued'), queued);
    const stopping = service.shutdown(60_000);
    expect(service.ready()).toBe(false);
    expect(await queued.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.ShuttingDown, message: 'The bot is restarting, so your job was not started. Please run the command again in a minute.' } });
    const refusal = await service.imagine(user('c'), params('late'), recordingListener()).catch((caught: unknown) => caught);
    expect(refusal).toBeInstanceOf(ImagineError);
    expect((refusal as ImagineError).code).toBe(ErrorCode.ShuttingDown);
    engine.releaseAll();
    expect((await running.settled).type).toBe('completed');
    await stopping;
    expect(engine.calls.map((call) => call.prompt)).toEqual(['running']);
    await expect(service.store.get(queuedTicket.job.id)).rejects.toBeInstanceOf(StoreError);
  });

  test('a running job that outlasts the grace period is stopped and told so', async () => {
    const engine = new FakeEngine({ hold: true });
    const { service } = await makeService({ engine });
    const running = recordingListener();
    await service.imagine(user('a'), params('stuck'), running);
    await service.shutdown(10);
    expect(await running.settled).toMatchObject({ type: 'failed', error: { code: ErrorCode.ShuttingDown } });
  });

  test('every button of a stored job works after a restart on the same DATA_DIR', async () => {
    const folder = temporaryFolder();
    try {
      const config = testConfig({ storeUrl: undefined, dataDir: folder.dir });
      const first = await createGenerationService({ config, engine: new FakeEngine() });
      const listener = recordingListener();
      const ticket = await first.imagine(user('a'), params('persist me', { seed: 5 }), listener);
      await listener.settled;
      await first.attachMessage(ticket.job.id, { platform: 'test', messageId: 'm9' });
      await first.shutdown();

      const engine = new FakeEngine();
      const second = await createGenerationService({ config, engine });
      services.push(second);
      const stored = await second.getJob(ticket.job.id);
      expect(stored).toMatchObject({ status: 'completed', message: { messageId: 'm9' } });
      expect(stored?.images?.[0]?.artifact?.values).toBeInstanceOf(Float32Array);

      const upscale = recordingListener();
      await second.upscale(user('b'), ticket.job.id, 4, upscale);
      const upscaled = await upscale.settled;
      if (upscaled.type !== 'completed') throw new Error('upscale failed');
      expectClose(meanColour(await decodeImage(upscaled.output.file.data)), colourForSeed(deriveSeed(5, 3)));

      const vary = recordingListener();
      await second.vary(user('b'), ticket.job.id, 1, 'subtle', vary);
      expect((await vary.settled).type).toBe('completed');
      expect(engine.calls[1]).toMatchObject({ method: 'vary', sourceSeed: deriveSeed(5, 0) });

      const reroll = recordingListener();
      await second.reroll(user('b'), ticket.job.id, reroll);
      expect((await reroll.settled).type).toBe('completed');
      expect(engine.calls[2]).toMatchObject({ method: 'generate', prompt: 'persist me' });
    } finally {
      folder.cleanup();
    }
  });

  test('buttons also survive a restart with the Redis store', async () => {
    const net = await import('node:net');
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port: 6379, host: '127.0.0.1' });
      socket.setTimeout(500, () => (socket.destroy(), resolve(false)));
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (!up) {
      console.warn('skipped: Redis is not reachable on 127.0.0.1:6379');
      return;
    }
    const namespace = `imagine-test-service-${Date.now().toString(36)}`;
    const config = testConfig({ storeUrl: 'redis://127.0.0.1:6379' });
    const first = await createGenerationService({ config, engine: new FakeEngine(), store: await createJobStore(config, { namespace }) });
    const listener = recordingListener();
    const ticket = await first.imagine(user('a'), params('redis persisted', { seed: 8 }), listener);
    await listener.settled;
    await first.shutdown();
    const engine = new FakeEngine();
    const second = await createGenerationService({ config, engine, store: await createJobStore(config, { namespace }) });
    services.push(second);
    try {
      const upscale = recordingListener();
      await second.upscale(user('b'), ticket.job.id, 2, upscale);
      const event = await upscale.settled;
      if (event.type !== 'completed') throw new Error('upscale failed');
      expectClose(meanColour(await decodeImage(event.output.file.data)), colourForSeed(deriveSeed(8, 1)));
    } finally {
      await second.store.delete(ticket.job.id);
    }
  });

  test('the default store is a SQLite file under DATA_DIR', async () => {
    const folder = temporaryFolder();
    try {
      const store = await createJobStore(testConfig({ storeUrl: undefined, dataDir: folder.dir }));
      expect(store.kind).toBe('sqlite');
      await store.close();
    } finally {
      folder.cleanup();
    }
  });
});

export type { RecordingListener };

describe('logging', () => {
  test('job logs carry ids and codes but never a token from an error', async () => {
    const { createLogger } = await import('../../src/logger.js');
    const chunks: string[] = [];
    const logger = createLogger({ logLevel: 'info' }, { destination: { write: (chunk: string) => void chunks.push(chunk) } });
    const engine = new FakeEngine();
    const token = 'xoxb-1111111111-secretsecretsecret';
    engine.generate = async () => {
      throw new Error(`upstream refused token ${token}`);
    };
    const { service } = await makeService({ engine, logger });
    const listener = recordingListener();
    const ticket = await service.imagine(user('a'), params('x'), listener);
    const event = await listener.settled;
    expect(event).toMatchObject({ type: 'failed', error: { code: ErrorCode.Internal } });
    const text = chunks.join('');
    expect(text).toContain(ticket.job.id);
    expect(text).toContain('"msg":"job failed"');
    expect(text).not.toContain(token);
    expect(JSON.stringify(event)).not.toContain(token);
  });
});
