/**
 * The Slack adapter (@slack/bolt): `/imagine <prompt with flags>`, `/imagine help|info|settings…`,
 * and the U1–U4 / V1–V4 / 🔄 buttons, over HTTP (signed requests to /slack/events) or Socket Mode.
 * Every interaction is acknowledged first and worked on after; commands and buttons are shared
 * with the other platforms through commands/dispatch.ts.
 */
import { App, HTTPReceiver, LogLevel, SocketModeReceiver, webApi, type BlockAction, type ButtonAction, type Logger as BoltLogger, type SlashCommand } from '@slack/bolt';
import type { AddressInfo } from 'node:net';
import { commandSettingsFor, routeTextCommand, runButton, runCommand, type CommandReply, type CommandSettings } from '../../commands/dispatch.js';
import type { Config } from '../../src/config/config.js';
import { settings as configSettings } from '../../src/config/config.js';
import { ConfigError, redactSecrets, registerSecret, toUserMessage } from '../../src/errors.js';
import type { Logger } from '../../src/logger.js';
import type { GenerationService, OrphanDelivery, Requester } from '../../src/service/types.js';
import { SlackJobDelivery, slackErrorCode, slackOrphanDelivery, tellUser, type SlackDeliveryContext, type SlackTarget } from './delivery.js';

/** The adapter's defaults, in one place. */
export const slackDefaults = {
  /** Bolt's default request path in HTTP mode. */
  endpoint: '/slack/events',
  /** At most one progress edit of a status message per this many milliseconds. */
  progressIntervalMs: 2000,
  /** Web API retries: 429s wait for Retry-After, other failures back off, for about a minute in all. */
  retryConfig: { retries: 6, factor: 2, minTimeout: 500, maxTimeout: 20_000, randomize: true } satisfies webApi.RetryOptions,
  /** A Web API call that takes longer is abandoned (and retried). */
  requestTimeoutMs: 60_000,
} as const;

/** What {@link startSlack} needs. */
export interface SlackAdapterOptions {
  config: Config;
  service: GenerationService;
  logger: Logger;
  /** Settings of the shared commands; built from `config` when absent. Replies are always Slack mrkdwn. */
  commandSettings?: CommandSettings;
  /** Overrides {@link slackDefaults.progressIntervalMs}. */
  progressIntervalMs?: number;
  /** Overrides {@link slackDefaults.retryConfig} (tests use short back-offs). */
  retryConfig?: webApi.RetryOptions;
  /** Milliseconds now; `Date.now` by default. */
  now?: () => number;
}

/** A running Slack adapter. */
export interface SlackAdapter {
  readonly mode: 'http' | 'socket';
  /** The port /slack/events listens on (HTTP mode). */
  readonly port: number | undefined;
  /** Shows jobs whose bot process is gone (QUEUE=redis), with the bot token; main.ts registers it with the service. */
  readonly orphanDelivery: OrphanDelivery;
  /** Stops receiving (closes the HTTP server or the socket). Jobs already admitted still deliver. */
  close(): Promise<void>;
}

/**
 * Starts the Slack adapter: checks the bot token with auth.test, then listens on SLACK_PORT
 * (HTTP mode, signature-verified) or connects with the app token (Socket Mode).
 */
