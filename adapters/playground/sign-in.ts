/**
 * The playground's optional sign-in (PLAYGROUND_PASSWORD): one shared password, for a playground that
 * others can reach. Without the session cookie the page shows a sign-in form and the API answers 401.
 * The cookie holds an HMAC of a fixed label under the password, never the password, so changing the
 * password signs everyone out.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody } from '../../src/http/server.js';

const cookieName = 'imagine_playground';
const maxFormBytes = 4096;
/** Slows guessing: every wrong password waits this long for its answer. */
const wrongPasswordDelayMs = 400;

/** Who may use the playground. */
export class PlaygroundGate {
  /** The session cookie's value and the password's digest; undefined when no password is set. */
  readonly #secret: { session: Buffer; passwordDigest: Buffer } | undefined;

  constructor(password: string | undefined, private readonly delayMs: number = wrongPasswordDelayMs) {
    if (password) {
      this.#secret = { session: createHmac('sha256', password).update('imagine playground session').digest(), passwordDigest: digest(password) };
    }
  }

  /** True when a password is set. */
  get enabled(): boolean {
    return this.#secret !== undefined;
  }

  /** True when no password is set, or the request carries the session cookie. */
  allows(request: IncomingMessage): boolean {
    if (!this.#secret) return true;
    const presented = cookie(request, cookieName);
    if (!presented || !/^[0-9a-f]{64}$/.test(presented)) return false;
    return timingSafeEqual(Buffer.from(presented, 'hex'), this.#secret.session);
  }

  /** Serves GET/POST /signin. */
  async signIn(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const secret = this.#secret;
    if (!secret) {
      response.writeHead(303, { location: '/' });
      response.end();
      return;
    }
    if (request.method === 'GET' || request.method === 'HEAD') return this.page(response, 200);
    if (request.method !== 'POST') {
      response.writeHead(405, { allow: 'GET, HEAD, POST' });
      response.end();
      return;
    }
    const form = await readForm(request);
    const password = form?.get('password') ?? '';
    if (timingSafeEqual(digest(password), secret.passwordDigest)) {
      response.writeHead(303, {
        location: '/',
        'set-cookie': `${cookieName}=${secret.session.toString('hex')}; Path=/; HttpOnly; SameSite=Strict`,
      });
      response.end();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.page(response, 401, 'That password is not right.');
  }

  /** Answers a request that is not signed in: the form for the page, 401 for everything else. */
  refuse(request: IncomingMessage, response: ServerResponse, pathname: string): void {
    if ((pathname === '/' || pathname === '/index.html') && request.method !== 'POST') return this.page(response, 401);
    response.writeHead(401, { 'content-type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify({ error: 'Sign in to the playground first (open / in a browser).' }));
  }

  private page(response: ServerResponse, status: number, message?: string): void {
    const body = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Imagine: sign in</title>
<link rel="stylesheet" href="/style.css"></head>
<body><main class="sign-in"><h1>Imagine</h1>
<form method="post" action="/signin">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>${message ? `\n<p class="error" role="alert">${message}</p>` : ''}
</main></body></html>
`;
    response.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    response.end(body);
  }
}

/** Equal-length digests, so that the comparison takes the same time whatever was typed. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function cookie(request: IncomingMessage, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

async function readForm(request: IncomingMessage): Promise<URLSearchParams | undefined> {
  const body = await readBody(request, maxFormBytes);
  return body && new URLSearchParams(body.toString('utf8'));
}
