/**
 * Discord's HTTP interactions endpoint: POST /interactions, verified with Ed25519
 * (X-Signature-Ed25519 over X-Signature-Timestamp + raw body, with DISCORD_PUBLIC_KEY). A bad or
 * missing signature gets 401 and no work, and so does a replay: a signed timestamp more than 5 minutes
 * from now, or a signed request seen before. The first answer goes back in the HTTP response body;
 * everything after goes out through the same REST calls as in gateway mode.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InteractionResponseType, MessageFlags, type APIInteraction, type APIInteractionResponse } from 'discord.js';
import { ConfigError, serializeError } from '../../src/errors.js';
import { readBody } from '../../src/http/server.js';
import type { Logger } from '../../src/logger.js';
import { type FirstSightings, MemoryFirstSightings } from '../../src/service/first-sightings.js';
import type { InteractionHandler } from './interactions.js';

/** Interactions are small; anything bigger is not from Discord. */
const maxBodyBytes = 1024 * 1024;
/** Discord closes the interaction after 3 s; answer "thinking…" before then if the handler has not. */
const responseDeadlineMs = 2500;

/** Reads DISCORD_PUBLIC_KEY (64 hex digits) into a key object. */
export function publicKeyFromHex(hex: string): KeyObject {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new ConfigError('DISCORD_PUBLIC_KEY', 'a hex Ed25519 public key', 'is not 64 hex digits', 'discordPublicKey');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(hex, 'hex').toString('base64url') }, format: 'jwk' });
}

/** True when `signature` (hex) signs `timestamp + body` under `key`. */
export function verifySignature(key: KeyObject, signature: string | undefined, timestamp: string | undefined, body: Buffer): boolean {
  if (!signature || !timestamp || !/^[0-9a-fA-F]{128}$/.test(signature)) return false;
  try {
    return verify(null, Buffer.concat([Buffer.from(timestamp, 'utf8'), body]), key, Buffer.from(signature, 'hex'));
  } catch {
    return false;
  }
}

/** How far a signed timestamp may be from this machine's clock (Slack's rule for its own signatures). */
const replayWindowSeconds = 300;

/**
 * Refuses replayed requests. The signature covers the timestamp, so a captured request cannot be re-dated:
 * one outside the window is stale, and one inside it is refused the second time its signature is seen, by
 * this process or, when `sightings` is shared (Redis), by any bot process of the deployment.
 */
export class ReplayGuard {
  constructor(
    readonly windowSeconds: number = replayWindowSeconds,
    private readonly now: () => number = Date.now,
    private readonly sightings: FirstSightings = new MemoryFirstSightings(now),
  ) {}

  /** 'fresh' the first time a request signed within the window is seen. */
  async check(signature: string, timestamp: string): Promise<'fresh' | 'stale' | 'replayed'> {
    const windowMs = this.windowSeconds * 1000;
    const signedAt = /^\d{1,12}$/.test(timestamp) ? Number(timestamp) * 1000 : Number.NaN;
    if (!(Math.abs(this.now() - signedAt) <= windowMs)) return 'stale';
    // Remembered for two windows: past that, its timestamp can no longer pass the check above.
    return (await this.sightings.claim(signature.toLowerCase(), 2 * windowMs)) ? 'fresh' : 'replayed';
  }
}

export interface InteractionsEndpoint {
  /** e.g. http://127.0.0.1:8787/interactions */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the endpoint on `host:port` (port 0 picks a free one). */
export async function startInteractionsEndpoint(options: { publicKey: string; host: string; port: number; handler: InteractionHandler; logger: Logger; sightings?: FirstSightings }): Promise<InteractionsEndpoint> {
  const key = publicKeyFromHex(options.publicKey);
  const replayGuard = new ReplayGuard(undefined, undefined, options.sightings);
  const { handler, logger } = options;
  const server: Server = createServer((request, response) => {
    void serve(request, response).catch((error: unknown) => {
      logger.error({ err: serializeError(error) }, 'Discord interactions endpoint failed');
      if (!response.headersSent) reply(response, 500, { error: 'internal error' });
    });
  });

  async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://endpoint').pathname;
    if (path !== '/interactions') return reply(response, 404, { error: 'not found' });
    if (request.method !== 'POST') return reply(response, 405, { error: 'method not allowed' });
    const body = await readBody(request, maxBodyBytes);
    if (body === undefined) return reply(response, 413, { error: 'body too large' });
    const signature = header(request, 'x-signature-ed25519');
    const timestamp = header(request, 'x-signature-timestamp');
    if (!verifySignature(key, signature, timestamp, body)) return reply(response, 401, { error: 'invalid request signature' });
    const freshness = await replayGuard.check(signature!, timestamp!);
    if (freshness !== 'fresh') {
      logger.warn({ freshness }, 'Discord interactions endpoint refused a replayed request');
      return reply(response, 401, { error: freshness === 'stale' ? 'request timestamp too old or too new' : 'request already seen' });
    }
    let interaction: APIInteraction;
    try {
      interaction = JSON.parse(body.toString('utf8')) as APIInteraction;
    } catch {
      return reply(response, 400, { error: 'body is not JSON' });
    }

    let answer: (value: APIInteractionResponse) => void = () => undefined;
    const answered = new Promise<APIInteractionResponse>((resolve) => (answer = resolve));
    let sent: () => void = () => undefined;
    const delivered = new Promise<void>((resolve) => (sent = resolve));
    const respond = async (value: APIInteractionResponse): Promise<void> => {
      answer(value);
      await delivered;
    };
    const handling = handler.handle(interaction, respond);
    const timer = setTimeout(() => answer({ type: InteractionResponseType.DeferredChannelMessageWithSource, data: { flags: MessageFlags.Ephemeral } }), responseDeadlineMs);
    const first = await Promise.race([answered, handling.then(() => answered)]);
    clearTimeout(timer);
    // Later calls for this interaction wait until Discord has its first answer (or the connection is gone).
    response.once('close', () => sent());
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify(first), () => sent());
    await handling;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  return {
    url: `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}/interactions`,
    port,
    async close() {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function reply(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}
