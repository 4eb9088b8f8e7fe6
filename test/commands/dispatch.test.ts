import { createChannelPolicy, type LimitControls, type LimitValues } from '../../commands/admin.js';
import { encodeButton } from '../../commands/custom-id.js';
import { commandSettingsFor, routeTextCommand, runButton, runCommand, type CommandContext, type CommandReply, type CommandSettings } from '../../commands/dispatch.js';
import { createUserSettingsStore } from '../../commands/user-settings.js';
import { EngineError, ErrorCode, LimitError } from '../../src/errors.js';
import type { JobListener, Requester } from '../../src/service/types.js';
import { RecordingGenerationService } from './recording-service.js';

const listener: JobListener = { completed: () => undefined, failed: () => undefined };
const ada: Requester = { platform: 'discord', userId: '1', displayName: 'Ada', channelId: 'c1' };
const bob: Requester = { platform: 'discord', userId: '2', displayName: 'Bob', channelId: 'c1' };

function setup(settings: CommandSettings = {}): { service: RecordingGenerationService; as: (requester: Requester) => CommandContext } {
  const service = new RecordingGenerationService();
  const shared: CommandSettings = { userSettings: createUserSettingsStore(), randomSeed: () => 99, ...settings };
  return { service, as: (requester) => ({ service, requester, listener, settings: shared, deliveryOptions: { uploadLimitBytes: 1234 } }) };
}

function expectMessage(reply: CommandReply): string {
  expect(reply.kind).toBe('message');
  if (reply.kind !== 'message') throw new Error('not a message');
  expect(reply.ephemeral).toBe(true);
  return reply.text;
}

describe('runCommand imagine', () => {
  test('parses the prompt, merges native options and queues the job', async () => {
    const { service, as } = setup();
    const reply = await runCommand(as(ada), 'imagine', { prompt: 'a fox --no snow', aspect_ratio: '16:9', chaos: 30, seed: undefined });
    expect(reply.kind).toBe('job');
    if (reply.kind !== 'job') return;
    expect(reply.text).toBe('Queued — #1 in line (next up), ready in about 10 s.');
    const call = service.calls[0]!;
    expect(call.method).toBe('imagine');
    expect(call.args[0]).toEqual({ prompt: 'a fox', negativePrompt: 'snow', aspectRatio: '16:9', seed: 99, chaos: 30 });
    expect(call.args[1]).toBe(listener);
    expect(call.args[2]).toEqual({ uploadLimitBytes: 1234 });
  });

  test('bad input becomes an ephemeral message and nothing is queued', async () => {
    const { service, as } = setup();
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: '--ar 16:9' }))).toContain('prompt is empty');
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x --sed 4' }))).toContain('--seed');
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x --seed 4', seed: 5 }))).toContain('given twice');
    expect(expectMessage(await runCommand(as(ada), 'imagine', {}))).toContain('prompt is empty');
    expect(service.calls).toHaveLength(0);
  });

  test('blocked words and engine capabilities come from the configuration', async () => {
    const settings = commandSettingsFor({ blockedWords: ['gore'], admins: [] }, { sizes: { '1:1': { width: 8, height: 8 }, '2:1': { width: 16, height: 8 } }, limits: { minSteps: 1, maxSteps: 10, minGuidance: 0, maxGuidance: 5 } });
    const { service, as } = setup(settings);
    const text = expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'lots of GORE' }));
    expect(text).toContain("isn't allowed");
    expect(text).not.toContain('gore');
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x --ar 16:9' }))).toContain('1:1, 2:1');
    expect((await runCommand(as(ada), 'imagine', { prompt: 'x --ar 2:1' })).kind).toBe('job');
    expect(service.calls).toHaveLength(1);
  });

  test('limit errors from the service reach the user verbatim', async () => {
    const { service, as } = setup();
    service.failNext = new LimitError(ErrorCode.RateLimited, 'You are drawing fast: try again in 6 s.', 6000);
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x' }))).toBe('You are drawing fast: try again in 6 s.');
  });

  test('internal errors are reported to onError and hidden from the user', async () => {
    const seen: unknown[] = [];
    const { service, as } = setup({ onError: (error) => seen.push(error) });
    service.failNext = new EngineError('onnx failed at /home/secret/model.onnx');
    const text = expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x' }));
    expect(text).toContain('engine_failed');
    expect(text).not.toContain('/home/secret');
    expect(seen).toHaveLength(1);
    service.failNext = new TypeError('boom');
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x' }))).toContain('internal');
  });
});

