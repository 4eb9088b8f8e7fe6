/**
 * The fake Slack answers the real @slack/web-api and @slack/socket-mode clients the way Slack
 * does, so that the adapter's tests exercise the real libraries against it.
 */
import { LogLevel, SocketModeReceiver, webApi } from '@slack/bolt';
import { FakeSlack } from '../../fakes/fake-slack/fake-slack.js';

const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 7)]);

// Only @slack/bolt is a dependency; its Web API and Socket Mode clients are reached through it.
const { WebClient, WebClientEvent } = webApi;

describe('FakeSlack', () => {
  let fake: FakeSlack;
  let client: webApi.WebClient;

  beforeEach(async () => {
    fake = await FakeSlack.start();
    client = new WebClient(fake.botToken, { slackApiUrl: fake.apiUrl, logLevel: LogLevel.ERROR, retryConfig: { retries: 3, minTimeout: 10, maxTimeout: 50 } });
  });

  afterEach(async () => {
    await fake.close();
  });

  test('posts, updates and posts ephemeral messages, recording each call', async () => {
    const posted = await client.chat.postMessage({ channel: 'C1', text: 'hello', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: 'hello' } }] });
    await client.chat.update({ channel: 'C1', ts: posted.ts!, text: 'changed' });
    await client.chat.postEphemeral({ channel: 'C1', user: 'U1', text: 'only you' });
    expect(fake.messages).toHaveLength(1);
    expect(fake.messages[0]).toMatchObject({ channel: 'C1', text: 'changed', updates: 1 });
    expect(fake.messages[0]!.blocks?.[0]?.type).toBe('section');
    expect(fake.ephemerals).toEqual([expect.objectContaining({ channel: 'C1', user: 'U1', text: 'only you' })]);
    expect(fake.calls.map((call) => call.method)).toEqual(['chat.postMessage', 'chat.update', 'chat.postEphemeral']);
    expect(fake.calls.every((call) => call.token === fake.botToken)).toBe(true);
  });

  test('files.uploadV2 goes through getUploadURLExternal, the upload URL and completeUploadExternal', async () => {
    await client.filesUploadV2({ channel_id: 'C1', thread_ts: '1.2', file: png, filename: 'grid.png', initial_comment: 'a cat' });
    expect(fake.calls.map((call) => call.method)).toEqual(['files.getUploadURLExternal', 'upload', 'files.completeUploadExternal']);
    const [file] = [...fake.files.values()];
    expect(file).toMatchObject({ filename: 'grid.png', completed: true, channelId: 'C1', threadTs: '1.2', initialComment: 'a cat' });
    expect(file!.bytes!.equals(png)).toBe(true);
    expect(fake.messages.at(-1)).toMatchObject({ channel: 'C1', threadTs: '1.2', fileIds: [file!.id] });
  });

  test('answers 429 with Retry-After, which WebClient waits out and retries', async () => {
    fake.inject('chat.postMessage', { retryAfterSeconds: 1 });
    let rateLimited = 0;
    client.on(WebClientEvent.RATE_LIMITED, () => {
      rateLimited += 1;
    });
    await client.chat.postMessage({ channel: 'C1', text: 'eventually' });
    expect(rateLimited).toBe(1);
    expect(fake.callsOf('chat.postMessage').map((call) => call.outcome)).toEqual(['rate_limited', 'ok']);
    expect(fake.messages).toHaveLength(1);
  });

  test('injected Slack errors and a bad token are refused', async () => {
    fake.inject('chat.postMessage', { error: 'not_in_channel' });
    await expect(client.chat.postMessage({ channel: 'C1', text: 'x' })).rejects.toMatchObject({ data: { error: 'not_in_channel' } });
    const stranger = new WebClient('xoxb-wrong-token-1234', { slackApiUrl: fake.apiUrl, logLevel: LogLevel.ERROR });
    await expect(stranger.chat.postMessage({ channel: 'C1', text: 'x' })).rejects.toMatchObject({ data: { error: 'invalid_auth' } });
    expect(fake.messages).toHaveLength(0);
  });

  test('an upload whose bytes never arrived cannot be completed', async () => {
    fake.inject('upload', { httpStatus: 500, times: 10 });
    await expect(client.filesUploadV2({ channel_id: 'C1', file: png, filename: 'grid.png' })).rejects.toThrow();
    expect([...fake.files.values()].every((file) => !file.completed)).toBe(true);
  });

  test('Socket Mode: apps.connections.open hands out a ws:// URL; hello connects; envelopes are acknowledged', async () => {
    const socket = new SocketModeReceiver({ appToken: fake.appToken, installerOptions: { clientOptions: { slackApiUrl: fake.apiUrl } }, logLevel: LogLevel.ERROR }).client;
    const received: unknown[] = [];
    socket.on('slash_commands', async ({ ack, body }: { ack: (response?: Record<string, unknown>) => Promise<void>; body: unknown }) => {
      received.push(body);
      await ack({ text: 'got it' });
    });
    await socket.start();
    try {
      expect(fake.callsOf('apps.connections.open')).toEqual([expect.objectContaining({ token: fake.appToken, outcome: 'ok' })]);
      const ack = await fake.sendEnvelope('slash_commands', { command: '/imagine', text: 'a cat' });
      expect(ack.payload).toEqual({ text: 'got it' });
      expect(received).toEqual([{ command: '/imagine', text: 'a cat' }]);
    } finally {
      await socket.disconnect();
    }
  });
});
