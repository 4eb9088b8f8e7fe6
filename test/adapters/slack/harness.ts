/**
 * Runs the real Slack adapter against the fake Slack, with the real generation service on a
 * FakeEngine and a temporary DATA_DIR, in HTTP or Socket Mode. Tests (and the shared scenario
 * driver) talk to it as Slack would: signed POSTs or Socket Mode envelopes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { startSlack, type SlackAdapter } from '../../../adapters/slack/index.js';
import { commandSettingsFor } from '../../../commands/dispatch.js';
import { loadConfig, type Config, type ConfigOptions } from '../../../src/config/config.js';
import type { RgbImage } from '../../../src/engine/engine.js';
import { createLogger, silentLogger, type Logger } from '../../../src/logger.js';
import { createGenerationService, type GenerationServiceOptions, type RunningGenerationService } from '../../../src/service/generation-service.js';
import { FakeEngine, type FakeEngineOptions } from '../../fakes/fake-engine.js';
import { FakeSlack, type SlackFile, type SlackMessage } from '../../fakes/fake-slack/fake-slack.js';
import { blockActionsPayload, encodeInteractive, encodeSlashCommand, postSigned, slashCommandPayload, type SignatureKind } from '../../fakes/fake-slack/requests.js';

export const signingSecret = 'test-signing-secret-1234';
export const channelId = 'C0GENERAL';

export interface SlackHarnessOptions {
  mode: 'http' | 'socket';
  config?: ConfigOptions;
  engine?: FakeEngineOptions;
  progressIntervalMs?: number;
  /** Per-user limit overrides handed to the service. */
  limitsFor?: GenerationServiceOptions['limitsFor'];
}

/** What a request to the bot answered: the HTTP status (HTTP mode) or the envelope's ack (Socket Mode). */
export interface Delivered {
  status: number;
  acknowledged: boolean;
}

export class SlackHarness {
  readonly mode: 'http' | 'socket';
  readonly fake: FakeSlack;
  readonly engine: FakeEngine;
  readonly dataDir: string;
  config!: Config;
  service!: RunningGenerationService;
  adapter!: SlackAdapter;
  private readonly options: SlackHarnessOptions;
  private readonly logger: Logger;

  private constructor(options: SlackHarnessOptions, fake: FakeSlack, dataDir: string) {
    this.mode = options.mode;
    this.options = options;
    this.fake = fake;
    this.dataDir = dataDir;
    this.engine = new FakeEngine({ steps: 4, ...options.engine });
    // SLACK_TEST_LOG=debug shows what the adapter logs while a test runs.
    this.logger = process.env.SLACK_TEST_LOG ? createLogger({ logLevel: process.env.SLACK_TEST_LOG as Config['logLevel'] }) : silentLogger();
  }

