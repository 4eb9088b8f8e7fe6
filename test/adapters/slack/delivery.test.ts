/**
 * One job's messages on Slack, driven directly: the gate that keeps the "queued" reply first,
 * progress edits at most once per interval (on a manual clock), failure notices, the
 * response_url fallback for ephemeral messages, and a job taken over from a bot process that is
 * gone (slackOrphanDelivery) editing the status message the first one recorded, after the first
 * one said there, as it restarted, that the result still comes.
 */
import { webApi } from '@slack/bolt';
import { decodeButton } from '../../../commands/custom-id.js';
import { handedOverText } from '../../../commands/messages.js';
import { SlackJobDelivery, slackOrphanDelivery, tellUser, type SlackDeliveryContext } from '../../../adapters/slack/delivery.js';
import { ErrorCode, JobError, serializeError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/logger.js';
import type { JobRecord, MessageReference } from '../../../src/service/types.js';
import { FakeSlack } from '../../fakes/fake-slack/fake-slack.js';
import { jobRecord } from '../../commands/job-record.js';

const job: JobRecord = jobRecord({
  id: 'job_abc123',
  status: 'running',
  requester: { platform: 'slack', userId: 'U0ALICE' },
  parameters: { prompt: 'a <b>bold</b> *cat* @here', aspectRatio: '1:1', seed: 5, chaos: 0 },
  seeds: [1, 2, 3, 4],
  width: 32,
  height: 32,
});

describe('SlackJobDelivery', () => {
  let fake: FakeSlack;
  let clock: number;
  let attached: Array<{ jobId: string; message: MessageReference }>;
  let context: SlackDeliveryContext;

  beforeEach(async () => {
    fake = await FakeSlack.start();
    clock = 1_000_000;
    attached = [];
    context = {
      client: new webApi.WebClient(fake.botToken, { slackApiUrl: fake.apiUrl, logLevel: webApi.LogLevel.ERROR, retryConfig: { retries: 2, minTimeout: 10, maxTimeout: 20 } }),
      service: {
        attachMessage: async (jobId, message) => {
          attached.push({ jobId, message });
        },
      },
      logger: silentLogger(),
      progressIntervalMs: 2000,
      now: () => clock,
      isTrustedResponseUrl: (url) => url.startsWith(fake.apiUrl.replace('/api/', '/')),
    };
  });

  afterEach(async () => {
    await fake.close();
  });

  test('holds job events until the reply has been shown', async () => {
    const delivery = new SlackJobDelivery({ channelId: 'C1', userId: 'U0ALICE' }, context);
    const started = delivery.started({ job, etaMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fake.calls).toHaveLength(0);
    delivery.open();
    await started;
    expect(fake.callsOf('chat.postMessage')).toHaveLength(1);
  });

  test('edits the status at most once per interval, always for forced changes', async () => {
    const delivery = new SlackJobDelivery({ channelId: 'C1', userId: 'U0ALICE' }, context);
    delivery.open();
    await delivery.started({ job, etaMs: 5000 });
    for (const fraction of [0.1, 0.2, 0.3, 0.4]) await delivery.progress({ job, fraction, etaMs: 1000 });
    expect(fake.callsOf('chat.update')).toHaveLength(0);
    clock += 1999;
    await delivery.progress({ job, fraction: 0.5, etaMs: 1000 });
    expect(fake.callsOf('chat.update')).toHaveLength(0);
    clock += 1;
    await delivery.progress({ job, fraction: 0.6, etaMs: 1000 });
    expect(fake.callsOf('chat.update')).toHaveLength(1);
    expect(fake.messages[0]!.text).toContain('60%');
    await delivery.retrying({ job, attempt: 1 });
    expect(fake.callsOf('chat.update')).toHaveLength(2);
    // The prompt is shown as text: Slack markup and mentions in it are escaped.
    expect(fake.messages[0]!.text).toContain('&lt;b&gt;');
    expect(fake.messages[0]!.text).not.toMatch(/(^|[^\u200b])@here/);
  });

  test('a failed job: the status says so and the user gets an ephemeral notice with 🔄', async () => {
    const delivery = new SlackJobDelivery({ channelId: 'C1', userId: 'U0ALICE', threadTs: '9.9' }, context);
    delivery.open();
    await delivery.started({ job, etaMs: 5000 });
    const error = serializeError(new JobError(ErrorCode.TimedOut, 'The job took too long and was stopped.', job.id));
    await delivery.failed({ job: { ...job, status: 'failed', error }, error });
    expect(fake.messages[0]!.text).toContain('took too long');
    expect(fake.messages[0]!.threadTs).toBe('9.9');
    const [notice] = fake.ephemerals;
    expect(notice).toMatchObject({ channel: 'C1', user: 'U0ALICE', threadTs: '9.9' });
    expect(notice!.text).toContain('took too long');
    const retry = notice!.blocks!.find((block) => block.type === 'actions')!.elements![0]!;
    expect(decodeButton(retry.action_id!)).toEqual({ kind: 'reroll', jobId: job.id });
  });

  test('ephemeral messages fall back to a trusted response_url, and never to an untrusted one', async () => {
    fake.inject('chat.postEphemeral', { error: 'channel_not_found', times: 2 });
    const trusted = fake.responseUrl();
    expect(await tellUser(context, { channelId: 'C1', userId: 'U1', responseUrl: trusted }, 'hello')).toBe(true);
    expect(fake.responses).toEqual([{ id: trusted.split('/').pop(), body: expect.objectContaining({ response_type: 'ephemeral', text: 'hello' }) }]);
    expect(await tellUser(context, { channelId: 'C1', userId: 'U1', responseUrl: 'http://169.254.169.254/latest' }, 'hello')).toBe(false);
    expect(fake.responses).toHaveLength(1);
  });

  test('a job whose bot process is gone: another bot edits the recorded status message and uploads the result to its thread', async () => {
    const first = new SlackJobDelivery({ channelId: 'C1', userId: 'U0ALICE', threadTs: '9.9' }, context);
    first.open();
    await first.started({ job, etaMs: 5000 });
    const status = fake.messages[0]!;
    expect(attached).toEqual([{ jobId: job.id, message: { platform: 'slack', role: 'status', channelId: 'C1', messageId: status.ts, threadId: '9.9' } }]);

    // The first bot dies; another builds the delivery from the stored record alone.
    const record: JobRecord = { ...job, requester: { ...job.requester, channelId: 'C1' }, message: attached[0]!.message };
    const listener = slackOrphanDelivery(context).listenerFor(record)!;
    await listener.progress?.({ job: record, fraction: 0.5, stage: 'decoder', etaMs: 1000 });
    expect(fake.callsOf('chat.postMessage')).toHaveLength(1);
    expect(status.text).toContain('50%');
    const grid = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
    await listener.completed({ job: { ...record, status: 'completed' }, file: { data: grid, name: 'grid.png', contentType: 'image/png', width: 64, height: 64 } });
    const [file] = [...fake.files.values()];
    expect(file).toMatchObject({ filename: 'grid.png', completed: true, channelId: 'C1', threadTs: '9.9' });
    expect(status.text).toContain('Done');
    expect(fake.buttonMessages()).toHaveLength(1);
    // Web API calls carry the bot token only (the upload itself goes to a pre-signed URL).
    expect(fake.calls.filter((call) => call.method !== 'upload').every((call) => call.token === fake.botToken)).toBe(true);
    expect(attached.at(-1)?.message).toMatchObject({ platform: 'slack', channelId: 'C1', messageId: fake.buttonMessages()[0]!.ts });
  });

  test('a restart of the bot: the status message says the result still comes (posted and recorded if there was none), and nothing follows', async () => {
    const waiting: JobRecord = { ...job, status: 'queued' };
    const first = new SlackJobDelivery({ channelId: 'C1', userId: 'U0ALICE' }, context);
    first.open();
    await first.queued({ job: waiting, position: 2, etaMs: 5000 });
    const status = fake.messages[0]!;
    await first.handedOver({ job: waiting });
    expect(status.text).toContain(handedOverText(false));
    clock += 10_000;
    await first.progress({ job, fraction: 0.5, etaMs: 1000 });
    expect(fake.callsOf('chat.update')).toHaveLength(1);
    expect(status.text).toContain(handedOverText(false));

    const second = new SlackJobDelivery({ channelId: 'C2', userId: 'U0ALICE' }, context);
    second.open();
    await second.handedOver({ job: { ...job, id: 'job_second' } });
    expect(fake.messages.map((message) => message.channel)).toEqual(['C1', 'C2']);
    expect(fake.messages[1]!.text).toContain(handedOverText(true));
    // Recorded, so that the bot that takes the job over goes on editing it.
    expect(attached.at(-1)).toEqual({ jobId: 'job_second', message: expect.objectContaining({ role: 'status', channelId: 'C2', messageId: fake.messages[1]!.ts }) });
    expect(fake.ephemerals).toEqual([]);
  });

  test('a job whose bot process is gone before its status was posted: the status goes to the requester\'s channel; no channel, no delivery', async () => {
    const record: JobRecord = { ...job, requester: { ...job.requester, channelId: 'C2' } };
    const listener = slackOrphanDelivery(context).listenerFor(record)!;
    await listener.progress?.({ job: record, fraction: 0.25, stage: 'decoder', etaMs: 1000 });
    const error = serializeError(new JobError(ErrorCode.TimedOut, 'The job took too long and was stopped.', job.id));
    await listener.failed({ job: { ...record, status: 'failed', error }, error });
    expect(fake.messages.map((message) => [message.channel, message.threadTs])).toEqual([['C2', undefined]]);
    expect(fake.messages[0]!.text).toContain('took too long');
    expect(fake.ephemerals[0]).toMatchObject({ channel: 'C2', user: 'U0ALICE', text: expect.stringContaining('took too long') });
    expect(slackOrphanDelivery(context).listenerFor(job)).toBeUndefined();
  });
});
