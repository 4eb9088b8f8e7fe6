/**
 * The Slack adapter end to end: real Bolt, real generation service on a FakeEngine, the fake
 * Slack at the network edge, in HTTP mode and in Socket Mode.
 */
import { decodeButton } from '../../../commands/custom-id.js';
import { defaultGutter, gridLayout } from '../../../src/image/grid.js';
import { colourForSeed, meanColour } from '../../fakes/fake-engine.js';
import { actionIdOf, buttonRows, channelId, decodeUpload, SlackHarness } from './harness.js';

const pngSignature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function expectClose(actual: number[], expected: number[], tolerance = 3): void {
  actual.forEach((value, index) => expect(Math.abs(value - expected[index]!)).toBeLessThanOrEqual(tolerance));
}

describe.each(['http', 'socket'] as const)('Slack adapter (%s mode)', (mode) => {
  let harness: SlackHarness;

  beforeEach(async () => {
    harness = await SlackHarness.start({ mode });
  });

  afterEach(async () => {
    await harness.close();
  });

  test('/imagine: ephemeral "queued" first, a status message, the grid PNG uploaded, then nine valid buttons', async () => {
    const delivered = await harness.command('a red fox in the snow --seed 42 --ar 1:1');
    expect(delivered.acknowledged).toBe(true);
    const buttons = await harness.buttonMessage(1);
    const file = await harness.upload(1);

    const { fake } = harness;
    const order = fake.calls.map((call) => call.method);
    expect(order.indexOf('chat.postEphemeral')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('chat.postEphemeral')).toBeLessThan(order.indexOf('chat.postMessage'));
    expect(order.indexOf('files.completeUploadExternal')).toBeLessThan(order.lastIndexOf('chat.postMessage'));
    expect(fake.ephemerals[0]).toMatchObject({ user: 'U0ALICE', channel: channelId });
    expect(fake.ephemerals[0]!.text).toMatch(/Queued|Starting/);

    // Nine buttons in three rows, each id versioned, naming the job, the same in action_id and value.
    const rows = buttonRows(buttons);
    expect(rows.map((row) => row.map((button) => button.label))).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
    const ids = rows.flat().map((button) => button.actionId);
    expect(new Set(ids).size).toBe(9);
    for (const button of rows.flat()) {
      expect(button.value).toBe(button.actionId);
      expect(button.actionId.length).toBeLessThanOrEqual(255);
    }
    const jobId = decodeButton(ids[0]!).jobId;
    expect(ids.every((id) => decodeButton(id).jobId === jobId)).toBe(true);

    // The status message was posted once, edited as the job went, and ends done (after the job
    // record learnt where its buttons are).
    const status = fake.messages.find((message) => message.text.includes('a red fox') && message.fileIds.length === 0 && !message.blocks);
    expect(status).toBeDefined();
    await fake.waitFor(() => status!.text.includes('Done'), 5_000, 'the status to say done');
    expect(status!.updates).toBeGreaterThanOrEqual(1);

    const job = await harness.service.getJob(jobId);
    expect(job).toMatchObject({ status: 'completed', kind: 'imagine', requester: { platform: 'slack', userId: 'U0ALICE', channelId, guildId: 'T0FAKE' } });
    expect(job!.parameters).toMatchObject({ prompt: 'a red fox in the snow', seed: 42, aspectRatio: '1:1' });
    expect(job!.message).toMatchObject({ platform: 'slack', channelId, messageId: buttons.ts });

    // The uploaded PNG is the 2×2 grid of the job's images, each the colour of its seed.
    expect(file.bytes!.subarray(0, 8).equals(pngSignature)).toBe(true);
    expect(file).toMatchObject({ channelId, completed: true });
    expect(file.initialComment).toContain('a red fox in the snow');
    const image = await decodeUpload(file.bytes!);
    const layout = gridLayout(job!.width, job!.height, defaultGutter(job!.width, job!.height));
    expect([image.width, image.height]).toEqual([layout.width, layout.height]);
    layout.cells.forEach((cell, index) => {
      const inner = { left: cell.left + 2, top: cell.top + 2, width: job!.width - 4, height: job!.height - 4 };
      expectClose(meanColour(image, inner), colourForSeed(job!.seeds[index]!));
    });
  });

  test('U1 by another user upscales image 1 for them; V2 makes variations of image 2; 🔄 re-rolls', async () => {
    await harness.command('a lighthouse --seed 7');
    const grid = await harness.buttonMessage(1);
    const parentId = decodeButton(actionIdOf(grid, 'U1')).jobId;
    const parent = (await harness.service.getJob(parentId))!;

    expect((await harness.press(grid, actionIdOf(grid, 'U1'), 'U0BOB')).acknowledged).toBe(true);
    const upscaledButtons = await harness.buttonMessage(2);
    const upscaledFile = await harness.upload(2);
    const upscaleId = decodeButton(buttonRows(upscaledButtons)[0]![0]!.actionId).jobId;
    const upscale = (await harness.service.getJob(upscaleId))!;
    expect(upscale).toMatchObject({ kind: 'upscale', status: 'completed', parent: { jobId: parentId, index: 1 }, requester: { userId: 'U0BOB' } });
    expect(buttonRows(upscaledButtons).map((row) => row.map((button) => button.label))).toEqual([['Vary (Subtle)', 'Vary (Strong)', '🔄']]);
    const upscaledImage = await decodeUpload(upscaledFile.bytes!);
    expect([upscaledImage.width, upscaledImage.height]).toEqual([parent.width * 2, parent.height * 2]);
    expectClose(meanColour(upscaledImage), colourForSeed(parent.seeds[0]!));
    expect(harness.fake.ephemerals.some((message) => message.user === 'U0BOB' && /Queued|Starting/.test(message.text))).toBe(true);

    await harness.press(grid, actionIdOf(grid, 'V2'));
    const variationButtons = await harness.buttonMessage(3);
    const variation = (await harness.service.getJob(decodeButton(buttonRows(variationButtons)[0]![0]!.actionId).jobId))!;
    expect(variation).toMatchObject({ kind: 'variation', status: 'completed', parent: { jobId: parentId, index: 2 } });
    expect(buttonRows(variationButtons).flat()).toHaveLength(9);
    expect(harness.engine.calls.find((call) => call.method === 'vary')).toMatchObject({ sourceSeed: parent.seeds[1] });

    await harness.press(grid, actionIdOf(grid, '🔄'));
    const rerollButtons = await harness.buttonMessage(4);
    const reroll = (await harness.service.getJob(decodeButton(buttonRows(rerollButtons)[0]![0]!.actionId).jobId))!;
    expect(reroll).toMatchObject({ kind: 'reroll', status: 'completed', parameters: { prompt: 'a lighthouse' } });
    expect(reroll.seeds).not.toEqual(parent.seeds);
    expect(harness.fake.files.size).toBe(4);
  });

  test('a forged or unknown button gets an ephemeral error and no work', async () => {
    await harness.command('a teapot --seed 3');
    const grid = await harness.buttonMessage(1);
    await harness.upload(1);
    const engineCalls = harness.engine.calls.length;
    const before = harness.fake.ephemerals.length;

    await harness.press(grid, 'im1:u:not-a-real-job:1', 'U0MALLORY');
    await harness.press(grid, 'im9:x:whatever', 'U0MALLORY');
    await harness.press(grid, actionIdOf(grid, 'U1'), 'U0MALLORY', { value: 'im1:u:someone-else:1' });
    await harness.press(grid, 'im1:u:abc:7', 'U0MALLORY');

    await harness.fake.waitFor(() => harness.fake.ephemerals.length >= before + 4, 10_000, 'four refusals');
    const refusals = harness.fake.ephemerals.slice(before);
    expect(refusals.every((message) => message.user === 'U0MALLORY')).toBe(true);
    expect(refusals.map((message) => message.text).join('\n')).toMatch(/not valid|no longer|not found|expired|doesn't exist|could not find/i);
    expect(harness.engine.calls.length).toBe(engineCalls);
    expect(harness.fake.buttonMessages()).toHaveLength(1);
  });

  test('a user over their limit gets an ephemeral refusal and nothing is queued', async () => {
    await harness.close();
    harness = await SlackHarness.start({ mode, config: { rateLimitBurst: 1, rateLimitPerMinute: 1 }, engine: { hold: true } });
    await harness.command('first picture');
    await harness.engine.waitForCalls(1);
    await harness.command('second picture');
    const refusal = await harness.fake.waitFor(() => harness.fake.ephemerals.find((message) => !/Queued|Starting/.test(message.text)), 10_000, 'a refusal');
    expect(refusal.user).toBe('U0ALICE');
    expect(refusal.text).toMatch(/\d+ s|minute|limit|too many|wait/i);
    const info = await harness.service.info({ platform: 'slack', userId: 'U0ALICE' });
    expect(info.queued).toHaveLength(0);
    expect(info.running).toHaveLength(1);
    harness.engine.releaseAll();
    await harness.buttonMessage(1);
    expect(harness.engine.calls.map((call) => call.prompt)).toEqual(['first picture']);
  });

  test('/imagine help and /imagine info answer ephemerally', async () => {
    await harness.command('help');
    const help = await harness.ephemeral(1);
    expect(help.text).toContain('/imagine');
    expect(help.text).toContain('--ar');
    await harness.command('info');
    const info = await harness.ephemeral(2);
    expect(info.text).toMatch(/limit|queue/i);
    expect(harness.engine.calls).toHaveLength(0);
    expect(harness.fake.messages).toHaveLength(0);
  });

  test('bad input (an unknown flag) gets a clear ephemeral message and no job', async () => {
    await harness.command('a cat --bogus 3');
    const reply = await harness.ephemeral(1);
    expect(reply.text).toContain('--bogus');
    expect(harness.engine.calls).toHaveLength(0);
  });

  test('buttons keep working after a restart', async () => {
    await harness.command('a windmill --seed 11');
    const grid = await harness.buttonMessage(1);
    await harness.upload(1);
    const parentId = decodeButton(actionIdOf(grid, 'U1')).jobId;
    await harness.restart();
    if (mode === 'socket') await harness.fake.waitForSocket();

    await harness.press(grid, actionIdOf(grid, 'U3'), 'U0CAROL');
    const upscaled = await harness.buttonMessage(2);
    const job = (await harness.service.getJob(decodeButton(buttonRows(upscaled)[0]![0]!.actionId).jobId))!;
    expect(job).toMatchObject({ kind: 'upscale', status: 'completed', parent: { jobId: parentId, index: 3 }, requester: { userId: 'U0CAROL' } });
  });

  test('429 with Retry-After is waited out and the call goes through', async () => {
    harness.fake.inject('files.getUploadURLExternal', { retryAfterSeconds: 1 });
    harness.fake.inject('chat.postEphemeral', { retryAfterSeconds: 1 });
    await harness.command('a rate limited cat');
    await harness.buttonMessage(1);
    const file = await harness.upload(1);
    expect(file.bytes!.subarray(0, 8).equals(pngSignature)).toBe(true);
    expect(harness.fake.callsOf('files.getUploadURLExternal').map((call) => call.outcome)).toEqual(['rate_limited', 'ok']);
    expect(harness.fake.callsOf('chat.postEphemeral').map((call) => call.outcome)).toEqual(['rate_limited', 'ok']);
  });

  test('a failed upload is told to the user with the reason, never dropped', async () => {
    harness.fake.inject('files.completeUploadExternal', { error: 'not_in_channel' });
    await harness.command('an unlucky cat');
    const notice = await harness.fake.waitFor(() => harness.fake.ephemerals.find((message) => /could not be uploaded/.test(message.text)), 15_000, 'the upload failure notice');
    expect(notice.user).toBe('U0ALICE');
    expect(notice.text).toMatch(/invite/i);
    expect(notice.blocks?.some((block) => block.type === 'actions')).toBe(true);
    expect(harness.fake.buttonMessages()).toHaveLength(0);
    const status = harness.fake.messages.find((message) => message.text.includes('an unlucky cat'));
    await harness.fake.waitFor(() => status!.text.includes('could not be uploaded'), 5_000, 'the status to show the failure');
  });

  test('a channel closed to the bot stops the job early and says how to fix it', async () => {
    await harness.close();
    harness = await SlackHarness.start({ mode, engine: { hold: true } });
    harness.fake.inject('chat.postMessage', { error: 'not_in_channel' });
    harness.fake.inject('chat.postEphemeral', { error: 'not_in_channel', times: 5 });
    await harness.command('a cat nobody will see');
    // Ephemeral posts fail too, so the notice arrives on the request's response_url.
    const notice = await harness.fake.waitFor(() => harness.fake.responses.find((response) => /invite/i.test(String(response.body.text))), 15_000, 'the notice');
    expect(notice.body).toMatchObject({ response_type: 'ephemeral' });
    expect(String(notice.body.text)).toContain('not drawn');
    const info = await harness.service.info({ platform: 'slack', userId: 'U0ALICE' });
    expect(info.running).toHaveLength(0);
    expect(harness.fake.files.size).toBe(0);
  });

  test('an upload URL that keeps failing is reported too', async () => {
    harness.fake.inject('upload', { httpStatus: 500, times: 20 });
    await harness.command('another unlucky cat');
    const notice = await harness.fake.waitFor(() => harness.fake.ephemerals.find((message) => /could not be uploaded/.test(message.text)), 15_000, 'the upload failure notice');
    expect(notice.user).toBe('U0ALICE');
    expect([...harness.fake.files.values()].every((file) => !file.completed)).toBe(true);
  });
});

describe('Slack adapter, HTTP mode only', () => {
  let harness: SlackHarness;

  beforeEach(async () => {
    harness = await SlackHarness.start({ mode: 'http', engine: { hold: true } });
  });

  afterEach(async () => {
    await harness.close();
  });

  test.each(['bad', 'missing', 'stale'] as const)('a %s signature gets 401 and nothing is queued', async (signature) => {
    const command = await harness.command('a forged cat', 'U0MALLORY', signature);
    expect(command.status).toBe(401);
    const button = await harness.press({ channel: channelId, ts: '1.1', text: '', blocks: undefined, threadTs: undefined, fileIds: [], updates: 0, history: [], token: undefined }, 'im1:r:abcdef', 'U0MALLORY', { signature });
    expect(button.status).toBe(401);
    const info = await harness.service.info({ platform: 'slack', userId: 'U0MALLORY' });
    expect(info.queueLength).toBe(0);
    expect(info.running).toHaveLength(0);
    expect(harness.engine.calls).toHaveLength(0);
    expect(harness.fake.calls.map((call) => call.method).filter((method) => method !== 'auth.test')).toEqual([]);
  });

  test('the slash command is acknowledged before the work is done', async () => {
    const delivered = await harness.command('a slow cat');
    // The engine is holding the job, so the 200 cannot have waited for it.
    expect(delivered.status).toBe(200);
    await harness.engine.waitForCalls(1);
    expect(harness.fake.files.size).toBe(0);
    harness.engine.releaseAll();
    await harness.buttonMessage(1);
  });

  test('a button pressed in a thread delivers into that thread', async () => {
    harness.engine.releaseAll();
    await harness.command('a thread cat');
    const grid = await harness.buttonMessage(1);
    const inThread = { ...grid, threadTs: '1699999999.000100' };
    await harness.press(inThread, actionIdOf(grid, 'U2'));
    const upscaled = await harness.buttonMessage(2);
    const file = await harness.upload(2);
    expect(upscaled.threadTs).toBe('1699999999.000100');
    expect(file.threadTs).toBe('1699999999.000100');
  });
});

describe('Slack adapter, Socket Mode only', () => {
  let harness: SlackHarness;

  beforeEach(async () => {
    harness = await SlackHarness.start({ mode: 'socket' });
  });

  afterEach(async () => {
    await harness.close();
  });

  test('reconnects when Slack asks it to, and keeps answering', async () => {
    expect(harness.fake.callsOf('apps.connections.open')).toHaveLength(1);
    harness.fake.sendDisconnect();
    await harness.fake.waitFor(() => harness.fake.callsOf('apps.connections.open').length === 2 && harness.fake.socketConnected, 20_000, 'a new connection');
    await harness.command('a reconnected cat');
    await harness.buttonMessage(1);
    expect(harness.fake.acks.length).toBeGreaterThanOrEqual(1);
  });
});