describe('settings', () => {
  test('a saved aspect ratio becomes the default and a saved strength drives V buttons', async () => {
    const { service, as } = setup();
    expect(expectMessage(await runCommand(as(ada), 'settings', { aspect_ratio: '9:16', variation: 'subtle' }))).toContain('Saved');
    expect(expectMessage(await runCommand(as(ada), 'settings', {}))).toContain('9:16');
    await runCommand(as(ada), 'imagine', { prompt: 'tall tower' });
    expect(service.calls.at(-1)!.args[0]).toMatchObject({ aspectRatio: '9:16' });
    await runCommand(as(bob), 'imagine', { prompt: 'square' });
    expect(service.calls.at(-1)!.args[0]).toMatchObject({ aspectRatio: '1:1' });

    const grid = encodeButton({ kind: 'vary', jobId: 'job1', index: 2, strength: 'strong', strengthFromSettings: true });
    await runButton(as(ada), grid);
    expect(service.calls.at(-1)!.args.slice(0, 3)).toEqual(['job1', 2, 'subtle']);
    await runButton(as(bob), grid);
    expect(service.calls.at(-1)!.args.slice(0, 3)).toEqual(['job1', 2, 'strong']);
    // An explicit strength on the button wins over the setting.
    await runButton(as(ada), encodeButton({ kind: 'vary', jobId: 'job1', index: 1, strength: 'strong' }));
    expect(service.calls.at(-1)!.args.slice(0, 3)).toEqual(['job1', 1, 'strong']);

    await runCommand(as(ada), 'settings', { reset: true });
    expect(expectMessage(await runCommand(as(ada), 'settings', {}))).toContain('1:1 (default)');
  });

  test('bad settings are refused', async () => {
    const { as } = setup();
    expect(expectMessage(await runCommand(as(ada), 'settings', { aspect_ratio: '7:1' }))).toContain('not available');
    expect(expectMessage(await runCommand(as(ada), 'settings', { variation: 'wild' }))).toContain('subtle or strong');
  });
});

describe('runButton', () => {
  test('upscale, vary and reroll reach the service and answer with the queue position', async () => {
    const { service, as } = setup();
    await runCommand(as(ada), 'imagine', { prompt: 'x' });
    const upscale = await runButton(as(bob), encodeButton({ kind: 'upscale', jobId: 'job1', index: 4 }));
    expect(upscale.kind).toBe('job');
    expect(service.calls.at(-1)).toMatchObject({ method: 'upscale', requester: bob, args: ['job1', 4, listener, { uploadLimitBytes: 1234 }] });
    await runButton(as(bob), encodeButton({ kind: 'reroll', jobId: 'job1' }));
    expect(service.calls.at(-1)).toMatchObject({ method: 'reroll', args: ['job1', listener, { uploadLimitBytes: 1234 }] });
  });

  test('forged ids and unknown jobs become ephemeral messages', async () => {
    const { service, as } = setup();
    expect(expectMessage(await runButton(as(ada), 'im1:u:job1:9'))).toContain("isn't valid");
    expect(expectMessage(await runButton(as(ada), 'drop table'))).toContain("isn't valid");
    expect(service.calls).toHaveLength(0);
    expect(expectMessage(await runButton(as(ada), 'im1:r:nothere'))).toContain('no longer exists');
  });
});

describe('info, help, cancel', () => {
  test('info and help are ephemeral texts', async () => {
    const { as } = setup();
    await runCommand(as(ada), 'imagine', { prompt: 'a lighthouse' });
    const info = expectMessage(await runCommand(as(ada), 'info', {}));
    expect(info).toContain('job1');
    expect(info).toContain('recording engine');
    expect(expectMessage(await runCommand(as(ada), 'help', {}))).toContain('--chaos');
    expect(expectMessage(await runCommand(as(ada), 'nonsense', {}))).toContain('no command');
  });

  test('the owner may cancel; others may not unless admin (platform role or ADMIN_USERS)', async () => {
    const { service, as } = setup({ admins: ['discord:3'] });
    await runCommand(as(ada), 'imagine', { prompt: 'x' });
    await runCommand(as(ada), 'imagine', { prompt: 'y' });
    expect(expectMessage(await runCommand(as(bob), 'cancel', { job: 'job1' }))).toContain('Only the person');
    expect(expectMessage(await runCommand(as(ada), 'cancel', { job: 'job1' }))).toContain('Cancelled job');
    const carol: Requester = { platform: 'discord', userId: '3' };
    expect(expectMessage(await runCommand(as(carol), 'cancel', { job: 'job2' }))).toContain('Cancelled job');
    expect(service.calls.at(-1)!.requester.isAdmin).toBe(true);
    expect(expectMessage(await runCommand(as(ada), 'cancel', { job: 'no such/job' }))).toContain('not a job id');
  });
});

