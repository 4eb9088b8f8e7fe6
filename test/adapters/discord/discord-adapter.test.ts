/**
 * What is particular to Discord, checked on the REST calls the bot made against the fake Discord:
 * deferred acknowledgement, edits in place, multipart uploads, buttons answered with new
 * messages, the bot-token fallback, signatures in HTTP mode, upload limits, DMs, allow-lists,
 * the other commands, and command registration.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { decodeButton } from '../../../commands/custom-id.js';
import { commandDefinitions } from '../../../commands/definitions.js';
import { registerCommands, parseRegisterArguments } from '../../../adapters/discord/register.js';
import { ReplayGuard, startInteractionsEndpoint } from '../../../adapters/discord/http-endpoint.js';
import { MemoryFirstSightings } from '../../../src/service/first-sightings.js';
import { CallbackKind, EphemeralFlag, FakeDiscord, type FakeMessage } from '../../fakes/fake-discord/fake-discord.js';
import { projectRoot } from '../../../src/config/config.js';
import { silentLogger } from '../../../src/logger.js';
import { DiscordHarness, channelId } from './harness.js';

const run = promisify(execFile);

const modes = ['gateway', 'http'] as const;

async function resultMessage(harness: DiscordHarness, index: number, timeoutMs?: number): Promise<FakeMessage> {
  const result = await harness.waitForResult(index, timeoutMs);
  return harness.messageOf(result);
}

describe.each(modes)('Discord adapter (%s mode)', (mode) => {
  let harness: DiscordHarness;

  beforeAll(async () => {
    harness = await DiscordHarness.start({ mode, engine: { steps: 8, stepDelayMs: 40 } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('/imagine: deferred at once, status edited in place, then the grid with nine buttons in the same message', async () => {
    const { fake, engine } = harness;
    // Someone else's job holds the only slot, so this one waits in the queue first.
    engine.configure({ hold: true });
    const calls = engine.calls.length;
    let token: string;
    try {
      await harness.imagine('a job in front --seed 1', 'zed');
      await engine.waitForCalls(calls + 1);
      token = (await harness.imagineAs('a green pyramid --seed 5', harness.actor('alice'))).token;
      await fake.waitFor(() => /Queued/.test(fake.originalResponse(token)?.content ?? ''), 'the queue position');
    } finally {
      engine.releaseAll();
    }
    const state = fake.interactions.get(token)!;
    expect(state.callbackType).toBe(CallbackKind.DeferredChannelMessageWithSource);

    const message = await fake.waitFor(() => {
      const original = fake.originalResponse(token);
      return original && original.attachments.length > 0 ? original : undefined;
    }, 'the grid');
    await harness.adapter.idle();
    expect(message.flags & EphemeralFlag).toBe(0);
    const contents = message.history.map((entry) => entry.content);
    expect(contents[0]).toBe('');
    expect(contents.some((text) => /Queued — #1 in line/.test(text))).toBe(true);
    expect(contents.some((text) => /^\*\*a green pyramid\*\* — <@alice>\nGenerating… \d+%/.test(text))).toBe(true);
    expect(message.content).toContain('a green pyramid');
    expect(message.content).toContain('<@alice>');

    const final = fake.callsTo('/webhooks/:app/:token/messages/@original', 'PATCH').filter((call) => call.path.includes(token)).at(-1)!;
    expect(final.auth).toBeUndefined();
    expect(final.files).toHaveLength(1);
    expect(final.files[0]).toMatchObject({ field: 'files[0]', contentType: 'image/png' });
    expect((await sharp(final.files[0]!.data).metadata()).format).toBe('png');
    const ids = message.components.flatMap((row) => row.components.map((button) => button.custom_id ?? ''));
    expect(ids).toHaveLength(9);
    for (const id of ids) {
      expect(id.length).toBeLessThanOrEqual(100);
      expect(() => decodeButton(id)).not.toThrow();
    }

    const job = await harness.getJob(decodeButton(ids[0]!).jobId);
    expect(job?.message).toMatchObject({ platform: 'discord', messageId: message.id, channelId });
    expect(job?.requester).toMatchObject({ platform: 'discord', userId: 'alice', guildId: expect.any(String), channelId, isAdmin: false });
  });

  test('a button press is acknowledged with a deferred update and answered with a new message', async () => {
    const { fake } = harness;
    const grid = await harness.waitForResult(0);
    const before = harness.resultCount();
    await harness.press(grid, 'U3', 'bob');
    const token = [...fake.interactions.keys()].at(-1)!;
    expect(fake.interactions.get(token)?.callbackType).toBe(CallbackKind.DeferredUpdateMessage);
    const message = await resultMessage(harness, before);
    expect(message.id).not.toBe(grid.handle);
    expect(message.source).toMatchObject({ kind: 'interaction', token });
    expect(message.flags & EphemeralFlag).toBe(0);
    expect(message.history.some((entry) => /^\*\*.+\*\* — Upscaling image #3 — <@bob>\n(Queued|Starting|Generating)/.test(entry.content))).toBe(true);
    // The grid itself is left as it was.
    expect(harness.messageOf(grid).components).toHaveLength(3);
  });

  test('after the token expired the result goes to the channel with the bot token, mentioning who asked', async () => {
    const { fake, engine } = harness;
    engine.configure({ hold: true });
    const before = harness.resultCount();
    const calls = engine.calls.length;
    try {
      await harness.imagine('a late result --seed 3', 'frank');
      await engine.waitForCalls(calls + 1);
      fake.expireToken([...fake.interactions.keys()].at(-1)!);
    } finally {
      engine.releaseAll();
    }
    const message = await resultMessage(harness, before);
    expect(message.source).toEqual({ kind: 'bot' });
    const post = fake.callsTo('/channels/:channel/messages', 'POST').at(-1)!;
    expect(post.auth).toBe('Bot');
    expect(post.path).toBe(`/channels/${channelId}/messages`);
    expect(post.files[0]?.contentType).toBe('image/png');
    expect(post.json).toMatchObject({ allowed_mentions: { users: ['frank'] } });
    expect(message.content).toContain('<@frank>');
    const job = await harness.getJob(decodeButton(message.components[0]!.components[0]!.custom_id!).jobId);
    expect(job?.message).toMatchObject({ messageId: message.id, via: 'channel' });
  });

  test('a job still running when the adapter closes is delivered afterwards, with the bot token once the token expired', async () => {
    const extra = await DiscordHarness.start({ mode });
    try {
      const { fake, engine } = extra;
      engine.configure({ hold: true });
      await extra.imagine('finishing after close --seed 2', 'olga');
      await engine.waitForCalls(1);
      await extra.adapter.close();
      fake.expireAllTokens();
      engine.releaseAll();
      const message = await resultMessage(extra, 0);
      expect(message.source).toEqual({ kind: 'bot' });
      expect(fake.callsTo('/channels/:channel/messages', 'POST').at(-1)?.status).toBe(200);
    } finally {
      await extra.close();
    }
  });

  test('the upload respects the interaction attachment_size_limit', async () => {
    const limit = 40_000;
    const big = await DiscordHarness.start({ mode, engine: { baseSize: 256, noise: 60, steps: 1 } });
    try {
      const before = big.resultCount();
      await big.imagineAs('noisy --seed 9', big.actor('gina', { attachmentSizeLimit: limit }));
      // Re-encoding noise until it fits takes seconds of CPU: on a loaded machine, more than the usual wait.
      const message = await resultMessage(big, before, 50_000);
      const file = message.attachments[0]!;
      expect(file.size).toBeLessThanOrEqual(limit);
      const metadata = await sharp(file.data).metadata();
      expect(metadata.width).toBeGreaterThan(0);
      // Without the limit the same grid is larger than it, so the limit did something.
      const unlimited = big.resultCount();
      await big.imagineAs('noisy --seed 9', big.actor('gina'));
      expect((await resultMessage(big, unlimited)).attachments[0]!.size).toBeGreaterThan(limit);
    } finally {
      await big.close();
    }
  });

  test('DMs work: no guild, the user object instead of a member', async () => {
    const before = harness.resultCount();
    await harness.imagineAs('a dm picture --seed 4', { id: 'hank', username: 'hank', guildId: undefined, channelId: 'dm-hank' });
    const message = await resultMessage(harness, before);
    expect(message.channelId).toBe('dm-hank');
    const job = await harness.getJob(decodeButton(message.components[0]!.components[0]!.custom_id!).jobId);
    expect(job?.requester.guildId).toBeUndefined();
    expect(job?.requester.userId).toBe('hank');
  });

  test('/help, /info and /settings answer ephemerally at once', async () => {
    const { fake } = harness;
    for (const [name, options, pattern] of [
      ['help', [], /imagine/i],
      ['info', [], /queue|running|limit/i],
      ['settings', [{ name: 'aspect_ratio', type: 3, value: '16:9' }], /16:9/],
    ] as const) {
      const { token } = await harness.command(name, [...options], harness.actor('ivy'));
      const state = fake.interactions.get(token)!;
      expect(state.callbackType).toBe(CallbackKind.ChannelMessageWithSource);
      const reply = fake.originalResponse(token)!;
      expect(reply.flags & EphemeralFlag).toBe(EphemeralFlag);
      expect(reply.content).toMatch(pattern);
    }
    // The setting is used by the next /imagine of the same user.
    const before = harness.resultCount();
    await harness.imagine('wide view', 'ivy');
    const message = await resultMessage(harness, before);
    const job = await harness.getJob(decodeButton(message.components[0]!.components[0]!.custom_id!).jobId);
    expect(job?.parameters.aspectRatio).toBe('16:9');
  });

  test('an admin cancels anyone\'s job and denies a channel; the owner hears of it ephemerally', async () => {
    const { fake, engine } = harness;
    const admin = harness.actor('olive', { permissions: String(1 << 5) });
    engine.configure({ hold: true });
    const calls = engine.calls.length;
    const ephemerals = harness.ephemeralCount();
    let jobId: string;
    try {
      const { token } = await harness.imagineAs('to be cancelled', harness.actor('paul'));
      await engine.waitForCalls(calls + 1);
      await fake.waitFor(() => /Generating|Starting|Queued/.test(fake.originalResponse(token)?.content ?? ''), 'the status');
      jobId = (await harness.service.info({ platform: 'discord', userId: 'paul' })).running[0]!.id;
      const cancel = await harness.command('admin', [{ name: 'action', type: 3, value: 'cancel-job' }, { name: 'job', type: 3, value: jobId }], admin);
      expect(fake.originalResponse(cancel.token)?.content).toMatch(/Cancelled job/);
      expect(fake.originalResponse(cancel.token)?.flags).toBe(EphemeralFlag);
    } finally {
      engine.releaseAll();
    }
    const texts: string[] = [];
    for (let index = ephemerals; texts.length < 2; index += 1) texts.push(await harness.waitForEphemeral(index));
    expect(texts.some((text) => /🛑/.test(text) && /cancelled/i.test(text))).toBe(true);
    expect((await harness.getJob(jobId))?.status).toBe('cancelled');

    const deny = await harness.command('admin', [{ name: 'action', type: 3, value: 'deny-channel' }, { name: 'channel', type: 3, value: '8800' }], admin);
    expect(fake.originalResponse(deny.token)?.content).toMatch(/8800.*denied/);
    const refused = await harness.imagineAs('in a denied channel', harness.actor('paul', { channelId: '8800' }));
    expect(fake.originalResponse(refused.token)?.content).toMatch(/not drawing in this channel/);
    await harness.command('admin', [{ name: 'action', type: 3, value: 'clear-channel' }, { name: 'channel', type: 3, value: '8800' }], admin);
  });

  test('/admin is refused to members without Manage Server and allowed with it', async () => {
    const { fake } = harness;
    const refused = await harness.command('admin', [{ name: 'action', type: 3, value: 'list-channels' }], harness.actor('jack'));
    expect(fake.originalResponse(refused.token)?.content).toMatch(/admins/i);
    const allowed = await harness.command('admin', [{ name: 'action', type: 3, value: 'list-channels' }], harness.actor('kate', { permissions: String(1 << 5) }));
    expect(fake.originalResponse(allowed.token)?.content).not.toMatch(/Only the bot/i);
    expect(fake.originalResponse(allowed.token)?.flags).toBe(EphemeralFlag);
  });
});

describe('Discord adapter: HTTP endpoint signatures', () => {
  let harness: DiscordHarness;

  beforeAll(async () => {
    harness = await DiscordHarness.start({ mode: 'http' });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('a bad or missing signature gets 401 and no work; PING gets PONG', async () => {
    const { fake, engine } = harness;
    const url = harness.adapter.interactionsUrl!;
    for (const signature of ['bad', 'missing'] as const) {
      const interaction = fake.slashCommand('imagine', [{ name: 'prompt', type: 3, value: 'forged' }], harness.actor('mallory'));
      const response = await fake.postInteraction(url, interaction, signature);
      expect(response.status).toBe(401);
      expect(fake.interactions.get(String(interaction.token))?.callbackType).toBeUndefined();
    }
    expect(engine.calls).toHaveLength(0);
    expect(fake.calls.filter((call) => call.route.startsWith('/webhooks') || call.route.startsWith('/interactions'))).toHaveLength(0);

    const pong = await fake.postInteraction(url, fake.ping(), 'valid');
    expect(pong).toEqual({ status: 200, body: { type: CallbackKind.Pong } });

    const wrongPath = await fetch(url.replace('/interactions', '/other'), { method: 'POST', body: '{}' });
    expect(wrongPath.status).toBe(404);
  });

  test('a validly signed request 10 minutes old or ahead, or one sent twice, gets 401 and no work', async () => {
    const { fake, engine } = harness;
    const url = harness.adapter.interactionsUrl!;
    const now = Math.floor(Date.now() / 1000);
    for (const timestamp of [now - 600, now + 600]) {
      const interaction = fake.slashCommand('imagine', [{ name: 'prompt', type: 3, value: 'replayed' }], harness.actor('mallory'));
      const response = await fake.postInteraction(url, interaction, 'valid', { timestamp });
      expect(response).toEqual({ status: 401, body: { error: 'request timestamp too old or too new' } });
      expect(fake.interactions.get(String(interaction.token))?.callbackType).toBeUndefined();
    }
    expect(engine.calls).toHaveLength(0);

    // Ed25519 signatures are deterministic: the same body and timestamp give the very same request again.
    const ping = fake.ping();
    expect(await fake.postInteraction(url, ping, 'valid', { timestamp: now })).toEqual({ status: 200, body: { type: CallbackKind.Pong } });
    expect(await fake.postInteraction(url, ping, 'valid', { timestamp: now })).toEqual({ status: 401, body: { error: 'request already seen' } });
    expect(await fake.postInteraction(url, ping, 'valid', { timestamp: now + 1 })).toEqual({ status: 200, body: { type: CallbackKind.Pong } });
  });
});

describe('ReplayGuard', () => {
  test('accepts a signature once inside the window, refuses it again, and refuses timestamps outside the window', async () => {
    const now = 1_000_000_000_000;
    const sightings = new MemoryFirstSightings(() => now);
    const guard = new ReplayGuard(300, () => now, sightings);
    const seconds = (offset: number) => String(now / 1000 + offset);
    expect(await guard.check('aa', seconds(0))).toBe('fresh');
    expect(await guard.check('AA', seconds(0))).toBe('replayed');
    expect(await guard.check('bb', seconds(-300))).toBe('fresh');
    expect(await guard.check('cc', seconds(300))).toBe('fresh');
    expect(await guard.check('dd', seconds(-301))).toBe('stale');
    expect(await guard.check('ee', seconds(301))).toBe('stale');
    for (const timestamp of ['', 'abc', '1e9', '-5', '12.5']) expect(await guard.check('ff', timestamp)).toBe('stale');
    expect(sightings.size).toBe(3);
  });

  test('forgets a signature only once its timestamp can no longer pass, so memory stays bounded', async () => {
    let now = 1_000_000_000_000;
    const sightings = new MemoryFirstSightings(() => now);
    const guard = new ReplayGuard(300, () => now, sightings);
    const signedAt = String(now / 1000);
    expect(await guard.check('aa', signedAt)).toBe('fresh');
    now += 300_000;
    expect(await guard.check('aa', signedAt)).toBe('replayed');
    now += 1000;
    expect(await guard.check('aa', signedAt)).toBe('stale');
    now += 300_000;
    expect(await guard.check('bb', String(now / 1000))).toBe('fresh');
    expect(sightings.size).toBe(1);
  });

  test('with shared sightings, a request one endpoint served is refused by another (two bots behind one load balancer)', async () => {
    const fake = await FakeDiscord.start();
    const shared = new MemoryFirstSightings();
    const handler = { handle: async (_interaction: unknown, respond: (value: { type: number }) => Promise<void>) => respond({ type: CallbackKind.Pong }), idle: async () => undefined };
    const start = (sightings?: MemoryFirstSightings) => startInteractionsEndpoint({ publicKey: fake.publicKey, host: '127.0.0.1', port: 0, handler, logger: silentLogger(), ...(sightings ? { sightings } : {}) });
    const [first, second, alone] = [await start(shared), await start(shared), await start()];
    try {
      const ping = fake.ping();
      const timestamp = Math.floor(Date.now() / 1000);
      expect(await fake.postInteraction(first.url, ping, 'valid', { timestamp })).toEqual({ status: 200, body: { type: CallbackKind.Pong } });
      expect(await fake.postInteraction(second.url, ping, 'valid', { timestamp })).toEqual({ status: 401, body: { error: 'request already seen' } });
      // Without shared sightings each process only knows its own requests.
      expect(await fake.postInteraction(alone.url, ping, 'valid', { timestamp })).toEqual({ status: 200, body: { type: CallbackKind.Pong } });
    } finally {
      await Promise.all([first.close(), second.close(), alone.close()]);
      await fake.close();
    }
  });

  test('while the shared store cannot answer, a signed request gets 500 and no work rather than an unchecked pass', async () => {
    const fake = await FakeDiscord.start();
    let handled = 0;
    const handler = { handle: async (_interaction: unknown, respond: (value: { type: number }) => Promise<void>) => { handled += 1; await respond({ type: CallbackKind.Pong }); }, idle: async () => undefined };
    const unreachable = { claim: async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')) };
    const endpoint = await startInteractionsEndpoint({ publicKey: fake.publicKey, host: '127.0.0.1', port: 0, handler, logger: silentLogger(), sightings: unreachable });
    try {
      expect(await fake.postInteraction(endpoint.url, fake.ping(), 'valid')).toEqual({ status: 500, body: { error: 'internal error' } });
      expect(handled).toBe(0);
    } finally {
      await endpoint.close();
      await fake.close();
    }
  });
});

describe('Discord adapter: gateway', () => {
  test('identifies with the Guilds intent only, after GET /gateway/bot through DISCORD_API_URL', async () => {
    const harness = await DiscordHarness.start({ mode: 'gateway' });
    try {
      expect(harness.fake.identifies).toEqual([{ token: harness.fake.token, intents: 1 }]);
      expect(harness.fake.callsTo('/gateway/bot', 'GET')).toHaveLength(1);
    } finally {
      await harness.close();
    }
  });

  test('resumes after the gateway drops the connection and keeps answering', async () => {
    const harness = await DiscordHarness.start({ mode: 'gateway' });
    try {
      const { fake } = harness;
      fake.dropGatewayConnections(4000);
      await fake.waitFor(() => (fake.gatewayOps.get(6) ?? 0) >= 1 && fake.connectedSessions() === 1, 'a RESUME', 30_000);
      expect(fake.identifies).toHaveLength(1);
      const before = harness.resultCount();
      await harness.imagine('after the resume --seed 8', 'nina');
      await harness.waitForResult(before);
    } finally {
      await harness.close();
    }
  });

  test('guild and channel allow-lists refuse others ephemerally, and DMs still work', async () => {
    const harness = await DiscordHarness.start({ mode: 'gateway', config: { discordGuilds: ['123456789'], discordChannels: [channelId] } });
    try {
      const { fake } = harness;
      const refused = await harness.imagineAs('not here', harness.actor('lena'));
      const reply = fake.originalResponse(refused.token)!;
      expect(reply.flags).toBe(EphemeralFlag);
      expect(reply.content).toMatch(/not enabled in this server/);
      expect(harness.engine.calls).toHaveLength(0);

      const inAllowedGuildOtherChannel = await harness.imagineAs('not this channel', harness.actor('lena', { guildId: '123456789', channelId: '555' }));
      expect(fake.originalResponse(inAllowedGuildOtherChannel.token)?.content).toMatch(/not drawing in this channel/);

      const before = harness.resultCount();
      await harness.imagineAs('in a dm --seed 1', { id: 'lena', guildId: undefined, channelId: 'dm-lena' });
      await harness.waitForResult(before);
      expect(harness.engine.calls).toHaveLength(1);
    } finally {
      await harness.close();
    }
  });
});

describe('npm run register', () => {
  test('PUTs every command definition globally or in one guild, with the admin command behind Manage Server', async () => {
    const fake = await FakeDiscord.start();
    try {
      const config = { discordToken: fake.token, discordApplicationId: fake.applicationId, discordApiUrl: fake.apiUrl };
      const names = await registerCommands({ config });
      expect(names).toEqual(commandDefinitions.map((command) => command.name));
      const global = fake.registeredCommands.get('global') as Array<Record<string, unknown>>;
      const imagine = global.find((command) => command.name === 'imagine')!;
      const options = imagine.options as Array<Record<string, unknown>>;
      expect(options[0]).toMatchObject({ name: 'prompt', type: 3, required: true });
      expect(options.find((option) => option.name === 'aspect_ratio')?.choices).toEqual(expect.arrayContaining([{ name: '16:9', value: '16:9' }]));
      expect(options.find((option) => option.name === 'seed')).toMatchObject({ type: 4, min_value: 0 });
      expect(global.find((command) => command.name === 'admin')).toMatchObject({ default_member_permissions: '32', contexts: [0] });
      expect(imagine).toMatchObject({ default_member_permissions: null, contexts: [0, 1] });

      await registerCommands({ config, guildId: '42424242' });
      expect(fake.registeredCommands.get('42424242')).toHaveLength(commandDefinitions.length);
      expect(fake.callsTo('/applications/:app/guilds/:guild/commands', 'PUT')[0]?.auth).toBe('Bot');
    } finally {
      await fake.close();
    }
  });

  test('runs as a script with the environment the bot uses', async () => {
    const fake = await FakeDiscord.start();
    try {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', 'adapters/discord/register.ts', '--guild', '31415926'], {
        cwd: projectRoot,
        env: { ...process.env, DISCORD_TOKEN: fake.token, DISCORD_APPLICATION_ID: fake.applicationId, DISCORD_API_URL: fake.apiUrl, NODE_OPTIONS: '' },
      });
      expect(stdout).toMatch(/Registered \d+ commands in guild 31415926/);
      expect(fake.registeredCommands.get('31415926')).toHaveLength(commandDefinitions.length);
      expect(stdout).not.toContain(fake.token);
    } finally {
      await fake.close();
    }
  });

  test('reads --guild ID and refuses anything else', () => {
    expect(parseRegisterArguments([])).toEqual({});
    expect(parseRegisterArguments(['--guild', '123456789'])).toEqual({ guildId: '123456789' });
    expect(parseRegisterArguments(['--guild=123456789'])).toEqual({ guildId: '123456789' });
    expect(() => parseRegisterArguments(['--guild'])).toThrow(/guild id/);
    expect(() => parseRegisterArguments(['--global'])).toThrow(/Unknown argument/);
  });
});
