/**
 * The web playground: a local chat page on the same service, commands and model as the bots.
 *
 * Exports for adapters/main.ts:
 * - {@link startPlayground}`({ config, service, logger, servePage })` → `{ url, server, close() }`.
 *   Starts the web server on `config.host`:`config.port` with GET /healthz and GET /metrics, and
 *   the page when `servePage` is true. Pass `server` (from `createHttpServer` in src/http/) to
 *   mount on a server that is already listening, e.g. one started before the model loaded so that
 *   /healthz answers 503 meanwhile.
 * - {@link shouldServePlayground}`(config)`: PLAYGROUND=on/off, or auto = only without platform tokens.
 *
 * In every mode main.ts can call `startPlayground({ ..., servePage: shouldServePlayground(config) })`:
 * /healthz and /metrics are then served on PORT whether or not the page is.
 */
import type { Config } from '../../src/config/config.js';
import type { EngineCapabilities } from '../../src/engine/engine.js';
import { createHttpServer, healthAndMetrics, type HttpLogger, type HttpServerHandle } from '../../src/http/server.js';
import { serviceHealth, serviceMetrics, type ObservableService } from '../../src/http/service-probes.js';
import type { OrphanDelivery } from '../../src/service/types.js';
import { commandSettingsFor, type CommandSettings } from '../../commands/dispatch.js';
import { createPlaygroundRoutes, type PlaygroundService } from './routes.js';

export { createPlaygroundRoutes, playgroundRequester, publicFolder } from './routes.js';
export type { PlaygroundReply, PlaygroundRoutes, PlaygroundRoutesOptions, PlaygroundService } from './routes.js';
export { parseTypedCommand } from './input.js';
export type { JobView, ButtonView } from './job-view.js';
export type { PlaygroundEvent } from './event-hub.js';

/** Options of {@link startPlayground}. */
export interface StartPlaygroundOptions {
  config: Pick<Config, 'host' | 'port' | 'blockedWords' | 'admins'> & Partial<Pick<Config, 'playgroundPassword'>>;
  service: PlaygroundService & ObservableService;
  logger?: HttpLogger;
  /** Serve the page and its API; false serves only /healthz and /metrics. */
  servePage: boolean;
  /** Mount on this server instead of starting one (it then keeps its own /healthz and /metrics). */
  server?: HttpServerHandle;
  /** The engine's sizes and limits, so prompts are checked against them. */
  capabilities?: Pick<EngineCapabilities, 'sizes' | 'limits'>;
  /** More settings for commands (a user settings store, channel policy, limit controls). */
  settings?: CommandSettings;
  /** How long a wrong playground password waits for its answer (tests shorten it). */
  wrongPasswordDelayMs?: number;
}

/** A running playground. */
export interface RunningPlayground {
  /** Where the page (or /healthz) is, e.g. `http://127.0.0.1:3000`. */
  url: string;
  server: HttpServerHandle;
  /** Ends event streams, and stops the server when this call started it. */
  close(): Promise<void>;
}

/**
 * Jobs of the playground whose bot process is gone (QUEUE=redis) cannot be shown: the page that
 * asked was listening to that process. Registering this tells the service so, and the page can
 * still load the job (GET /jobs/<id>) from its stored record.
 */
export const playgroundOrphanDelivery: OrphanDelivery = {
  platform: 'playground',
  listenerFor: () => undefined,
};

/** Whether `npm start` should serve the page: PLAYGROUND=on/off, or auto = no platform configured. */
export function shouldServePlayground(config: Pick<Config, 'playground' | 'discordToken' | 'slackBotToken'>): boolean {
  if (config.playground === 'on') return true;
  if (config.playground === 'off') return false;
  return !config.discordToken && !config.slackBotToken;
}

/** Starts (or mounts) the playground and the health and metrics endpoints. */
export async function startPlayground(options: StartPlaygroundOptions): Promise<RunningPlayground> {
  const { service, logger } = options;
  const ownsServer = options.server === undefined;
  const server = options.server ?? (await createHttpServer({
    host: options.config.host,
    port: options.config.port,
    ...(logger ? { logger } : {}),
    handlers: [healthAndMetrics({ health: serviceHealth(() => service), metrics: serviceMetrics(() => service) })],
  }));
  let routes: Awaited<ReturnType<typeof createPlaygroundRoutes>> | undefined;
  if (options.servePage) {
    routes = await createPlaygroundRoutes({
      service,
      settings: commandSettingsFor(options.config, options.capabilities, options.settings),
      ...(logger ? { logger } : {}),
      ...(options.config.playgroundPassword ? { password: options.config.playgroundPassword } : {}),
      ...(options.wrongPasswordDelayMs === undefined ? {} : { wrongPasswordDelayMs: options.wrongPasswordDelayMs }),
    });
    server.use(routes.handler);
    logger?.info({ url: server.url }, 'playground ready');
    if (!isLoopback(options.config.host) && !options.config.playgroundPassword) {
      logger?.warn({ host: options.config.host }, 'the playground has no sign-in: everyone who can reach this address acts as its one local user (set PLAYGROUND_PASSWORD)');
    }
  }
  let closed: Promise<void> | undefined;
  return {
    url: server.url,
    server,
    close() {
      closed ??= (async () => {
        routes?.close();
        if (ownsServer) await server.close();
      })();
      return closed;
    },
  };
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}