  static async start(options: SlackHarnessOptions): Promise<SlackHarness> {
    const fake = await FakeSlack.start();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'imagine-slack-'));
    const harness = new SlackHarness(options, fake, dataDir);
    await harness.boot();
    return harness;
  }

  /** Starts a service and an adapter on the same DATA_DIR and fake Slack. */
  private async boot(): Promise<void> {
    this.config = loadConfig(
      {
        dataDir: this.dataDir,
        logLevel: 'silent',
        slackBotToken: this.fake.botToken,
        slackSigningSecret: signingSecret,
        slackAppToken: this.fake.appToken,
        slackMode: this.mode,
        slackPort: 0,
        slackApiUrl: this.fake.apiUrl,
        ...this.options.config,
      },
      {},
      false,
    );
    this.service = await createGenerationService({ config: this.config, engine: this.engine, logger: this.logger, ...(this.options.limitsFor ? { limitsFor: this.options.limitsFor } : {}) });
    this.adapter = await startSlack({
      config: this.config,
      service: this.service,
      logger: this.logger,
      commandSettings: commandSettingsFor(this.config, this.engine.capabilities),
      retryConfig: { retries: 3, minTimeout: 10, maxTimeout: 50, factor: 2 },
      ...(this.options.progressIntervalMs !== undefined ? { progressIntervalMs: this.options.progressIntervalMs } : {}),
    });
  }

  /** Stops the adapter and the service, then starts both again on the same DATA_DIR (a restart). */
  async restart(): Promise<void> {
    await this.adapter.close();
    await this.service.shutdown(5_000);
    await this.boot();
  }

  get eventsUrl(): string {
    return `http://127.0.0.1:${this.adapter.port}/slack/events`;
  }

  /** `/imagine <text>` from a user. */
  async command(text: string, userId = 'U0ALICE', signature: SignatureKind = 'valid', channel = channelId): Promise<Delivered> {
    const payload = slashCommandPayload({ text, userId, channelId: channel, responseUrl: this.fake.responseUrl() });
    if (this.mode === 'http') {
      const response = await postSigned(this.eventsUrl, encodeSlashCommand(payload), signingSecret, signature);
      return { status: response.status, acknowledged: response.status === 200 };
    }
    await this.fake.sendEnvelope('slash_commands', payload);
    return { status: 200, acknowledged: true };
  }

  /** A press of the button `actionId` on `message`, by a user. `value` defaults to the action id. */
  async press(message: SlackMessage, actionId: string, userId = 'U0ALICE', options: { value?: string; signature?: SignatureKind } = {}): Promise<Delivered> {
    const payload = blockActionsPayload({ userId, channelId: message.channel, messageTs: message.ts, ...(message.threadTs ? { threadTs: message.threadTs } : {}), actionId, value: options.value ?? actionId, responseUrl: this.fake.responseUrl() });
    if (this.mode === 'http') {
      const response = await postSigned(this.eventsUrl, encodeInteractive(payload), signingSecret, options.signature ?? 'valid');
      return { status: response.status, acknowledged: response.status === 200 };
    }
    await this.fake.sendEnvelope('interactive', payload);
    return { status: 200, acknowledged: true };
  }

  /** Waits for the n-th (1-based) message with buttons. */
  async buttonMessage(count: number): Promise<SlackMessage> {
    return this.fake.waitFor(() => this.fake.buttonMessages()[count - 1], 15_000, `button message #${count}`);
  }

  /** Waits for the n-th (1-based) completed upload. */
  async upload(count: number): Promise<SlackFile> {
    return this.fake.waitFor(() => [...this.fake.files.values()].filter((file) => file.completed)[count - 1], 15_000, `upload #${count}`);
  }

  /** Waits for the n-th (1-based) ephemeral message. */
  async ephemeral(count: number): Promise<{ text: string; user: string; channel: string }> {
    return this.fake.waitFor(() => this.fake.ephemerals[count - 1], 15_000, `ephemeral #${count}`);
  }

  async close(): Promise<void> {
    await this.adapter.close().catch(() => undefined);
    this.engine.releaseAll();
    await this.service.shutdown(2_000).catch(() => undefined);
    await this.fake.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** Decodes an uploaded image. */
export async function decodeUpload(bytes: Buffer): Promise<RgbImage> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** The buttons of a message: rows of { label, actionId, value }. */
export function buttonRows(message: SlackMessage): Array<Array<{ label: string; actionId: string; value: string | undefined }>> {
  return (message.blocks ?? [])
    .filter((block) => block.type === 'actions')
    .map((block) => (block.elements ?? []).map((element) => ({ label: element.text?.text ?? '', actionId: element.action_id ?? '', value: element.value })));
}

/** The action id of the button labelled `label`. */
export function actionIdOf(message: SlackMessage, label: string): string {
  const found = buttonRows(message).flat().find((button) => button.label === label);
  if (!found) throw new Error(`No button "${label}" on message ${message.ts}: ${JSON.stringify(buttonRows(message))}`);
  return found.actionId;
}
