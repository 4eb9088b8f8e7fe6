/**
 * The shared adapter scenarios (test/adapters/scenarios.ts), run against the Slack adapter over
 * HTTP and over Socket Mode. A "result" on Slack is the uploaded file plus the message with the
 * buttons that follows it; they are paired by the job id in the file name.
 */
import { decodeButton } from '../../../commands/custom-id.js';
import type { JobRecord } from '../../../src/service/types.js';
import type { FakeEngine } from '../../fakes/fake-engine.js';
import type { SlackMessage } from '../../fakes/fake-slack/fake-slack.js';
import { failingPromptWord, limitedUser, runAdapterScenarios, type PlatformDriver, type ScenarioResult } from '../scenarios.js';
import { buttonRows, SlackHarness } from './harness.js';

/** The start of commands/messages.ts queuedText. */
const queueNotice = /^(Queued — |Starting…)/;

class SlackDriver implements PlatformDriver {
  readonly name: string;
  readonly maxButtonIdLength = 255;
  /** Slack allows 25 elements in an actions block; the adapter keeps Discord's rows of at most 5. */
  readonly maxButtonsPerRow = 5;
  private readonly harness: SlackHarness;

  constructor(harness: SlackHarness) {
    this.harness = harness;
    this.name = `slack-${harness.mode}`;
  }

  static async start(mode: 'http' | 'socket'): Promise<SlackDriver> {
    const harness = await SlackHarness.start({
      mode,
      config: { rateLimitBurst: 1000, rateLimitPerMinute: 10_000, maxQueuedPerUser: 100 },
      engine: { failPrompts: [failingPromptWord] },
      limitsFor: (requester) => (requester.userId === limitedUser ? { burst: 1, ratePerMinute: 1 } : undefined),
    });
    return new SlackDriver(harness);
  }

  get engine(): FakeEngine {
    return this.harness.engine;
  }

  getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.harness.service.getJob(jobId);
  }

  async imagine(text: string, user = 'alice'): Promise<void> {
    const delivered = await this.harness.command(text, user);
    expect(delivered.acknowledged).toBe(true);
  }

  async press(result: ScenarioResult, label: string, user = 'alice'): Promise<void> {
    const button = result.rows.flat().find((candidate) => candidate.label === label);
    if (!button) throw new Error(`no button ${label}`);
    await this.pressWithId(result, button.id, user);
  }

  async pressWithId(result: ScenarioResult, id: string, user = 'alice'): Promise<void> {
    const delivered = await this.harness.press(result.handle as SlackMessage, id, user);
    expect(delivered.acknowledged).toBe(true);
  }

  resultCount(): number {
    return this.harness.fake.buttonMessages().length;
  }

  async waitForResult(index: number): Promise<ScenarioResult> {
    const { fake } = this.harness;
    const message = await this.harness.buttonMessage(index + 1);
    const rows = buttonRows(message).map((row) => row.map((button) => ({ label: button.label, id: button.actionId })));
    const jobId = decodeButton(rows[0]![0]!.id).jobId;
    const file = await fake.waitFor(() => [...fake.files.values()].find((candidate) => candidate.completed && candidate.filename.includes(jobId)), 15_000, `the file of job ${jobId}`);
    const shared = fake.messages.find((candidate) => candidate.fileIds.includes(file.id));
    return {
      file: file.bytes!,
      rows,
      text: file.initialComment ?? '',
      sentWithBotToken: message.token === fake.botToken && shared?.token === fake.botToken,
      handle: message,
    };
  }

  /**
   * On Slack the "queued" notice every accepted job gets is ephemeral too (Discord shows it in the
   * public deferred reply); the scenarios count answers to the user, so the driver leaves it out.
   */
  private answers(): string[] {
    return this.harness.fake.ephemerals.map((message) => message.text).filter((text) => !queueNotice.test(text));
  }

  ephemeralCount(): number {
    return this.answers().length;
  }

  async waitForEphemeral(index: number): Promise<string> {
    return this.harness.fake.waitFor(() => this.answers()[index], 15_000, `ephemeral answer #${index + 1}`);
  }

  statusTexts(): string[] {
    // The status message is the bot's latest message without buttons or files.
    const status = [...this.harness.fake.messages].reverse().find((message) => message.fileIds.length === 0 && !(message.blocks ?? []).some((block) => block.type === 'actions'));
    return status?.history ?? [];
  }

  async expireTokens(): Promise<void> {
    this.harness.fake.expireResponseUrls();
  }

  restart(): Promise<void> {
    return this.harness.restart();
  }

  close(): Promise<void> {
    return this.harness.close();
  }
}

runAdapterScenarios('Slack HTTP', () => SlackDriver.start('http'));
runAdapterScenarios('Slack Socket Mode', () => SlackDriver.start('socket'));