export async function startSlack(options: SlackAdapterOptions): Promise<SlackAdapter> {
  const { config, service, logger } = options;
  const token = config.slackBotToken;
  if (!token) throw new ConfigError(configSettings.slackBotToken.variable, configSettings.slackBotToken.accepted, 'is not set', 'slackBotToken');
  registerSecret(token);
  registerSecret(config.slackSigningSecret);
  registerSecret(config.slackAppToken);
  const boltLogger = bridgeLogger(logger);
  const clientOptions: webApi.WebClientOptions = {
    logger: boltLogger,
    retryConfig: options.retryConfig ?? { ...slackDefaults.retryConfig },
    timeout: slackDefaults.requestTimeoutMs,
    ...(config.slackApiUrl ? { slackApiUrl: withSlash(config.slackApiUrl) } : {}),
  };

  const identity = await checkBotToken(new webApi.WebClient(token, clientOptions));

  let receiver: HTTPReceiver | SocketModeReceiver;
  if (config.slackMode === 'socket') {
    if (!config.slackAppToken) throw new ConfigError(configSettings.slackAppToken.variable, configSettings.slackAppToken.accepted, 'is required when SLACK_MODE=socket', 'slackAppToken');
    // The Socket Mode client makes its own WebClient for apps.connections.open from these options.
    receiver = new SocketModeReceiver({ appToken: config.slackAppToken, logger: boltLogger, installerOptions: { clientOptions: { ...clientOptions } } });
  } else {
    if (!config.slackSigningSecret) throw new ConfigError(configSettings.slackSigningSecret.variable, configSettings.slackSigningSecret.accepted, 'is required when SLACK_MODE=http', 'slackSigningSecret');
    receiver = new HTTPReceiver({ signingSecret: config.slackSigningSecret, endpoints: slackDefaults.endpoint, port: config.slackPort, logger: boltLogger, processBeforeResponse: false });
  }

  const app = new App({
    token,
    botId: identity.botId,
    botUserId: identity.botUserId,
    tokenVerificationEnabled: false,
    receiver,
    logger: boltLogger,
    clientOptions,
  });

  const apiOrigin = config.slackApiUrl ? new URL(config.slackApiUrl).origin : undefined;
  const deliveryContext: SlackDeliveryContext = {
    client: app.client,
    service,
    logger,
    progressIntervalMs: options.progressIntervalMs ?? slackDefaults.progressIntervalMs,
    now: options.now ?? Date.now,
    isTrustedResponseUrl: (url) => {
      try {
        const parsed = new URL(url);
        return (parsed.protocol === 'https:' && parsed.hostname === 'hooks.slack.com') || parsed.origin === apiOrigin;
      } catch {
        return false;
      }
    },
  };
  const commandSettings: CommandSettings = {
    ...(options.commandSettings ?? commandSettingsFor(config)),
    format: 'mrkdwn',
    onError: (error, where) => logger.error({ err: error, where, platform: 'slack' }, 'a command failed'),
  };
  const admins = new Set(config.admins);
  const requesterOf = (userId: string, displayName: string | undefined, channelId: string, teamId: string | undefined): Requester => ({
    platform: 'slack',
    userId,
    ...(displayName ? { displayName } : {}),
    isAdmin: admins.has(`slack:${userId}`),
    channelId,
    ...(teamId ? { guildId: teamId } : {}),
  });

  /** Shows a command's reply, then lets the job's own messages follow. */
  const showReply = async (reply: CommandReply, target: SlackTarget, delivery: SlackJobDelivery): Promise<void> => {
    try {
      if (reply.kind === 'message' && !reply.ephemeral) {
        try {
          await app.client.chat.postMessage({ channel: target.channelId, text: reply.text, ...(target.threadTs ? { thread_ts: target.threadTs } : {}) });
          return;
        } catch (error) {
          logger.warn({ err: error, slackError: slackErrorCode(error) }, 'could not post a reply in the channel; sending it to the user only');
        }
      }
      await tellUser(deliveryContext, target, reply.text);
    } finally {
      delivery.open();
    }
  };

  // Any slash command routed to this app is ours, whatever name the workspace gave it.
  app.command(/^\/.+$/, async ({ command, ack }) => {
    await ack();
    await handleCommand(command);
  });

  const handleCommand = async (command: SlashCommand): Promise<void> => {
    const target: SlackTarget = { channelId: command.channel_id, userId: command.user_id, responseUrl: command.response_url, ...threadOf(command.thread_ts, undefined) };
    const requester = requesterOf(command.user_id, command.user_name, command.channel_id, command.team_id);
    const delivery = new SlackJobDelivery(target, deliveryContext, (job) => service.cancel(requester, job.id));
    try {
      const text = String(command.text ?? '');
      const routed = text.trim() === '' ? { name: 'help', options: {} } : routeTextCommand(text);
      const reply = await runCommand({ service, requester, listener: delivery, settings: commandSettings }, routed.name, routed.options);
      await showReply(reply, target, delivery);
    } catch (error) {
      delivery.open();
      logger.error({ err: error }, 'handling a Slack command failed');
      await tellUser(deliveryContext, target, toUserMessage(error));
    }
  };

  // Every button press is checked here, so a forged or unknown id gets an answer, not silence.
  app.action({ type: 'block_actions' }, async ({ ack, body, action }) => {
    await ack();
    if (action.type !== 'button') return;
    await handleButton(body as BlockAction, action as ButtonAction);
  });

  const handleButton = async (body: BlockAction, action: ButtonAction): Promise<void> => {
    const container = body.container as { channel_id?: unknown; message_ts?: unknown; thread_ts?: unknown };
    const channelId = body.channel?.id ?? (typeof container.channel_id === 'string' ? container.channel_id : undefined);
    if (!channelId) {
      logger.warn({ user: body.user.id }, 'a Slack button press without a channel was ignored');
      return;
    }
    const messageTs = body.message?.ts ?? (typeof container.message_ts === 'string' ? container.message_ts : undefined);
    const threadTs = (typeof container.thread_ts === 'string' ? container.thread_ts : undefined) ?? (typeof body.message?.thread_ts === 'string' ? (body.message.thread_ts as string) : undefined);
    const target: SlackTarget = { channelId, userId: body.user.id, responseUrl: body.response_url, ...threadOf(threadTs, messageTs) };
    const requester = requesterOf(body.user.id, body.user.username ?? body.user.name, channelId, body.team?.id ?? body.user.team_id);
    const delivery = new SlackJobDelivery(target, deliveryContext, (job) => service.cancel(requester, job.id));
    try {
      // action_id and value carry the same id; if they disagree someone made the payload up, and
      // the empty id is refused like any invalid one.
      const customId = action.value === undefined || action.value === action.action_id ? action.action_id : '';
      const reply = await runButton({ service, requester, listener: delivery, settings: commandSettings }, customId);
      await showReply(reply, target, delivery);
    } catch (error) {
      delivery.open();
      logger.error({ err: error }, 'handling a Slack button failed');
      await tellUser(deliveryContext, target, toUserMessage(error));
    }
  };

  app.error(async (error) => {
    logger.error({ err: error, platform: 'slack' }, 'Slack app error');
  });

  let port: number | undefined;
  if (receiver instanceof HTTPReceiver) {
    const server = await receiver.start(config.slackPort);
    port = (server.address() as AddressInfo).port;
    logger.info({ port, path: slackDefaults.endpoint, bot: identity.botUserId }, 'Slack adapter listening (HTTP mode)');
  } else {
    try {
      await receiver.start();
    } catch (error) {
      throw slackErrorCode(error) === 'invalid_auth' || slackErrorCode(error) === 'not_allowed_token_type'
        ? new ConfigError(configSettings.slackAppToken.variable, configSettings.slackAppToken.accepted, `was refused by Slack (${slackErrorCode(error)})`, 'slackAppToken')
        : error;
    }
    logger.info({ bot: identity.botUserId }, 'Slack adapter connected (Socket Mode)');
  }

  let closed = false;
  return {
    mode: config.slackMode,
    port,
    orphanDelivery: slackOrphanDelivery(deliveryContext),
    async close() {
      if (closed) return;
      closed = true;
      await receiver.stop();
    },
  };
}

