/**
 * The Discord adapter. `startDiscord` connects the generation service to Discord in one of two
 * ways: the gateway (default; a discord.js Client with the Guilds intent only) or the HTTP
 * interactions endpoint (DISCORD_MODE=http). Both hand the same interaction JSON to one handler,
 * and all outbound calls go through @discordjs/rest with DISCORD_API_URL as its base.
 */
import { Client, Events, GatewayDispatchEvents, GatewayIntentBits, REST, Routes, type APIInteraction, type GatewayDispatchPayload } from 'discord.js';
import { commandSettingsFor, type CommandSettings } from '../../commands/dispatch.js';
import type { Config } from '../../src/config/config.js';
import { ConfigError, serializeError } from '../../src/errors.js';
import type { Logger } from '../../src/logger.js';
import type { FirstSightings } from '../../src/service/first-sightings.js';
import type { GenerationService, OrphanDelivery } from '../../src/service/types.js';
import { startInteractionsEndpoint } from './http-endpoint.js';
import { createInteractionHandler, type InteractionHandler } from './interactions.js';
import { discordOrphanDelivery, type DeliveryTimers, type DeliveryTiming } from './job-delivery.js';

export { registrationBody, actionRows } from './components.js';
export { createInteractionHandler, requesterOf, flattenOptions, allowListRefusal } from './interactions.js';
export { JobDelivery, discordOrphanDelivery } from './job-delivery.js';
export { verifySignature, publicKeyFromHex } from './http-endpoint.js';

export interface StartDiscordOptions {
  config: Config;
  service: GenerationService;
  logger: Logger;
  /** Defaults to {@link commandSettingsFor}(config). */
  commandSettings?: CommandSettings;
  /** Progress-edit interval and token lifetime; Discord-safe defaults. */
  timing?: Partial<DeliveryTiming>;
  /** Time sources (tests). */
  timers?: DeliveryTimers;
  /** How long admission may take before a command is acknowledged as deferred anyway. Default 1500. */
  ackDeadlineMs?: number;
  /** Milliseconds to wait for the gateway's READY before giving up. Default 30 000. */
  readyTimeoutMs?: number;
  /** HTTP mode: where request signatures are remembered against replays; shared by every bot with QUEUE=redis. Default: this process's memory. */
  replaySightings?: FirstSightings;
}

/** A running Discord adapter. */
export interface DiscordAdapter {
  readonly mode: 'gateway' | 'http';
  /** HTTP mode: the endpoint's URL (…/interactions). */
  readonly interactionsUrl?: string;
  /** Resolves when every job started so far has been delivered. */
  idle(): Promise<void>;
  /** Shows jobs whose bot process is gone (QUEUE=redis), with the bot token; main.ts registers it with the service. */
  readonly orphanDelivery: OrphanDelivery;
  /** Disconnects; jobs still running are delivered through REST, which stays usable. */
  close(): Promise<void>;
}

/** REST options shared by both modes: DISCORD_API_URL is the base without the version. */
function restOptions(config: Config): { api?: string } {
  return config.discordApiUrl ? { api: config.discordApiUrl } : {};
}

/** Starts the Discord adapter in the configured mode. */
export async function startDiscord(options: StartDiscordOptions): Promise<DiscordAdapter> {
  const { config, service } = options;
  const logger = options.logger.child({ adapter: 'discord' });
  if (!config.discordToken) throw new ConfigError('DISCORD_TOKEN', 'a Discord bot token', 'is required to start the Discord adapter', 'discordToken');
  const commandSettings = options.commandSettings ?? commandSettingsFor(config);

  const handlerFor = (rest: REST): InteractionHandler =>
    createInteractionHandler({
      rest,
      config,
      service,
      logger,
      commandSettings,
      ...(options.timing ? { timing: options.timing } : {}),
      ...(options.timers ? { timers: options.timers } : {}),
      ...(options.ackDeadlineMs !== undefined ? { ackDeadlineMs: options.ackDeadlineMs } : {}),
    });

  if (config.discordMode === 'http') {
    if (!config.discordPublicKey) throw new ConfigError('DISCORD_PUBLIC_KEY', 'a hex Ed25519 public key', 'is required when DISCORD_MODE=http', 'discordPublicKey');
    const rest = new REST(restOptions(config)).setToken(config.discordToken);
    const handler = handlerFor(rest);
    const endpoint = await startInteractionsEndpoint({ publicKey: config.discordPublicKey, host: config.host, port: config.discordHttpPort, handler, logger, ...(options.replaySightings ? { sightings: options.replaySightings } : {}) });
    logger.info({ url: endpoint.url }, 'Discord interactions endpoint listening');
    return {
      mode: 'http',
      interactionsUrl: endpoint.url,
      idle: () => handler.idle(),
      orphanDelivery: discordOrphanDelivery({ rest, service, logger, ...(options.timers ? { timers: options.timers } : {}) }),
      close: () => endpoint.close(),
    };
  }

  // Outbound calls use their own REST client: Client.destroy() clears the client's token, and jobs
  // still running at shutdown must be able to post their results with it.
  const rest = new REST(restOptions(config)).setToken(config.discordToken);
  const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: restOptions(config) });
  const handler = handlerFor(rest);
  client.on(Events.Raw, (packet: GatewayDispatchPayload) => {
    if (packet.t !== GatewayDispatchEvents.InteractionCreate) return;
    const interaction = packet.d as APIInteraction;
    void handler.handle(interaction, async (response) => {
      await rest.post(Routes.interactionCallback(interaction.id, interaction.token), { body: response, auth: false });
    });
  });
  client.on(Events.Error, (error) => logger.error({ err: serializeError(error) }, 'Discord client error'));
  client.on(Events.ShardDisconnect, (event, shardId) => logger.warn({ code: event.code, shardId }, 'Discord gateway disconnected'));

  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Discord gateway did not become ready in time')), options.readyTimeoutMs ?? 30_000);
    client.once(Events.ClientReady, () => {
      clearTimeout(timer);
      resolve();
    });
  });
  try {
    await client.login(config.discordToken);
    await ready;
  } catch (error) {
    await client.destroy().catch(() => undefined);
    throw error;
  }
  logger.info({ user: client.user?.tag }, 'Discord gateway connected');
  return {
    mode: 'gateway',
    idle: () => handler.idle(),
    orphanDelivery: discordOrphanDelivery({ rest, service, logger, ...(options.timers ? { timers: options.timers } : {}) }),
    async close() {
      await client.destroy();
    },
  };
}
