/**
 * Runs the real Discord adapter (gateway or HTTP mode) against the fake Discord, with the real
 * generation service on a FakeEngine and a temporary DATA_DIR, and drives it as Discord would.
 * {@link DiscordHarness} implements the shared scenarios' {@link PlatformDriver}.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startDiscord, type DiscordAdapter } from '../../../adapters/discord/index.js';
import { openCommandSettings } from '../../../commands/command-settings.js';
import { loadConfig, type Config, type ConfigOptions } from '../../../src/config/config.js';
import { createLogger, silentLogger, type Logger } from '../../../src/logger.js';
import { createGenerationService, type RunningGenerationService } from '../../../src/service/generation-service.js';
import type { JobRecord } from '../../../src/service/types.js';
import { FakeEngine, type FakeEngineOptions } from '../../fakes/fake-engine.js';
import { EphemeralFlag, FakeDiscord, type FakeActor, type FakeCommandOption, type FakeMessage } from '../../fakes/fake-discord/fake-discord.js';
import { failingPromptWord, limitedUser, type PlatformDriver, type ScenarioResult } from '../scenarios.js';

export const guildId = '7000000000000000001';
export const channelId = '7100000000000000001';

export interface DiscordHarnessOptions {
  mode: 'gateway' | 'http';
  config?: ConfigOptions;
  engine?: FakeEngineOptions;
  /** Least time between progress edits; short so that tests see several. */
  progressIntervalMs?: number;
}

/** What delivering an interaction got back. */
export interface Delivered {
  /** HTTP mode: the endpoint's status; gateway: 200 once acknowledged. */
  status: number;
  token: string;
}

export class DiscordHarness implements PlatformDriver {
  readonly name: string;
  readonly maxButtonIdLength = 100;
  readonly maxButtonsPerRow = 5;
  readonly mode: 'gateway' | 'http';
  readonly fake: FakeDiscord;
  readonly dataDir: string;
  config!: Config;
  service!: RunningGenerationService;
  adapter!: DiscordAdapter;
  engine!: FakeEngine;
  commandSettings!: Awaited<ReturnType<typeof openCommandSettings>>;
  /** Message ids of results (file + buttons), in order of arrival. */
  readonly results: string[] = [];
  /** Message ids of ephemeral messages with text, in order of arrival. */
  readonly ephemerals: string[] = [];
  private readonly options: DiscordHarnessOptions;
  private readonly logger: Logger;
  private readonly stopWatching: () => void;

  private constructor(options: DiscordHarnessOptions, fake: FakeDiscord, dataDir: string) {
    this.mode = options.mode;
    this.name = `Discord ${options.mode}`;
    this.options = options;
    this.fake = fake;
    this.dataDir = dataDir;
    // DISCORD_TEST_LOG=debug shows what the adapter logs while a test runs.
    this.logger = process.env.DISCORD_TEST_LOG ? createLogger({ logLevel: process.env.DISCORD_TEST_LOG as Config['logLevel'] }) : silentLogger();
    this.stopWatching = fake.onChange(() => this.watch());
  }

