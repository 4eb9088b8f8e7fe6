import { EngineError, ErrorCode, JobError, LimitError, serializeError } from '../../src/errors.js';
import { escapeText, failedText, formatDuration, handedOverText, helpText, infoText, progressText, queuedText, resultCaption, settingsText } from '../../commands/messages.js';
import type { InfoSnapshot } from '../../src/service/types.js';
import { jobRecord } from './job-record.js';

describe('messages', () => {
  test('queued text names the place in line and the wait', () => {
    expect(queuedText(3, 40_000)).toBe('Queued — #3 in line, ready in about 40 s.');
    expect(queuedText(1, 5000)).toContain('#1');
    expect(queuedText(0, 0)).toContain('Starting');
  });

  test('progress text', () => {
    expect(progressText(0.4)).toBe('Generating… 40% ▰▰▰▰▱▱▱▱▱▱');
    expect(progressText(0.999, 1500)).toBe('Generating… 99% ▰▰▰▰▰▰▰▰▰▱ · about 2 s left');
    expect(progressText(7)).toContain('100%');
    expect(progressText(Number.NaN)).toContain('0%');
  });

  test('the restart notice says the job goes on and where its result comes', () => {
    expect(handedOverText(false)).toBe('🔁 The bot is restarting. Your job keeps its place in line, and the result will still be posted here.');
    expect(handedOverText(true)).toContain('still being drawn');
    expect(handedOverText(true)).toContain('will still be posted here');
  });

  test('durations', () => {
    expect(formatDuration(500)).toBe('a moment');
    expect(formatDuration(125_000)).toBe('about 2 min');
    expect(formatDuration(3_900_000)).toBe('about 1 h 5 min');
  });

  test('result caption: prompt, reproducing flags, who asked, kind, truncation', () => {
    const caption = resultCaption(jobRecord({ parameters: { prompt: 'a red circle', aspectRatio: '16:9', seed: 5, chaos: 20, negativePrompt: 'text' } }));
    expect(caption).toContain('**a red circle**');
    expect(caption).toContain('--ar 16:9 --seed 5 --chaos 20 --no text');
    expect(caption).toContain('<@42>');
    expect(caption).not.toContain('Note:');
    const upscale = resultCaption(jobRecord({ kind: 'upscale', parent: { jobId: 'p', index: 3 }, promptTruncated: true }));
    expect(upscale).toContain('Image #3 upscaled');
    expect(upscale).toContain('only its beginning was used');
    expect(resultCaption(jobRecord({ kind: 'variation', strength: 'subtle', parent: { jobId: 'p', index: 2 } }))).toContain('Variations (Subtle) of image #2');
    expect(resultCaption(jobRecord({ requester: { platform: 'playground', userId: 'u1', displayName: 'Grace' } }), { format: 'plain' })).toContain('Grace');
  });

  test('user text cannot ping everyone or break formatting', () => {
    const caption = resultCaption(jobRecord({ parameters: { prompt: '@everyone **bold** <@1> `x`', aspectRatio: '1:1', seed: 1, chaos: 0 } }));
    expect(caption).not.toMatch(/@everyone/);
    expect(caption).not.toContain('<@1>');
    expect(escapeText('<!channel> & *x*', 'mrkdwn')).not.toMatch(/<!channel>|\*x\*/);
  });

  test('failed text goes through toUserMessage for errors and serialised errors', () => {
    expect(failedText(new EngineError('session exploded in /secret/path'))).not.toContain('/secret/path');
    expect(failedText(serializeError(new EngineError('session exploded in /secret/path')))).toContain('engine_failed');
    expect(failedText(serializeError(new JobError(ErrorCode.Cancelled, 'The job was cancelled.', 'j')))).toBe('🛑 The job was cancelled.');
    expect(failedText(new LimitError(ErrorCode.RateLimited, 'Slow down.', 1000))).toBe('❌ Slow down.');
  });

  test('info text shows jobs, limits, queue and engine', () => {
    const snapshot: InfoSnapshot = {
      requester: { platform: 'discord', userId: '42' },
      running: [jobRecord({ id: 'run1', status: 'running' })],
      queued: [{ job: jobRecord({ id: 'wait1', status: 'queued' }), position: 2 }],
      limits: { ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5, tokensLeft: 0, nextTokenInMs: 6000 },
      queueLength: 4,
      slots: 1,
      engine: 'imagine-shapes (unCLIP, onnxruntime cpu)',
      averageJobMs: 20_000,
    };
    const text = infoText(snapshot);
    for (const part of ['run1', 'wait1', '#2', '10 jobs a minute', 'bursts of 3', 'about 6 s', '4 waiting', 'imagine-shapes']) expect(text).toContain(part);
  });

  test('help lists every flag and command', () => {
    const text = helpText();
    for (const part of ['--ar', '--seed', '--no', '--chaos', '--steps', '--guidance', '--cfg', '/imagine', '/info', '/settings', 'U1', 'V1', '🔄']) expect(text).toContain(part);
  });

  test('settings text', () => {
    expect(settingsText({ aspectRatio: '16:9' }, { changed: true })).toContain('16:9');
    expect(settingsText({})).toContain('strong (default)');
  });
});

describe('command style', () => {
  test('Slack (mrkdwn) help and settings write commands as /imagine <name>', () => {
    const slack = helpText({ format: 'mrkdwn' });
    expect(slack).toContain('`/imagine info`');
    expect(slack).toContain('`/imagine settings [aspect_ratio:16:9]');
    expect(slack).not.toContain('`/info`');
    expect(helpText()).toContain('`/info`');
    expect(settingsText({}, { format: 'mrkdwn' })).toContain('/imagine settings reset:true');
    expect(settingsText({}, { format: 'plain' })).toContain('/settings reset:true');
  });
});
