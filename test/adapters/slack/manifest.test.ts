/**
 * The shipped slack-app-manifest.yml asks for exactly what the adapter uses: the /imagine command
 * and interactivity on Bolt's endpoint, and the scopes commands, chat:write and files:write.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { slackDefaults } from '../../../adapters/slack/index.js';
import { projectRoot } from '../../../src/config/config.js';

const manifest = readFileSync(path.join(projectRoot, 'slack-app-manifest.yml'), 'utf8');
/** The manifest without comments, so that the checks read only what Slack reads. */
const body = manifest
  .split('\n')
  .filter((line) => !line.trimStart().startsWith('#'))
  .join('\n');

/** The items of the YAML list under `key:` (one level, `- item` lines). */
function listUnder(key: string): string[] {
  const lines = body.split('\n');
  const start = lines.findIndex((line) => line.trim() === `${key}:`);
  if (start < 0) return [];
  const indent = lines[start]!.search(/\S/);
  const items: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') continue;
    if (line.search(/\S/) <= indent) break;
    const match = /^\s*-\s+(.+)$/.exec(line);
    if (match) items.push(match[1]!.trim());
  }
  return items;
}

describe('slack-app-manifest.yml', () => {
  test('bot scopes are exactly commands, chat:write and files:write', () => {
    expect(listUnder('bot').sort()).toEqual(['chat:write', 'commands', 'files:write']);
  });

  test('declares /imagine with a usage hint, on the endpoint the adapter listens on', () => {
    expect(body).toMatch(/- command: \/imagine\n/);
    expect(body).toMatch(/usage_hint: ".*--ar.*"/);
    const commandUrl = /command: \/imagine\n\s+url: (\S+)/.exec(body)?.[1];
    expect(commandUrl && new URL(commandUrl).pathname).toBe(slackDefaults.endpoint);
  });

  test('enables interactivity on the same endpoint, and says how to switch to Socket Mode', () => {
    const interactivity = /interactivity:\n\s+is_enabled: (\w+)\n\s+request_url: (\S+)/.exec(body);
    expect(interactivity?.[1]).toBe('true');
    expect(new URL(interactivity![2]!).pathname).toBe(slackDefaults.endpoint);
    expect(body).toMatch(/socket_mode_enabled: (true|false)/);
    expect(manifest).toContain('SLACK_APP_TOKEN');
    expect(manifest).toContain('SLACK_SIGNING_SECRET');
    expect(manifest).toContain('SLACK_BOT_TOKEN');
  });
});
