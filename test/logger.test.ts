import { createLogger } from '../src/logger.js';
import { EngineError, registerSecret } from '../src/errors.js';

function capture(level: 'info' | 'silent' | 'debug' = 'info'): { lines: () => Array<Record<string, unknown>>; raw: () => string; logger: ReturnType<typeof createLogger> } {
  const chunks: string[] = [];
  const logger = createLogger({ logLevel: level }, { destination: { write: (chunk: string) => void chunks.push(chunk) } });
  return { logger, raw: () => chunks.join(''), lines: () => chunks.join('').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>) };
}

const slackToken = 'xoxb-1234567890-abcdefghijklmnop';

describe('logger', () => {
  test('writes structured JSON lines with the level and message', () => {
    const { logger, lines } = capture();
    logger.info({ jobId: 'j1', queued: 3 }, 'job admitted');
    expect(lines()[0]).toMatchObject({ level: 30, msg: 'job admitted', jobId: 'j1', queued: 3, app: 'imagine' });
  });

  test('known secret keys are redacted wherever they sit', () => {
    const { logger, raw, lines } = capture();
    logger.info({ token: 'plain-token-value', config: { slackSigningSecret: 'signing-secret-value' }, req: { headers: { authorization: 'Bot abc' } } }, 'starting');
    expect(raw()).not.toContain('plain-token-value');
    expect(raw()).not.toContain('signing-secret-value');
    expect(raw()).not.toContain('Bot abc');
    expect(lines()[0]).toMatchObject({ token: '[redacted]', config: { slackSigningSecret: '[redacted]' } });
  });

  test('tokens inside messages, other fields and errors are masked', () => {
    registerSecret('registered-secret-42');
    const { logger, raw } = capture();
    logger.warn(`connecting with ${slackToken} and registered-secret-42`);
    logger.info({ url: 'redis://user:hunter2@cache:6379' }, 'store');
    logger.error({ err: new EngineError(`request failed: Authorization: Bearer ${'a'.repeat(30)} ${slackToken}`) }, 'engine failed');
    logger.error(new Error(`boom ${slackToken}`));
    const text = raw();
    expect(text).not.toContain(slackToken);
    expect(text).not.toContain('registered-secret-42');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('a'.repeat(30));
    expect(text).toContain('[redacted]');
    expect(text).toContain('engine_failed');
  });

  test('typed arrays are summarised rather than dumped', () => {
    const { logger, lines } = capture();
    logger.info({ png: new Uint8Array(1000) }, 'bytes');
    expect(lines()[0]!.png).toBe('[Uint8Array 1000 bytes]');
  });

  test('the level comes from the configuration', () => {
    const silent = capture('silent');
    silent.logger.error('nothing');
    expect(silent.raw()).toBe('');
    const info = capture('info');
    info.logger.debug('hidden');
    info.logger.info('shown');
    expect(info.lines().map((line) => line.msg)).toEqual(['shown']);
  });
});