/** auth.test: the bot's ids, or a ConfigError naming SLACK_BOT_TOKEN when Slack refuses it. */
async function checkBotToken(client: webApi.WebClient): Promise<{ botId: string; botUserId: string }> {
  try {
    const result = await client.auth.test();
    return { botId: String(result.bot_id ?? ''), botUserId: String(result.user_id ?? '') };
  } catch (error) {
    const code = slackErrorCode(error);
    if (code) throw new ConfigError(configSettings.slackBotToken.variable, configSettings.slackBotToken.accepted, `was refused by Slack (${code})`, 'slackBotToken');
    throw error;
  }
}

/** A thread to answer in, unless `threadTs` is the message itself (a thread's parent). */
function threadOf(threadTs: unknown, messageTs: string | undefined): { threadTs?: string } {
  return typeof threadTs === 'string' && threadTs !== '' && threadTs !== messageTs ? { threadTs } : {};
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** Routes Bolt's and the Web API's logs into the project's logger, with secrets masked. */
function bridgeLogger(logger: Logger): BoltLogger {
  const text = (messages: unknown[]): string => redactSecrets(messages.map((message) => (message instanceof Error ? message.message : typeof message === 'string' ? message : JSON.stringify(message))).join(' '));
  const levels: Record<string, LogLevel> = { trace: LogLevel.DEBUG, debug: LogLevel.DEBUG, info: LogLevel.INFO, warn: LogLevel.WARN };
  return {
    debug: (...messages) => logger.debug({ component: 'slack' }, text(messages)),
    info: (...messages) => logger.info({ component: 'slack' }, text(messages)),
    warn: (...messages) => logger.warn({ component: 'slack' }, text(messages)),
    error: (...messages) => logger.error({ component: 'slack' }, text(messages)),
    setLevel: () => undefined,
    getLevel: () => levels[logger.level] ?? LogLevel.ERROR,
    setName: () => undefined,
  };
}
