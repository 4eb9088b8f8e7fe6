/**
 * The playground over HTTP: the page, commands and buttons through the real service and the
 * FakeEngine, live events over SSE, images, errors, and /healthz and /metrics on the same server.
 */
import sharp from 'sharp';
import type { PlaygroundReply } from '../../../adapters/playground/routes.js';
import { createPlaygroundRoutes } from '../../../adapters/playground/routes.js';
import type { JobView } from '../../../adapters/playground/job-view.js';
import { createHttpServer } from '../../../src/http/server.js';
import { defaultGutter, gridLayout } from '../../../src/image/grid.js';
import { colourForSeed } from '../../fakes/fake-engine.js';
import { clientId, EventStream, postJson, startHarness, type PlaygroundHarness } from './harness.js';

async function command(harness: PlaygroundHarness, client: string, text: string): Promise<PlaygroundReply> {
  const response = await postJson(`${harness.url}/api/command`, { text, client });
  expect(response.status).toBe(200);
  return (await response.json()) as PlaygroundReply;
}

async function button(harness: PlaygroundHarness, client: string, customId: string): Promise<PlaygroundReply> {
  const response = await postJson(`${harness.url}/api/button`, { customId, client });
  expect(response.status).toBe(200);
  return (await response.json()) as PlaygroundReply;
}

async function view(harness: PlaygroundHarness, jobId: string): Promise<JobView> {
  const response = await fetch(`${harness.url}/jobs/${jobId}`);
  expect(response.status).toBe(200);
  return (await response.json()) as JobView;
}

function jobOf(reply: PlaygroundReply): JobView {
  if (reply.kind !== 'job') throw new Error(`Expected a job, got the message ${JSON.stringify(reply.text)}`);
  return reply.job;
}

async function imageOf(harness: PlaygroundHarness, url: string): Promise<{ width: number; height: number; data: Buffer; contentType: string | null }> {
  const response = await fetch(`${harness.url}${url}`);
  expect(response.status).toBe(200);
  const bytes = Buffer.from(await response.arrayBuffer());
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data, contentType: response.headers.get('content-type') };
}

function pixel(image: { width: number; data: Buffer }, x: number, y: number): [number, number, number] {
  const offset = (y * image.width + x) * 3;
  return [image.data[offset]!, image.data[offset + 1]!, image.data[offset + 2]!];
}

function expectColourNear(actual: [number, number, number], expected: [number, number, number]): void {
  for (let channel = 0; channel < 3; channel += 1) expect(Math.abs(actual[channel]! - expected[channel]!)).toBeLessThanOrEqual(3);
}

