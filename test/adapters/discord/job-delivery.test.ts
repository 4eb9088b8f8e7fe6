/**
 * JobDelivery on its own, with time under the test's control: progress edits are throttled to one
 * per interval with the latest text trailing, phases never go backwards, and an old token sends
 * the result to the channel without trying the webhook. A bot restart leaves one last word in the
 * status message. The orphan delivery (a job whose bot
 * process is gone) works with the bot token alone.
 */
import { REST, Routes } from 'discord.js';
import { discordOrphanDelivery, JobDelivery, type DeliveryTimers } from '../../../adapters/discord/job-delivery.js';
import { handedOverText } from '../../../commands/messages.js';
import { silentLogger } from '../../../src/logger.js';
import type { JobOutput, JobRecord, MessageReference } from '../../../src/service/types.js';
import { FakeDiscord } from '../../fakes/fake-discord/fake-discord.js';
import { jobRecord } from '../../commands/job-record.js';

class ManualTimers implements DeliveryTimers {
  time = 1_000_000;
  monotonicTime = 0;
  pending: Array<{ at: number; callback: () => void; handle: number }> = [];
  #next = 0;
  now(): number {
    return this.time;
  }
  monotonic(): number {
    return this.monotonicTime;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const handle = ++this.#next;
    this.pending.push({ at: this.monotonicTime + ms, callback, handle });
    return handle;
  }
  clearTimeout(handle: unknown): void {
    this.pending = this.pending.filter((entry) => entry.handle !== handle);
  }
  /** Moves monotonic time forward and runs the timers that are due. */
  advance(ms: number): void {
    this.monotonicTime += ms;
    const due = this.pending.filter((entry) => entry.at <= this.monotonicTime);
    this.pending = this.pending.filter((entry) => entry.at > this.monotonicTime);
    for (const entry of due) entry.callback();
  }
}

function job(): JobRecord {
  return jobRecord({ id: 'job123', requester: { platform: 'discord', userId: 'u1' }, parameters: { prompt: 'a test', aspectRatio: '1:1', seed: 1, chaos: 0 }, seeds: [1, 2, 3, 4], width: 8, height: 8 });
}

function output(): JobOutput {
  return { job: job(), file: { data: new Uint8Array([1, 2, 3]), name: 'grid.png', contentType: 'image/png', width: 18, height: 18 } };
}

