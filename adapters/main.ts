/**
 * Start-up: configuration → logger → web server (/healthz answers 503 until ready) → engine →
 * generation service → the configured platform adapters, or the web playground when none is.
 * Each adapter's orphan delivery is registered with the service, so that in QUEUE=redis this bot
 * shows the jobs of bot processes that died.
 * SIGINT/SIGTERM shut down gracefully; a configuration error prints its message and exits 1.
 */
import path from 'node:path';
import { loadConfig, type Config, type ConfigOptions } from '../src/config/config.js';
import type { ImageEngine } from '../src/engine/engine.js';
import { createHttpServer, healthAndMetrics, type HttpServerHandle } from '../src/http/server.js';
import { serviceHealth, serviceMetrics } from '../src/http/service-probes.js';
import { createLogger, type Logger } from '../src/logger.js';
import { isEntryPoint, runUntilSignalled } from '../src/process-lifecycle.js';
import { createGenerationService, type RunningGenerationService } from '../src/service/generation-service.js';
import type { LimitControls } from '../src/service/limits.js';
import type { CommandSettings } from '../commands/dispatch.js';

/** Something started that must be stopped on shutdown. */
interface Stoppable {
  name: string;
  close(): Promise<void>;
}

/** Options of {@link start}; everything defaults to the real thing. */
export interface StartOptions {
  /** Explicit settings; each beats its environment variable. */
  config?: ConfigOptions;
  env?: NodeJS.ProcessEnv;
  /** The .env file to read, or false for none. Default `./.env`. */
  dotenvPath?: string | false;
  logger?: Logger;
  /** Builds the engine; default `createEngine` from src/engine/factory.ts (in a worker thread). */
  createEngine?: (config: Config) => Promise<ImageEngine>;
  /** Builds the in-process service (QUEUE=memory); default `createGenerationService`. */
  createService?: (options: { config: Config; engine: ImageEngine; logger: Logger }) => Promise<RunningGenerationService>;
}

/** A running Imagine. */
export interface RunningApp {
  config: Config;
  service: RunningGenerationService;
  engine: ImageEngine;
  /** The web server's address (/healthz, /metrics, and the playground when served). */
  url: string;
  /** Which adapters run, e.g. ['discord', 'playground']. */
  adapters: string[];
  /** The command settings every adapter shares (user defaults, channel lists, runtime limits). */
  commandSettings: CommandSettings;
  /** Graceful shutdown: adapters stop receiving, jobs finish within the grace period, all closes. */
  stop(): Promise<void>;
}

async function defaultEngine(config: Config): Promise<ImageEngine> {
  const { createEngine } = await import('../src/engine/factory.js');
  return createEngine(config);
}

/** Starts everything the configuration asks for. Throws ConfigError and ModelError as they are. */
export async function start(options: StartOptions = {}): Promise<RunningApp> {
  const config = loadConfig(options.config ?? {}, options.env ?? process.env, options.dotenvPath ?? path.resolve('.env'));
  const logger = options.logger ?? createLogger(config);
  const started: Stoppable[] = [];
  let service: RunningGenerationService | undefined;
  let engine: ImageEngine | undefined;
  let server: HttpServerHandle | undefined;
  let limitControls: LimitControls | undefined;
  const stopAll = async (): Promise<void> => {
    // Adapters first (they stop receiving), then the service drains, then the engine and server.
    for (const item of [...started].reverse()) {
      await item.close().catch((error: unknown) => logger.warn({ err: error, part: item.name }, 'stopping failed'));
    }
    await service?.shutdown().catch((error: unknown) => logger.warn({ err: error }, 'service shutdown failed'));
    await engine?.close().catch((error: unknown) => logger.warn({ err: error }, 'engine close failed'));
    await server?.close();
  };
  try {
    // The web server comes first so that /healthz answers (503) while the model loads.
    server = await createHttpServer({
      host: config.host,
      port: config.port,
      logger,
      handlers: [healthAndMetrics({ health: serviceHealth(() => service), metrics: serviceMetrics(() => service) })],
    });
    logger.info({ model: config.model, slots: config.gpuSlots }, 'loading the model');
    if (config.queue === 'redis') {
      // Bots load no model: GPU workers (`npm run worker`) run the jobs and publish the engine's capabilities.
      const { createRedisGenerationService } = await import('../src/service/redis/redis-service.js');
      const shared = await createRedisGenerationService({ config, logger });
      service = shared;
      engine = shared.engine;
      // Limit changes live in Redis, so that every bot process enforces them.
      limitControls = shared;
    } else {
      engine = await (options.createEngine ?? defaultEngine)(config);
      service = await (options.createService ?? createGenerationService)({ config, engine, logger });
    }
    logger.info({ engine: engine.capabilities.name, store: service.store.kind }, 'generation service ready');

    // One set of command settings (user defaults, channel lists, runtime limits) for every adapter.
    const { openCommandSettings } = await import('../commands/command-settings.js');
    const commandSettings = await openCommandSettings({ config, capabilities: engine.capabilities, logger, ...(limitControls ? { limitControls } : {}) });
    started.push({ name: 'command settings', close: () => commandSettings.close() });

    const adapters: string[] = [];
    if (config.discordToken) {
      const { startDiscord } = await import('./discord/index.js');
      // With QUEUE=redis, a request replayed to another bot process is refused there too.
      const replaySightings = service.sightings?.('discord-replay');
      const discord = await startDiscord({ config, service, logger, commandSettings, ...(replaySightings ? { replaySightings } : {}) });
      started.push({ name: 'discord', close: async () => {
        await discord.close();
      } });
      service.registerOrphanDelivery?.(discord.orphanDelivery);
      adapters.push('discord');
    }
    if (config.slackBotToken) {
      const { startSlack } = await import('./slack/index.js');
      const slack = await startSlack({ config, service, logger, commandSettings });
      started.push({ name: 'slack', close: () => slack.close() });
      service.registerOrphanDelivery?.(slack.orphanDelivery);
      adapters.push('slack');
    }
    // Mounted on the running server in every mode; the page only when asked (or with no platform).
    const playground = await import('./playground/index.js');
    const servePage = playground.shouldServePlayground(config);
    const running = await playground.startPlayground({ config, service, logger, servePage, server, capabilities: engine.capabilities, settings: commandSettings });
    started.push({ name: 'playground', close: () => running.close() });
    service.registerOrphanDelivery?.(playground.playgroundOrphanDelivery);
    if (servePage) adapters.push('playground');
    logger.info({ url: server.url, adapters }, adapters.includes('playground') ? `Imagine is ready: open ${server.url}` : 'Imagine is ready');

    const finalService = service;
    const finalEngine = engine;
    let stopping: Promise<void> | undefined;
    return {
      config,
      service: finalService,
      engine: finalEngine,
      url: server.url,
      adapters,
      commandSettings,
      stop: () => (stopping ??= stopAll()),
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}


/** The process entry: starts, wires signals, and sets the exit code. */
export async function main(): Promise<void> {
  await runUntilSignalled(() => start(), {
    stopping: (signal, app) =>
      app.config.queue === 'redis' && app.config.shutdownHandover === 'on'
        ? `Received ${signal}; leaving jobs to the next bot, finishing those it could not post (up to ${app.config.shutdownGraceSeconds} s). Press Ctrl+C again to exit now.`
        : `Received ${signal}; finishing running jobs (up to ${app.config.shutdownGraceSeconds} s). Press Ctrl+C again to exit now.`,
    exitingNow: (signal) => `Received ${signal} again; exiting now.`,
  });
}

if (isEntryPoint(import.meta.url)) {
  void main();
}