  static async start(options: DiscordHarnessOptions): Promise<DiscordHarness> {
    const fake = await FakeDiscord.start();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'imagine-discord-'));
    const harness = new DiscordHarness(options, fake, dataDir);
    try {
      await harness.boot();
    } catch (error) {
      await harness.close();
      throw error;
    }
    return harness;
  }

  private async boot(): Promise<void> {
    this.config = loadConfig(
      {
        dataDir: this.dataDir,
        logLevel: 'silent',
        host: '127.0.0.1',
        discordToken: this.fake.token,
        discordApplicationId: this.fake.applicationId,
        discordPublicKey: this.fake.publicKey,
        discordMode: this.mode,
        discordHttpPort: 0,
        discordApiUrl: this.fake.apiUrl,
        rateLimitPerMinute: 1000,
        rateLimitBurst: 100,
        maxRunningPerUser: 4,
        maxQueuedPerUser: 20,
        ...this.options.config,
      },
      {},
      false,
    );
    this.engine = new FakeEngine({ steps: 6, stepDelayMs: 30, failPrompts: [failingPromptWord], ...this.options.engine });
    this.service = await createGenerationService({
      config: this.config,
      engine: this.engine,
      logger: this.logger,
      limitsFor: (requester) => (requester.userId === limitedUser ? { burst: 1, ratePerMinute: 1 } : undefined),
    });
    // As main.ts does: persistent user settings and channel lists under DATA_DIR, runtime limits.
    this.commandSettings = await openCommandSettings({ config: this.config, capabilities: this.engine.capabilities });
    this.adapter = await startDiscord({
      config: this.config,
      service: this.service,
      logger: this.logger,
      commandSettings: this.commandSettings,
      timing: { progressIntervalMs: this.options.progressIntervalMs ?? 60 },
    });
  }

  /** Records results and ephemeral messages as they appear. */
  private watch(): void {
    for (const message of this.fake.messages.values()) {
      if (message.deleted || message.loading) continue;
      if (message.attachments.length > 0 && message.components.length > 0 && !this.results.includes(message.id)) this.results.push(message.id);
      if ((message.flags & EphemeralFlag) !== 0 && message.content !== '' && !this.ephemerals.includes(message.id)) this.ephemerals.push(message.id);
    }
  }

  /** A guild member (or, with `dm`, a user in a DM with the bot). */
  actor(user: string, extra: Partial<FakeActor> = {}): FakeActor {
    return { id: user, username: user, guildId, channelId, permissions: '0', ...extra };
  }

  /** Delivers an interaction the way the mode does and waits until it was acknowledged. */
  async deliver(interaction: Record<string, unknown>): Promise<Delivered> {
    const token = String(interaction.token);
    if (this.mode === 'http') {
      const { status } = await this.fake.postInteraction(this.adapter.interactionsUrl!, interaction);
      return { status, token };
    }
    this.fake.dispatchInteraction(interaction);
    await this.fake.waitFor(() => this.fake.interactions.get(token)?.callbackType !== undefined, `the acknowledgement of ${String(interaction.type)}`);
    return { status: 200, token };
  }

  async command(name: string, options: FakeCommandOption[], actor: FakeActor): Promise<Delivered> {
    return this.deliver(this.fake.slashCommand(name, options, actor));
  }

  async imagineAs(text: string, actor: FakeActor): Promise<Delivered> {
    return this.command('imagine', [{ name: 'prompt', type: 3, value: text }], actor);
  }

  // ------------------------------------------------------------ PlatformDriver

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.service.getJob(jobId);
  }

  async imagine(text: string, user = 'alice'): Promise<void> {
    await this.imagineAs(text, this.actor(user));
  }

  async press(result: ScenarioResult, label: string, user = 'alice'): Promise<void> {
    const message = this.messageOf(result);
    const button = message.components.flatMap((row) => row.components).find((candidate) => candidate.label === label);
    if (!button?.custom_id) throw new Error(`no button ${label} on message ${message.id}`);
    await this.deliver(this.fake.buttonPress(message, button.custom_id, this.actor(user)));
  }

  async pressWithId(result: ScenarioResult, id: string, user = 'alice'): Promise<void> {
    await this.deliver(this.fake.forgedButtonPress(this.messageOf(result), id, this.actor(user)));
  }

  resultCount(): number {
    return this.results.length;
  }

  /** `timeoutMs`: longer for results that take real work (fitting a noisy grid under an upload limit). */
  async waitForResult(index: number, timeoutMs?: number): Promise<ScenarioResult> {
    const id = await this.fake.waitFor(() => this.results[index], `result #${index + 1}`, timeoutMs);
    // The adapter records the message on the job right after posting it; let that land.
    await this.adapter.idle();
    return this.resultOf(this.fake.messages.get(id)!);
  }

  ephemeralCount(): number {
    return this.ephemerals.length;
  }

  async waitForEphemeral(index: number): Promise<string> {
    const id = await this.fake.waitFor(() => this.ephemerals[index], `ephemeral message #${index + 1}`);
    return this.fake.messages.get(id)!.content;
  }

  statusTexts(): string[] {
    const last = this.results.at(-1);
    const message = last === undefined ? undefined : this.fake.messages.get(last);
    return message ? message.history.slice(0, -1).map((entry) => entry.content) : [];
  }

  async expireTokens(): Promise<void> {
    this.fake.expireAllTokens();
  }

  async restart(): Promise<void> {
    await this.adapter.close();
    await this.service.shutdown(1000);
    await this.commandSettings.close();
    await this.boot();
  }

  async close(): Promise<void> {
    this.stopWatching();
    await this.adapter?.close().catch(() => undefined);
    await this.service?.shutdown(1000).catch(() => undefined);
    await this.commandSettings?.close().catch(() => undefined);
    await this.fake.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  // ------------------------------------------------------------ helpers

  resultOf(message: FakeMessage): ScenarioResult {
    const file = message.attachments[0];
    if (!file) throw new Error(`message ${message.id} has no file`);
    return {
      file: file.data,
      rows: message.components.map((row) => row.components.map((button) => ({ label: button.label ?? '', id: button.custom_id ?? '' }))),
      text: message.content,
      sentWithBotToken: message.source.kind === 'bot',
      handle: message.id,
    };
  }

  messageOf(result: ScenarioResult): FakeMessage {
    const message = this.fake.messages.get(String(result.handle));
    if (!message) throw new Error('unknown result message');
    return message;
  }
}
