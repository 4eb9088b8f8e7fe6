/**
 * Starting the Slack adapter: a refused token stops start-up with a ConfigError that names the
 * variable, the adapter's debug logs never show a token, and close() stops the receiver.
 */
import { Writable } from 'node:stream';
import { startSlack } from '../../../adapters/slack/index.js';
import { loadConfig, type ConfigOptions } from '../../../src/config/config.js';
import { ConfigError } from '../../../src/errors.js';
import { createLogger, silentLogger } from '../../../src/logger.js';
import type { GenerationService } from '../../../src/service/types.js';
import { FakeSlack } from '../../fakes/fake-slack/fake-slack.js';
import { encodeSlashCommand, postSigned, slashCommandPayload } from '../../fakes/fake-slack/requests.js';

/** A service that must never be reached by these tests. */
const unreachableService = new Proxy({} as GenerationService, {
  get: (_target, name) => () => {
    throw new Error(`the service was called (${String(name)})`);
  },
});

describe('startSlack', () => {
  let fake: FakeSlack;

  beforeEach(async () => {
    fake = await FakeSlack.start();
  });

  afterEach(async () => {
    await fake.close();
  });

  const configFor = (options: ConfigOptions) => loadConfig({ slackApiUrl: fake.apiUrl, slackPort: 0, slackSigningSecret: 'signing-secret-for-tests', logLevel: 'silent', ...options }, {}, false);

  test('a bot token Slack refuses is a ConfigError naming SLACK_BOT_TOKEN, without the token', async () => {
    const config = configFor({ slackBotToken: 'xoxb-refused-token-123456' });
    const error = await startSlack({ config, service: unreachableService, logger: silentLogger(), retryConfig: { retries: 0 } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe('SLACK_BOT_TOKEN');
    expect((error as Error).message).toContain('invalid_auth');
    expect((error as Error).message).not.toContain('xoxb-refused-token-123456');
  });

  test('in Socket Mode an app token Slack refuses is a ConfigError naming SLACK_APP_TOKEN', async () => {
    const config = configFor({ slackBotToken: fake.botToken, slackMode: 'socket', slackAppToken: 'xapp-refused-app-token-1' });
    const error = await startSlack({ config, service: unreachableService, logger: silentLogger(), retryConfig: { retries: 0 } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe('SLACK_APP_TOKEN');
    expect(fake.socketConnected).toBe(false);
  });

  test('debug logs never contain the tokens or the signing secret; close() stops listening', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    const config = configFor({ slackBotToken: fake.botToken, logLevel: 'debug' });
    const adapter = await startSlack({ config, service: unreachableService, logger: createLogger(config, { destination }), retryConfig: { retries: 0 } });
    expect(adapter.mode).toBe('http');
    const url = `http://127.0.0.1:${adapter.port}/slack/events`;
    const refused = await postSigned(url, encodeSlashCommand(slashCommandPayload({ text: 'x', userId: 'U1', channelId: 'C1' })), 'not-the-secret');
    expect(refused.status).toBe(401);
    await adapter.close();
    await expect(fetch(url, { method: 'POST' })).rejects.toThrow();
    const log = lines.join('');
    expect(log.length).toBeGreaterThan(0);
    expect(log).not.toContain(fake.botToken);
    expect(log).not.toContain('signing-secret-for-tests');
  });
});
