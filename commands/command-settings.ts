/**
 * Production {@link CommandSettings}: persistent user settings, channel lists and runtime limit
 * changes in the configured backend (or the service's own limit controls, which QUEUE=redis
 * shares between bot processes), engine sizes and limits, and internal errors logged. main.ts
 * builds this once and hands it to every adapter.
 */
import type { Config } from '../src/config/config.js';
import type { EngineCapabilities } from '../src/engine/engine.js';
import type { LimitControls } from '../src/service/limits.js';
import { configLimitControls, createChannelPolicy, openStoredLimitControls } from './admin.js';
import { commandSettingsFor, type CommandSettings } from './dispatch.js';
import { compileBlockList } from './parse-prompt.js';
import { createUserSettingsStore, openCommandKeyv, openUserSettingsStore } from './user-settings.js';

/** Opens the stores and returns settings with a `close()` that closes them. */
export async function openCommandSettings(options: {
  config: Config;
  capabilities?: Pick<EngineCapabilities, 'sizes' | 'limits'>;
  /** Told about errors that are not the user's. */
  logger?: { error(object: unknown, message?: string): void };
  /** Keep everything in memory (tests, the CLI). */
  inMemory?: boolean;
  /**
   * The service's runtime limits (RedisGenerationService: kept in Redis for every bot process).
   * Without it, changes go to the configuration object, saved in the configured backend.
   */
  limitControls?: LimitControls;
}): Promise<CommandSettings & { close(): Promise<void> }> {
  const { config } = options;
  // A bad /regex/ in BLOCKED_WORDS stops start-up here rather than failing every prompt.
  compileBlockList(config.blockedWords);
  const userSettings = options.inMemory ? createUserSettingsStore() : await openUserSettingsStore(config);
  const channelKeyv = options.inMemory ? undefined : await openCommandKeyv(config, 'channel-policy');
  const limitsKeyv = options.inMemory || options.limitControls ? undefined : await openCommandKeyv(config, 'limits');
  const limitControls = options.limitControls ?? (limitsKeyv ? await openStoredLimitControls(config, limitsKeyv) : configLimitControls(config));
  const settings = commandSettingsFor(config, options.capabilities, {
    userSettings,
    channels: createChannelPolicy(channelKeyv),
    limitControls,
    ...(options.logger ? { onError: (error: unknown, where: string) => options.logger!.error({ err: error, where }, 'command failed') } : {}),
  });
  return {
    ...settings,
    async close() {
      await userSettings.close();
      await channelKeyv?.disconnect().catch(() => undefined);
      await limitsKeyv?.disconnect().catch(() => undefined);
    },
  };
}
