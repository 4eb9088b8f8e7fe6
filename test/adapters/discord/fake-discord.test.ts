/**
 * The fake Discord itself: the real discord.js client and @discordjs/rest must work against it
 * the way they work against Discord, or the adapter's scenarios prove nothing.
 */
import { createPublicKey, verify } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, Events, GatewayIntentBits, REST, Routes, type GatewayDispatchPayload } from 'discord.js';
import { FakeDiscord, routeOf } from '../../fakes/fake-discord/fake-discord.js';

describe('FakeDiscord', () => {
  let fake: FakeDiscord;

  beforeEach(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 200 });
  });

  afterEach(async () => {
    await fake.close();
  });

  test('a discord.js Client logs in through DISCORD_API_URL, heartbeats and receives INTERACTION_CREATE', async () => {
    const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
    const raw: GatewayDispatchPayload[] = [];
    client.on(Events.Raw, (packet: GatewayDispatchPayload) => raw.push(packet));
    try {
      const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
      await client.login(fake.token);
      await ready;
      expect(fake.callsTo('/gateway/bot', 'GET')).toHaveLength(1);
      expect(fake.callsTo('/gateway/bot')[0]?.auth).toBe('Bot');
      expect(fake.identifies).toEqual([{ token: fake.token, intents: GatewayIntentBits.Guilds }]);
      expect(client.user?.id).toBe(fake.botUser.id);

      await fake.waitFor(() => (fake.gatewayOps.get(1) ?? 0) >= 2, 'two heartbeats');

      const interaction = fake.slashCommand('imagine', [{ name: 'prompt', type: 3, value: 'a red cube' }], { id: '42', guildId: '7' });
      fake.dispatchInteraction(interaction);
      await fake.waitFor(() => raw.find((packet) => packet.t === 'INTERACTION_CREATE'), 'the dispatch');
      const received = raw.find((packet) => packet.t === 'INTERACTION_CREATE');
      expect((received?.d as { token: string }).token).toBe(interaction.token);
    } finally {
      await client.destroy();
    }
  });

  test('a wrong token is refused at GET /gateway/bot', async () => {
    const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
    try {
      await expect(client.login('not-the-token')).rejects.toThrow();
      expect(fake.identifies).toHaveLength(0);
    } finally {
      await client.destroy();
    }
  });

  test('records multipart uploads, follows deferred responses and expires tokens with 50027', async () => {
    const rest = new REST({ api: fake.apiUrl }).setToken(fake.token);
    const interaction = fake.slashCommand('imagine', [], { id: '42', guildId: '7', channelId: '99' });
    const token = String(interaction.token);
    await rest.post(Routes.interactionCallback(String(interaction.id), token), { body: { type: 5 }, auth: false });
    expect(fake.originalResponse(token)?.loading).toBe(true);

    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    await rest.patch(Routes.webhookMessage(fake.applicationId, token, '@original'), {
      body: { content: 'done', attachments: [{ id: 0, filename: 'grid.png' }], components: [{ type: 1, components: [{ type: 2, style: 1, label: 'U1', custom_id: 'x' }] }] },
      files: [{ name: 'grid.png', data: png, contentType: 'image/png' }],
      auth: false,
    });
    const message = fake.originalResponse(token);
    expect(message?.loading).toBe(false);
    expect(message?.content).toBe('done');
    expect(message?.attachments[0]?.filename).toBe('grid.png');
    expect(message?.attachments[0]?.data.equals(png)).toBe(true);
    const patch = fake.callsTo('/webhooks/:app/:token/messages/@original', 'PATCH')[0];
    expect(patch?.files[0]?.field).toBe('files[0]');
    expect(patch?.auth).toBeUndefined();

    fake.expireToken(token);
    await expect(rest.patch(Routes.webhookMessage(fake.applicationId, token, '@original'), { body: { content: 'late' }, auth: false })).rejects.toMatchObject({
      code: 50027,
      status: 401,
    });
    // The bot token still works for channel messages after the interaction token expired.
    const sent = (await rest.post(Routes.channelMessages('99'), { body: { content: 'late result' } })) as { id: string; channel_id: string };
    expect(sent.channel_id).toBe('99');
    expect(fake.messages.get(sent.id)?.source).toEqual({ kind: 'bot' });
  });

  test('enforces custom_id length, buttons per row and the upload limit', async () => {
    const rest = new REST({ api: fake.apiUrl, retries: 0 }).setToken(fake.token);
    const row = (count: number, idLength = 5): unknown => ({
      type: 1,
      components: Array.from({ length: count }, (_, index) => ({ type: 2, style: 2, label: `B${index}`, custom_id: `${index}`.padEnd(idLength, 'x') })),
    });
    await expect(rest.post(Routes.channelMessages('1'), { body: { content: 'x', components: [row(6)] } })).rejects.toMatchObject({ code: 50035 });
    await expect(rest.post(Routes.channelMessages('1'), { body: { content: 'x', components: [row(1, 101)] } })).rejects.toMatchObject({ code: 50035 });
    await rest.post(Routes.channelMessages('1'), { body: { content: 'x', components: [row(5, 100)] } });

    const interaction = fake.slashCommand('imagine', [], { id: '42', attachmentSizeLimit: 1024 });
    const token = String(interaction.token);
    await rest.post(Routes.interactionCallback(String(interaction.id), token), { body: { type: 5 }, auth: false });
    await expect(
      rest.patch(Routes.webhookMessage(fake.applicationId, token, '@original'), { body: {}, files: [{ name: 'big.png', data: Buffer.alloc(2048) }], auth: false }),
    ).rejects.toMatchObject({ status: 413 });
    expect(interaction.attachment_size_limit).toBe(1024);
    expect(interaction.user).toMatchObject({ id: '42' });
    expect(interaction.guild_id).toBeUndefined();
  });

  test('signs HTTP interactions with a key whose public half verifies them', async () => {
    const seen: Array<{ ok: boolean; body: string }> = [];
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(fake.publicKey, 'hex').toString('base64url') }, format: 'jwk' });
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const signature = String(request.headers['x-signature-ed25519'] ?? '');
        const timestamp = String(request.headers['x-signature-timestamp'] ?? '');
        const ok = signature.length === 128 && verify(null, Buffer.from(timestamp + body), key, Buffer.from(signature, 'hex'));
        seen.push({ ok, body });
        response.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
        response.end(ok ? JSON.stringify({ type: 1 }) : '{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/interactions`;
    try {
      expect((await fake.postInteraction(url, fake.ping(), 'valid')).status).toBe(200);
      expect((await fake.postInteraction(url, fake.ping(), 'bad')).status).toBe(401);
      expect((await fake.postInteraction(url, fake.ping(), 'missing')).status).toBe(401);
      expect(seen.map((entry) => entry.ok)).toEqual([true, false, false]);
    } finally {
      server.close();
    }
  });

  test('routeOf hides ids and tokens', () => {
    expect(routeOf('/webhooks/1/abc/messages/@original')).toBe('/webhooks/:app/:token/messages/@original');
    expect(routeOf('/interactions/5/tok/callback')).toBe('/interactions/:id/:token/callback');
    expect(routeOf('/channels/9/messages')).toBe('/channels/:channel/messages');
    expect(routeOf('/applications/1/guilds/2/commands')).toBe('/applications/:app/guilds/:guild/commands');
  });
});