describe('playground routes', () => {
  let harness: PlaygroundHarness;
  let client: string;
  let events: EventStream;

  beforeAll(async () => {
    harness = await startHarness({ engine: { failPrompts: ['explode'] } });
    client = clientId();
    events = await EventStream.open(harness.url, client);
  });
  afterAll(async () => {
    await events.close();
    await harness.close();
  });

  test('serves the page with a labelled prompt box, its script and style, and a content security policy', async () => {
    const page = await fetch(`${harness.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toMatch(/<label for="prompt">/);
    expect(html).toMatch(/<input id="prompt"/);
    expect(html).toContain('src="/app.js"');
    const script = await fetch(`${harness.url}/app.js`);
    expect(script.headers.get('content-type')).toContain('text/javascript');
    expect(await script.text()).toContain('EventSource');
    expect((await fetch(`${harness.url}/style.css`)).headers.get('content-type')).toContain('text/css');
  });

  test('the event stream is server-sent events and needs a client id', async () => {
    expect(events.status).toBe(200);
    expect(events.contentType).toContain('text/event-stream');
    expect((await fetch(`${harness.url}/events`)).status).toBe(400);
    expect((await fetch(`${harness.url}/events?client=bad id!`)).status).toBe(400);
  });

  test('/imagine with flags queues a job, streams its progress and ends with a grid of the four seeds', async () => {
    const job = jobOf(await command(harness, client, '/imagine a red circle --ar 3:2 --seed 7'));
    expect(job).toMatchObject({ prompt: 'a red circle', aspectRatio: '3:2', seed: 7, kind: 'imagine' });
    expect(['queued', 'running']).toContain(job.status);
    const completed = await events.next((event) => event.type === 'completed' && event.jobId === job.id);
    const types = events.forJob(job.id).map((event) => event.type);
    expect(types).toContain('progress');
    expect(types.at(-1)).toBe('completed');
    const fractions = events.forJob(job.id).flatMap((event) => (event.type === 'progress' ? [event.fraction] : []));
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    if (completed.type !== 'completed') throw new Error('unreachable');
    expect(completed.imageUrl).toBe(`/jobs/${job.id}/image`);
    expect(completed.text).toContain('a red circle');

    const grid = await imageOf(harness, completed.imageUrl);
    expect(grid.contentType).toBe('image/png');
    expect(grid.width).toBeGreaterThan(grid.height);
    expect({ width: grid.width, height: grid.height }).toEqual({ width: completed.width, height: completed.height });
    const record = (await harness.service.getJob(job.id))!;
    const cell = record.images![0]!;
    const layout = gridLayout(cell.width, cell.height, defaultGutter(cell.width, cell.height));
    layout.cells.forEach((place, index) => {
      expectColourNear(pixel(grid, place.left + Math.floor(cell.width / 2), place.top + Math.floor(cell.height / 2)), colourForSeed(record.seeds[index]!));
    });

    const done = await view(harness, job.id);
    expect(done.status).toBe('completed');
    expect(done.alt).toContain('a red circle');
    expect(done.imageUrl).toBe(completed.imageUrl);
    expect({ width: done.imageWidth, height: done.imageHeight }).toEqual({ width: grid.width, height: grid.height });
    expect(done.buttons.map((row) => row.map((spec) => spec.label))).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
    expect(done.buttons[0]![0]!.description).toBe('upscale image 1');

    const second = await imageOf(harness, `/jobs/${job.id}/images/2`);
    expectColourNear(pixel(second, 1, 1), colourForSeed(record.seeds[1]!));
    expect((await fetch(`${harness.url}/jobs/${job.id}/images/5`)).status).toBe(404);
  });

  test('a prompt without /imagine is an imagine prompt, and U1, V1 and 🔄 start new jobs from it', async () => {
    const parent = jobOf(await command(harness, client, 'a blue square --seed 11'));
    await events.next((event) => event.type === 'completed' && event.jobId === parent.id);
    const buttons = (await view(harness, parent.id)).buttons;
    const u1 = buttons[0]![0]!;
    const v1 = buttons[1]![0]!;
    const reroll = buttons[2]![0]!;

    const upscale = jobOf(await button(harness, client, u1.customId));
    expect(upscale).toMatchObject({ kind: 'upscale', parent: { jobId: parent.id, index: 1 }, prompt: 'a blue square' });
    const upscaled = await events.next((event) => event.type === 'completed' && event.jobId === upscale.id);
    if (upscaled.type !== 'completed') throw new Error('unreachable');
    const big = await imageOf(harness, upscaled.imageUrl);
    const parentRecord = (await harness.service.getJob(parent.id))!;
    expect(big.width).toBe(parentRecord.images![0]!.width * harness.engine.capabilities.upscaleFactor);
    const upscaleView = await view(harness, upscale.id);
    expect(upscaleView.alt).toMatch(/^Upscaled image 1 .*a blue square/);
    expect(upscaleView.buttons.flat().map((spec) => spec.label)).toEqual(['Vary (Subtle)', 'Vary (Strong)', '🔄']);

    const variation = jobOf(await button(harness, client, v1.customId));
    expect(variation).toMatchObject({ kind: 'variation', parent: { jobId: parent.id, index: 1 } });
    await events.next((event) => event.type === 'completed' && event.jobId === variation.id);
    expect(harness.engine.calls.some((call) => call.method === 'vary' && call.sourceSeed === parentRecord.seeds[0])).toBe(true);

    const again = jobOf(await button(harness, client, reroll.customId));
    expect(again.kind).toBe('reroll');
    await events.next((event) => event.type === 'completed' && event.jobId === again.id);
  });

  test('/help and /info answer with messages, in plain text', async () => {
    const help = await command(harness, client, '/help');
    expect(help.kind).toBe('message');
    expect(help.text).toContain('--ar');
    expect(help.text).not.toContain('**');
    const info = await command(harness, client, '/info');
    expect(info.kind).toBe('message');
    expect(info.text.length).toBeGreaterThan(0);
  });

  test('bad input gets a clear message and queues nothing', async () => {
    const before = harness.engine.calls.length;
    const unknownFlag = await command(harness, client, '/imagine a cat --zoom 2');
    expect(unknownFlag).toMatchObject({ kind: 'message', ephemeral: true });
    expect(unknownFlag.text).toMatch(/zoom/);
    const empty = await command(harness, client, '   ');
    expect(empty.kind).toBe('message');
    expect(empty.text).toMatch(/prompt/i);
    const unknownCommand = await command(harness, client, '/dance');
    expect(unknownCommand.text).toContain('/help');
    const forged = await button(harness, client, 'im1:u:nope:9');
    expect(forged.kind).toBe('message');
    expect(harness.engine.calls.length).toBe(before);
  });

  test('an engine failure reaches the page as a failed event and the job offers a re-roll', async () => {
    const job = jobOf(await command(harness, client, 'please explode'));
    const failed = await events.next((event) => event.type === 'failed' && event.jobId === job.id);
    expect(failed.text).toMatch(/went wrong/);
    expect(failed.text).not.toMatch(/stack|Error:/);
    const record = await view(harness, job.id);
    expect(record.status).toBe('failed');
    expect(record.error).toBe(failed.text);
    expect(record.buttons.flat().map((spec) => spec.label)).toEqual(['🔄']);
    expect((await fetch(`${harness.url}/jobs/${job.id}/image`)).status).toBe(409);
  });

  test('/cancel stops a job, which ends with a cancellation event', async () => {
    harness.engine.configure({ hold: true });
    try {
      const job = jobOf(await command(harness, client, 'a held hexagon'));
      const reply = await command(harness, client, `/cancel ${job.id}`);
      expect(reply.kind).toBe('message');
      expect(reply.text).toContain(job.id);
      const failed = await events.next((event) => event.type === 'failed' && event.jobId === job.id);
      expect(failed.text).toMatch(/^🛑/);
      const record = await view(harness, job.id);
      expect(record.status).toBe('cancelled');
      expect(record.buttons.flat().map((spec) => spec.label)).toEqual(['🔄']);
    } finally {
      harness.engine.releaseAll();
    }
  });

  test('events go only to the page that started the job', async () => {
    const otherClient = clientId();
    const other = await EventStream.open(harness.url, otherClient);
    try {
      const job = jobOf(await command(harness, otherClient, 'a green triangle'));
      await other.next((event) => event.type === 'completed' && event.jobId === job.id);
      expect(events.forJob(job.id)).toEqual([]);
    } finally {
      await other.close();
    }
  });

  test('jobs of other platforms are not shown', async () => {
    const listener = { completed: () => undefined, failed: () => undefined };
    const ticket = await harness.service.imagine({ platform: 'discord', userId: '42' }, { prompt: 'secret', aspectRatio: '1:1', seed: 1, chaos: 0 }, listener);
    expect((await fetch(`${harness.url}/jobs/${ticket.job.id}`)).status).toBe(404);
    expect((await fetch(`${harness.url}/jobs/${ticket.job.id}/image`)).status).toBe(404);
    expect((await fetch(`${harness.url}/jobs/unknown-job`)).status).toBe(404);
  });

  test('refuses cross-site and non-JSON posts and posts without a client id', async () => {
    const crossSite = await postJson(`${harness.url}/api/command`, { text: 'a cat', client }, { origin: 'https://evil.example' });
    expect(crossSite.status).toBe(403);
    const form = await fetch(`${harness.url}/api/command`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'text=a+cat' });
    expect(form.status).toBe(415);
    expect((await postJson(`${harness.url}/api/command`, { text: 'a cat' })).status).toBe(400);
    expect((await postJson(`${harness.url}/api/command`, [1, 2])).status).toBe(400);
    expect((await fetch(`${harness.url}/api/command`)).status).toBe(405);
    const sameSite = await postJson(`${harness.url}/api/command`, { text: '/help', client }, { origin: harness.url });
    expect(sameSite.status).toBe(200);
  });

  test('/metrics on the same server counts playground commands and reports the queue', async () => {
    const text = await (await fetch(`${harness.url}/metrics`)).text();
    expect(text).toMatch(/^imagine_commands_total\{platform="playground",command="imagine"\} [1-9]\d*$/m);
    expect(text).toMatch(/^imagine_commands_total\{platform="playground",command="button:upscale"\} [1-9]\d*$/m);
    expect(text).toMatch(/^imagine_queue_depth \d+$/m);
    expect(text).toMatch(/^imagine_job_duration_seconds_count\{kind="imagine"\} [1-9]\d*$/m);
    expect(text).toMatch(/^imagine_job_failures_total\{code="engine_failed"\} 1$/m);
    expect(text).toMatch(/^imagine_ready 1$/m);
    // Every sample line is `name{labels} value` under a declared family.
    const families = new Set([...text.matchAll(/^# TYPE (\S+) (counter|gauge|histogram)$/gm)].map((match) => match[1]));
    for (const line of text.split('\n').filter((item) => item && !item.startsWith('#'))) {
      const name = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? -?[\d.e+]+$/.exec(line)?.[1];
      expect(name).toBeDefined();
      expect(families.has(name!) || families.has(name!.replace(/_(bucket|sum|count)$/, ''))).toBe(true);
    }
    expect((await fetch(`${harness.url}/healthz`)).status).toBe(200);
  });
});

describe('playground lifecycle', () => {
  test('without the page, the same server still answers /healthz and /metrics; /healthz turns 503 on shutdown', async () => {
    const harness = await startHarness({ servePage: false });
    try {
      expect((await fetch(`${harness.url}/`)).status).toBe(404);
      expect((await postJson(`${harness.url}/api/command`, { text: 'a cat', client: clientId() })).status).toBe(404);
      expect((await fetch(`${harness.url}/healthz`)).status).toBe(200);
      expect(await (await fetch(`${harness.url}/metrics`)).text()).toContain('imagine_queue_depth');
      await harness.service.shutdown(0);
      const health = await fetch(`${harness.url}/healthz`);
      expect(health.status).toBe(503);
      expect(await health.json()).toEqual({ status: 'starting', checks: { service: false } });
    } finally {
      await harness.close();
    }
  });

  test('mounted on an existing server, and images rebuilt from the job store when not cached', async () => {
    const harness = await startHarness({ servePage: false });
    const server = await createHttpServer({ host: '127.0.0.1', port: 0 });
    const routes = await createPlaygroundRoutes({ service: harness.service, cacheSize: 0 });
    server.use(routes.handler);
    const client = clientId();
    const events = await EventStream.open(server.url, client);
    try {
      const response = await postJson(`${server.url}/api/command`, { text: 'a yellow star --seed 5', client });
      const job = jobOf((await response.json()) as PlaygroundReply);
      await events.next((event) => event.type === 'completed' && event.jobId === job.id);
      const record = (await harness.service.getJob(job.id))!;
      const image = await fetch(`${server.url}/jobs/${job.id}/image`);
      expect(image.status).toBe(200);
      const { data, info } = await sharp(Buffer.from(await image.arrayBuffer())).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const cell = record.images![0]!;
      const layout = gridLayout(cell.width, cell.height, defaultGutter(cell.width, cell.height));
      expect({ width: info.width, height: info.height }).toEqual({ width: layout.width, height: layout.height });
      const place = layout.cells[3]!;
      expectColourNear(pixel({ width: info.width, data }, place.left + 2, place.top + 2), colourForSeed(record.seeds[3]!));
    } finally {
      await events.close();
      routes.close();
      await server.close();
      await harness.close();
    }
  });
});