describe('admin', () => {
  class MemoryLimits implements LimitControls {
    values: LimitValues = { ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5 };
    getLimits(): LimitValues {
      return this.values;
    }
    setLimits(changes: Partial<LimitValues>): LimitValues {
      this.values = { ...this.values, ...changes };
      return this.values;
    }
  }
  const root: Requester = { platform: 'discord', userId: '9', isAdmin: true, channelId: 'c1' };

  test('only admins may use it', async () => {
    const { as } = setup();
    expect(expectMessage(await runCommand(as(ada), 'admin', { action: 'show-limits' }))).toContain('Only the bot’s admins');
  });

  test('limits: unsupported without controls, changed and validated with them', async () => {
    expect(expectMessage(await runCommand(setup().as(root), 'admin', { action: 'show-limits' }))).toContain('not available');
    const limits = new MemoryLimits();
    const { as } = setup({ limitControls: limits });
    expect(expectMessage(await runCommand(as(root), 'admin', { action: 'set-limit', limit: 'max_queued', value: 9 }))).toContain('9 queued');
    expect(limits.values.maxQueued).toBe(9);
    expect(expectMessage(await runCommand(as(root), 'admin', { action: 'set-limit', limit: 'burst', value: 0 }))).toContain('1 to 1000');
    expect(expectMessage(await runCommand(as(root), 'admin', { action: 'set-limit', limit: 'speed', value: 3 }))).toContain('Choose the limit');
    expect(limits.values.burst).toBe(3);
  });

  test('admins deny and allow channels; imagine and buttons obey', async () => {
    const { service, as } = setup({ channels: createChannelPolicy() });
    expect(expectMessage(await runCommand(as(root), 'admin', { action: 'deny-channel' }))).toContain('c1 on discord is now denied');
    expect(expectMessage(await runCommand(as(ada), 'imagine', { prompt: 'x' }))).toContain('not drawing in this channel');
    expect(expectMessage(await runButton(as(ada), 'im1:r:job1'))).toContain('not drawing in this channel');
    expect((await runCommand(as({ ...ada, channelId: 'c2' }), 'imagine', { prompt: 'x' })).kind).toBe('job');
    await runCommand(as(root), 'admin', { action: 'allow-channel', channel: 'c3' });
    expect(expectMessage(await runCommand(as({ ...ada, channelId: 'c2' }), 'imagine', { prompt: 'x' }))).toContain('not drawing');
    expect((await runCommand(as({ ...ada, channelId: 'c3' }), 'imagine', { prompt: 'x' })).kind).toBe('job');
    expect((await runCommand(as({ platform: 'slack', userId: 'U1', channelId: 'c2' }), 'imagine', { prompt: 'x' })).kind).toBe('job');
    expect(expectMessage(await runCommand(as(root), 'admin', { action: 'list-channels' }))).toContain('discord:c3');
    await runCommand(as(root), 'admin', { action: 'clear-channel', channel: 'c3' });
    await runCommand(as(root), 'admin', { action: 'clear-channel', channel: 'c1' });
    expect((await runCommand(as(ada), 'imagine', { prompt: 'x' })).kind).toBe('job');
    expect(service.calls.filter((call) => call.method === 'imagine')).toHaveLength(4);
  });

  test('admins cancel any job', async () => {
    const { as } = setup();
    await runCommand(as(ada), 'imagine', { prompt: 'x' });
    expect(expectMessage(await runCommand(as(root), 'admin', { action: 'cancel-job', job: 'job1' }))).toContain('Cancelled job');
  });
});

describe('routeTextCommand', () => {
  test('routes the first word, everything else is a prompt', () => {
    expect(routeTextCommand('help')).toEqual({ name: 'help', options: {} });
    expect(routeTextCommand(' info ')).toEqual({ name: 'info', options: {} });
    expect(routeTextCommand('help me draw a horse')).toEqual({ name: 'imagine', options: { prompt: 'help me draw a horse' } });
    expect(routeTextCommand('cancel job7')).toEqual({ name: 'cancel', options: { job: 'job7' } });
    expect(routeTextCommand('settings ar:16:9 variation:subtle')).toEqual({ name: 'settings', options: { aspect_ratio: '16:9', variation: 'subtle' } });
    expect(routeTextCommand('admin set-limit limit:burst value:4')).toEqual({ name: 'admin', options: { action: 'set-limit', limit: 'burst', value: '4' } });
    expect(routeTextCommand('a cat --ar 16:9')).toEqual({ name: 'imagine', options: { prompt: 'a cat --ar 16:9' } });
  });
});

describe('command counting', () => {
  test('every command and button press is counted once under its platform, with bounded labels', async () => {
    const { service, as } = setup();
    const reply = await runCommand(as(ada), 'imagine', { prompt: 'a fox' });
    if (reply.kind !== 'job') throw new Error('expected a job');
    await runCommand(as(ada), 'help');
    await runCommand(as(ada), 'no-such-command');
    await runButton(as(bob), encodeButton({ kind: 'upscale', jobId: reply.ticket.job.id, index: 1 }));
    await runButton(as(bob), 'forged:id');
    expect(service.counted).toEqual(['discord/imagine', 'discord/help', 'discord/unknown', 'discord/button:upscale', 'discord/button:invalid']);
  });
});
