/**
 * PLAYGROUND_PASSWORD: without the session cookie the page shows a sign-in form and the API answers
 * 401; the right password sets an HttpOnly cookie that is not the password; /healthz stays open.
 */
import type { IncomingMessage } from 'node:http';
import type { PlaygroundReply } from '../../../adapters/playground/routes.js';
import { PlaygroundGate } from '../../../adapters/playground/sign-in.js';
import { clientId, postJson, startHarness, type PlaygroundHarness } from './harness.js';

const password = 'correct horse battery staple';

function signIn(harness: PlaygroundHarness, typed: string): Promise<Response> {
  return fetch(`${harness.url}/signin`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ password: typed }).toString() });
}

describe('playground sign-in', () => {
  let harness: PlaygroundHarness;

  beforeAll(async () => {
    harness = await startHarness({ config: { playgroundPassword: password }, wrongPasswordDelayMs: 5 });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('without the cookie: the sign-in form for the page, 401 for the app, its API, events and jobs; the stylesheet and /healthz stay open', async () => {
    const page = await fetch(`${harness.url}/`);
    expect(page.status).toBe(401);
    const html = await page.text();
    expect(html).toContain('<form method="post" action="/signin">');
    expect(html).not.toContain('app.js');
    for (const pathname of ['/app.js', `/events?client=${clientId()}`, '/jobs/abc123']) {
      const response = await fetch(`${harness.url}${pathname}`);
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({ error: 'Sign in to the playground first (open / in a browser).' });
    }
    const command = await postJson(`${harness.url}/api/command`, { text: '/imagine prompt: a red circle', client: clientId() });
    expect(command.status).toBe(401);
    expect(harness.engine.calls).toHaveLength(0);
    expect((await fetch(`${harness.url}/style.css`)).status).toBe(200);
    expect((await fetch(`${harness.url}/healthz`)).status).toBe(200);
  });

  test('a wrong password gets the form again with a message and no cookie', async () => {
    const response = await signIn(harness, 'open sesame');
    expect(response.status).toBe(401);
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(await response.text()).toContain('That password is not right.');
  });

  test('the right password sets an HttpOnly, SameSite=Strict cookie (not the password) that opens the page and the API', async () => {
    const response = await signIn(harness, password);
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
    const setCookie = response.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^imagine_playground=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(setCookie).not.toContain(encodeURIComponent(password));
    const cookie = setCookie.split(';')[0]!;

    const page = await fetch(`${harness.url}/`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('app.js');
    const command = await postJson(`${harness.url}/api/command`, { text: '/imagine prompt: a red circle', client: clientId() }, { cookie });
    expect(command.status).toBe(200);
    expect(((await command.json()) as PlaygroundReply).kind).toBe('job');

    const tampered = `${cookie.slice(0, -1)}${cookie.endsWith('0') ? '1' : '0'}`;
    expect((await fetch(`${harness.url}/`, { headers: { cookie: tampered } })).status).toBe(401);

    // A new password signs everyone out: the old cookie does not open a playground started with it.
    const changed = await startHarness({ config: { playgroundPassword: `${password}!` } });
    try {
      expect((await fetch(`${changed.url}/`, { headers: { cookie } })).status).toBe(401);
    } finally {
      await changed.close();
    }
  });
});

describe('PlaygroundGate', () => {
  const request = (cookie?: string) => ({ headers: cookie ? { cookie } : {} }) as IncomingMessage;

  test('with no password it lets everyone in; with one, a missing, malformed or wrong cookie is refused', () => {
    expect(new PlaygroundGate(undefined).enabled).toBe(false);
    expect(new PlaygroundGate(undefined).allows(request())).toBe(true);
    const gate = new PlaygroundGate('first');
    expect(gate.enabled).toBe(true);
    expect(gate.allows(request())).toBe(false);
    expect(gate.allows(request('imagine_playground=not-hex'))).toBe(false);
    expect(gate.allows(request(`other=1; imagine_playground=${'0'.repeat(64)}`))).toBe(false);
  });
});

describe('playground without a password', () => {
  test('serves the page to anyone, and /signin sends the browser back to it', async () => {
    const open = await startHarness();
    try {
      expect((await fetch(`${open.url}/`)).status).toBe(200);
      const signin = await fetch(`${open.url}/signin`, { redirect: 'manual' });
      expect(signin.status).toBe(303);
      expect(signin.headers.get('location')).toBe('/');
    } finally {
      await open.close();
    }
  });
});