describe('JobDelivery', () => {
  let fake: FakeDiscord;
  let rest: REST;
  let timers: ManualTimers;
  const attached: Array<{ jobId: string; message: MessageReference }> = [];
  const service = { attachMessage: async (jobId: string, message: MessageReference) => void attached.push({ jobId, message }) };

  beforeEach(async () => {
    fake = await FakeDiscord.start();
    rest = new REST({ api: fake.apiUrl, retries: 0 }).setToken(fake.token);
    timers = new ManualTimers();
    attached.length = 0;
  });

  afterEach(async () => {
    await fake.close();
  });

  async function deferred(): Promise<{ token: string; delivery: JobDelivery }> {
    const interaction = fake.slashCommand('imagine', [], { id: 'u1', guildId: '1', channelId: '77' });
    const token = String(interaction.token);
    await rest.post(Routes.interactionCallback(String(interaction.id), token), { body: { type: 5 }, auth: false });
    const delivery = new JobDelivery({
      rest,
      service,
      logger: silentLogger(),
      timers,
      timing: { progressIntervalMs: 1500, tokenLifetimeMs: 14 * 60_000 },
      target: { applicationId: fake.applicationId, interactionToken: token, receivedAt: timers.now(), channelId: '77', userId: 'u1' },
    });
    return { token, delivery };
  }

  const edits = (token: string): string[] => fake.originalResponse(token)!.history.slice(1).map((entry) => entry.content);

  test('throttles progress to one edit per interval, keeps the latest text, and never goes back to "queued"', async () => {
    const { token, delivery } = await deferred();
    delivery.openOriginal('Queued — #2 in line, starting in about 20 s.');
    await fake.waitFor(() => edits(token).length === 1, 'the first edit');

    for (let step = 1; step <= 10; step += 1) void delivery.listener.progress?.({ job: job(), fraction: step / 10, stage: 'decoder', etaMs: 0 });
    void delivery.listener.queued?.({ job: job(), position: 1, etaMs: 0 });
    expect(timers.pending).toHaveLength(1);
    timers.advance(1499);
    expect(edits(token)).toHaveLength(1);
    timers.advance(1);
    await fake.waitFor(() => edits(token).length === 2, 'the throttled edit');
    expect(edits(token)[1]).toMatch(/^Generating… 100%/);

    void delivery.listener.progress?.({ job: job(), fraction: 0.5, stage: 'decoder', etaMs: 0 });
    await delivery.complete(output());
    // The pending edit was dropped: the result is the last word.
    timers.advance(5000);
    expect(edits(token)).toHaveLength(3);
    expect(fake.originalResponse(token)!.attachments[0]?.filename).toBe('grid.png');
    expect(attached).toEqual([{ jobId: 'job123', message: { platform: 'discord', channelId: '77', messageId: fake.originalResponse(token)!.id } }]);
  });

  test('a token older than its lifetime is not used: the result goes to the channel with the bot token', async () => {
    const { token, delivery } = await deferred();
    delivery.openOriginal('Queued');
    await fake.waitFor(() => edits(token).length === 1, 'the first edit');
    timers.time += 14 * 60_000 + 1;
    await delivery.complete(output());
    const webhookCalls = fake.calls.filter((call) => call.route.startsWith('/webhooks'));
    expect(webhookCalls).toHaveLength(1);
    const posted = fake.callsTo('/channels/:channel/messages', 'POST');
    expect(posted).toHaveLength(1);
    expect(posted[0]?.auth).toBe('Bot');
    expect(attached[0]?.message).toMatchObject({ channelId: '77', via: 'channel' });
  });

  test('a failure replaces the public status with an ephemeral note and a 🔄 button', async () => {
    const { token, delivery } = await deferred();
    delivery.openOriginal('Queued');
    await fake.waitFor(() => edits(token).length === 1, 'the first edit');
    const failed = { ...job(), status: 'failed' as const };
    await delivery.fail(failed, { name: 'EngineError', code: 'engine_failed', message: 'secret internals', userFacing: false, fields: {} });
    expect(fake.originalResponse(token)?.deleted).toBe(true);
    const note = fake.liveMessages().find((message) => message.flags === 64)!;
    expect(note.content).toMatch(/went wrong/);
    expect(note.content).not.toMatch(/secret internals/);
    expect(note.components[0]?.components.map((button) => button.label)).toEqual(['🔄']);
  });

  test('a restart of the bot: the status message says once that the result still comes, and nothing changes it afterwards', async () => {
    const { token, delivery } = await deferred();
    delivery.openOriginal('Queued');
    await fake.waitFor(() => edits(token).length === 1, 'the first edit');
    void delivery.listener.progress?.({ job: job(), fraction: 0.2, stage: 'decoder', etaMs: 0 });
    await delivery.listener.handedOver?.({ job: { ...job(), status: 'running' } });
    await delivery.settled;
    expect(edits(token)).toHaveLength(2);
    expect(edits(token)[1]).toContain(handedOverText(true));
    void delivery.listener.progress?.({ job: job(), fraction: 0.6, stage: 'decoder', etaMs: 0 });
    timers.advance(5000);
    expect(timers.pending).toEqual([]);
    expect(edits(token)).toHaveLength(2);
    // The next bot posts the result in the channel; this one posts nothing more.
    expect(fake.callsTo('/channels/:channel/messages', 'POST')).toHaveLength(0);
  });

  describe('a job whose bot process is gone (discordOrphanDelivery)', () => {
    const orphan = (): JobRecord => ({ ...job(), requester: { platform: 'discord', userId: 'u1', channelId: '77', guildId: '1' } });
    const interactionCalls = (): number => fake.calls.filter((call) => call.route.startsWith('/webhooks') || call.route.startsWith('/interactions')).length;

    test('the result is posted to the requester\'s channel with the bot token, mentioning them, with its buttons', async () => {
      const listener = discordOrphanDelivery({ rest, service, logger: silentLogger(), timers }).listenerFor(orphan())!;
      await listener.started?.({ job: orphan(), etaMs: 1000 });
      await listener.progress?.({ job: orphan(), fraction: 0.5, stage: 'decoder', etaMs: 500 });
      await listener.completed({ ...output(), job: orphan() });
      expect(interactionCalls()).toBe(0);
      const posted = fake.callsTo('/channels/:channel/messages', 'POST');
      expect(posted.map((call) => [call.path, call.auth])).toEqual([['/channels/77/messages', 'Bot']]);
      const [message] = fake.liveMessages();
      expect(message).toMatchObject({ channelId: '77', source: { kind: 'bot' } });
      expect(message!.content).toContain('<@u1>');
      expect(message!.attachments.map((attachment) => attachment.filename)).toEqual(['grid.png']);
      expect(message!.components.flatMap((row) => row.components.map((button) => button.label))).toContain('U1');
      expect(attached).toEqual([{ jobId: 'job123', message: { platform: 'discord', channelId: '77', messageId: message!.id, via: 'channel' } }]);
    });

    test('a failure is told in the channel with a 🔄 button; a job with no channel cannot be shown', async () => {
      const delivery = discordOrphanDelivery({ rest, service, logger: silentLogger(), timers });
      const failed = { ...orphan(), status: 'failed' as const };
      await delivery.listenerFor(failed)!.failed({ job: failed, error: { name: 'EngineError', code: 'engine_failed', message: 'secret internals', userFacing: false, fields: {} } });
      expect(interactionCalls()).toBe(0);
      const [note] = fake.liveMessages();
      expect(note).toMatchObject({ channelId: '77', source: { kind: 'bot' } });
      expect(note!.content).toMatch(/^<@u1> .*went wrong/);
      expect(note!.content).not.toMatch(/secret internals/);
      expect(note!.components[0]?.components.map((button) => button.label)).toEqual(['🔄']);
      expect(delivery.listenerFor(job())).toBeUndefined();
    });
  });
});
