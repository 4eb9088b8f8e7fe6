/**
 * The interaction handler's edges: admission slower than the acknowledgement deadline, slash
 * options reaching the command, the requester built from members and DM users, and allow-lists.
 */
import { REST, Routes, type APIInteraction } from 'discord.js';
import { createInteractionHandler, flattenOptions, requesterOf, allowListRefusal } from '../../../adapters/discord/interactions.js';
import { ErrorCode, LimitError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/logger.js';
import type { GenerationService, ImagineParameters, InfoSnapshot, JobTicket, Requester } from '../../../src/service/types.js';
import { CallbackKind, EphemeralFlag, FakeDiscord } from '../../fakes/fake-discord/fake-discord.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A service whose answers come late, recording what it was asked. */
function slowService(delayMs: number, asked: Array<{ requester: Requester; parameters?: ImagineParameters }>): GenerationService {
  const info: InfoSnapshot = {
    requester: { platform: 'discord', userId: 'x' },
    running: [],
    queued: [],
    limits: { ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5, tokensLeft: 3, nextTokenInMs: 0 },
    queueLength: 0,
    slots: 1,
    engine: 'slow engine',
    averageJobMs: 1000,
  };
  const refuse = async (): Promise<JobTicket> => {
    await sleep(delayMs);
    throw new LimitError(ErrorCode.RateLimited, 'You are over the limit. You can start another job in about 10 s.', 10_000);
  };
  return {
    imagine: async (requester, parameters) => {
      asked.push({ requester, parameters });
      return refuse();
    },
    upscale: refuse,
    vary: refuse,
    reroll: refuse,
    cancel: async () => {
      throw new Error('unused');
    },
    info: async (requester) => {
      await sleep(delayMs);
      return { ...info, requester };
    },
    getJob: async () => undefined,
    attachMessage: async () => undefined,
    shutdown: async () => undefined,
  };
}

describe('interaction handler', () => {
  let fake: FakeDiscord;
  let rest: REST;

  beforeEach(async () => {
    fake = await FakeDiscord.start();
    rest = new REST({ api: fake.apiUrl, retries: 0 }).setToken(fake.token);
  });

  afterEach(async () => {
    await fake.close();
  });

  function handlerWith(service: GenerationService) {
    return createInteractionHandler({
      rest,
      config: { discordApplicationId: fake.applicationId, discordGuilds: [], discordChannels: [], admins: [] },
      service,
      logger: silentLogger(),
      commandSettings: { randomSeed: () => 1 },
      ackDeadlineMs: 30,
    });
  }

  const respondVia = (interaction: Record<string, unknown>) => async (response: unknown): Promise<void> => {
    await rest.post(Routes.interactionCallback(String(interaction.id), String(interaction.token)), { body: response, auth: false });
  };

  test('slow /imagine is deferred publicly in time; an error then replaces it with an ephemeral message', async () => {
    const asked: Array<{ requester: Requester; parameters?: ImagineParameters }> = [];
    const handler = handlerWith(slowService(150, asked));
    const interaction = fake.slashCommand(
      'imagine',
      [
        { name: 'prompt', type: 3, value: 'a slow boat' },
        { name: 'aspect_ratio', type: 3, value: '16:9' },
        { name: 'seed', type: 4, value: 99 },
        { name: 'negative_prompt', type: 3, value: 'rain' },
        { name: 'chaos', type: 4, value: 30 },
      ],
      { id: 'u1', guildId: '5', channelId: '6' },
    );
    await handler.handle(interaction as unknown as APIInteraction, respondVia(interaction));
    const token = String(interaction.token);
    expect(fake.interactions.get(token)?.callbackType).toBe(CallbackKind.DeferredChannelMessageWithSource);
    const ack = fake.callsTo('/interactions/:id/:token/callback')[0]?.json as { type: number; data?: { flags?: number } };
    expect(ack.type).toBe(5);
    expect(ack.data?.flags ?? 0).toBe(0);
    expect(fake.originalResponse(token)?.deleted).toBe(true);
    const note = fake.liveMessages().find((message) => message.flags === EphemeralFlag);
    expect(note?.content).toMatch(/over the limit/);
    expect(asked[0]?.parameters).toMatchObject({ prompt: 'a slow boat', aspectRatio: '16:9', seed: 99, negativePrompt: 'rain', chaos: 30 });
  });

  test('slow /info is deferred ephemerally and then filled in', async () => {
    const handler = handlerWith(slowService(150, []));
    const interaction = fake.slashCommand('info', [], { id: 'u2', guildId: '5', channelId: '6' });
    await handler.handle(interaction as unknown as APIInteraction, respondVia(interaction));
    const token = String(interaction.token);
    expect(fake.callsTo('/interactions/:id/:token/callback')[0]?.json).toEqual({ type: 5, data: { flags: EphemeralFlag } });
    const reply = fake.originalResponse(token)!;
    expect(reply.flags).toBe(EphemeralFlag);
    expect(reply.loading).toBe(false);
    expect(reply.content).toMatch(/slow engine|queue/i);
  });

  test('a fast error on a button is an ephemeral followup after the deferred update', async () => {
    const handler = handlerWith(slowService(0, []));
    const grid = fake.liveMessages()[0];
    expect(grid).toBeUndefined();
    const message = await (async () => {
      const sent = (await rest.post(Routes.channelMessages('6'), { body: { content: 'grid', components: [{ type: 1, components: [{ type: 2, style: 2, label: 'U1', custom_id: 'im1:u:abc:1' }] }] } })) as { id: string };
      return fake.messages.get(sent.id)!;
    })();
    const press = fake.buttonPress(message, 'im1:u:abc:1', { id: 'u3', guildId: '5' });
    await handler.handle(press as unknown as APIInteraction, respondVia(press));
    expect(fake.interactions.get(String(press.token))?.callbackType).toBe(CallbackKind.DeferredUpdateMessage);
    const note = fake.liveMessages().find((candidate) => candidate.flags === EphemeralFlag);
    expect(note?.content).toMatch(/over the limit/);
  });
});

describe('requesterOf, flattenOptions, allowListRefusal', () => {
  const base = { id: '1', application_id: 'a', token: 't', version: 1, type: 2, locale: 'en-US', entitlements: [] };

  test('a guild member: nick, admin by permission bits or ADMIN_USERS', () => {
    const member = (permissions: string) =>
      ({ ...base, guild_id: 'g', channel: { id: 'c', type: 0 }, channel_id: 'c', member: { user: { id: 'u', username: 'name', global_name: 'Global' }, nick: 'Nick', permissions, roles: [] } }) as unknown as APIInteraction;
    expect(requesterOf(member('0'))).toEqual({ platform: 'discord', userId: 'u', displayName: 'Nick', isAdmin: false, channelId: 'c', guildId: 'g' });
    expect(requesterOf(member('8')).isAdmin).toBe(true);
    expect(requesterOf(member('32')).isAdmin).toBe(true);
    expect(requesterOf(member('2048')).isAdmin).toBe(false);
    expect(requesterOf(member('0'), ['discord:u']).isAdmin).toBe(true);
    expect(requesterOf(member('0'), ['slack:u']).isAdmin).toBe(false);
  });

  test('a DM user has no guild', () => {
    const dm = { ...base, channel: { id: 'dm', type: 1 }, user: { id: 'u', username: 'name', global_name: null } } as unknown as APIInteraction;
    expect(requesterOf(dm)).toEqual({ platform: 'discord', userId: 'u', displayName: 'name', isAdmin: false, channelId: 'dm' });
  });

  test('options flatten, subcommands become the action', () => {
    expect(flattenOptions([{ name: 'prompt', type: 3, value: 'x' }, { name: 'seed', type: 4, value: 3 }])).toEqual({ prompt: 'x', seed: 3 });
    expect(flattenOptions([{ name: 'set-limit', type: 1, options: [{ name: 'value', type: 4, value: 5 }] }])).toEqual({ action: 'set-limit', value: 5 });
    expect(flattenOptions(undefined)).toEqual({});
  });

  test('allow-lists: guilds, channels, DMs and admins', () => {
    const config = { discordGuilds: ['g1'], discordChannels: ['c1'] };
    expect(allowListRefusal({ platform: 'discord', userId: 'u', guildId: 'g1', channelId: 'c1' }, config)).toBeUndefined();
    expect(allowListRefusal({ platform: 'discord', userId: 'u', guildId: 'g2', channelId: 'c1' }, config)).toMatch(/server/);
    expect(allowListRefusal({ platform: 'discord', userId: 'u', guildId: 'g1', channelId: 'c2' }, config)).toMatch(/channel/);
    expect(allowListRefusal({ platform: 'discord', userId: 'u', channelId: 'dm' }, config)).toBeUndefined();
    expect(allowListRefusal({ platform: 'discord', userId: 'u', guildId: 'g2', isAdmin: true }, config)).toBeUndefined();
    expect(allowListRefusal({ platform: 'discord', userId: 'u', guildId: 'g2' }, { discordGuilds: [], discordChannels: [] })).toBeUndefined();
  });
});
