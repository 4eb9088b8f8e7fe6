/**
 * A fake Discord for tests: a node:http server for the REST routes the bot uses (under /api/v10,
 * multipart uploads included) and a `ws` WebSocket gateway (HELLO, IDENTIFY → READY, heartbeats,
 * RESUME, INTERACTION_CREATE). The real discord.js client and @discordjs/rest talk to it through
 * DISCORD_API_URL. It records every call, keeps the messages the bot made, expires interaction
 * tokens on demand (401, code 50027) and enforces Discord's limits (custom_id ≤ 100 characters,
 * ≤ 5 buttons a row, ≤ 5 rows, uploads ≤ the interaction's attachment_size_limit) so that a bot
 * breaking them fails here as it would there. For HTTP-mode bots it signs interactions with an
 * Ed25519 key and POSTs them to the bot's endpoint.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CallbackKind,
  EphemeralFlag,
  InteractionKind,
  type FakeActionRow,
  type FakeAttachment,
  type FakeInteractionState,
  type FakeMessage,
  type FakeUser,
  type RecordedCall,
} from './types.js';

export * from './types.js';

/** Discord's upload limit when an interaction says nothing else. */
export const defaultUploadLimit = 10 * 1024 * 1024;

export interface FakeDiscordOptions {
  /** The bot token the fake accepts (Authorization: Bot <token>, gateway IDENTIFY). */
  token?: string;
  applicationId?: string;
  botUser?: FakeUser;
  /** HELLO's heartbeat_interval in milliseconds. Default 41 250, as Discord sends. */
  heartbeatIntervalMs?: number;
}

/** A user who sends commands or presses buttons. */
export interface FakeActor {
  id: string;
  username?: string;
  /** Guild member permissions as a decimal bit string; defaults to none ("0"). */
  permissions?: string;
  /** Absent for a DM. */
  guildId?: string | undefined;
  channelId?: string;
  /** attachment_size_limit sent with the interaction; absent when undefined. */
  attachmentSizeLimit?: number | undefined;
}

/** One option of a slash command. */
export interface FakeCommandOption {
  name: string;
  type: number;
  value?: string | number | boolean;
  options?: FakeCommandOption[];
}

interface GatewaySession {
  id: string;
  socket: WebSocket | undefined;
  sequence: number;
  /** Dispatches sent, for RESUME. */
  sent: Array<{ s: number; payload: string }>;
  intents: number | undefined;
}

interface InjectedFailure {
  method: string;
  route: string;
  status: number;
  body: unknown;
  remaining: number;
}

const snowflakeBase = 1_200_000_000_000_000_000n;

/** The fake Discord; build one with {@link FakeDiscord.start}. */
export class FakeDiscord {
  readonly token: string;
  readonly applicationId: string;
  readonly botUser: FakeUser;
  /** Every REST call, oldest first. */
  readonly calls: RecordedCall[] = [];
  /** Every message, by id. */
  readonly messages = new Map<string, FakeMessage>();
  /** Every interaction the fake made, by token. */
  readonly interactions = new Map<string, FakeInteractionState>();
  /** Registered commands by scope (`global` or the guild id). */
  readonly registeredCommands = new Map<string, unknown[]>();
  /** IDENTIFY payloads received. */
  readonly identifies: Array<{ token: string; intents: number }> = [];
  /** Counts of gateway opcodes received. */
  readonly gatewayOps = new Map<number, number>();
  /** Interaction responses the HTTP-mode bot returned in the HTTP body. */
  readonly httpResponses: Array<{ status: number; body: unknown; interactionToken: string | undefined }> = [];

  readonly #server: Server;
  readonly #gateway: WebSocketServer;
  readonly #events = new EventEmitter();
  readonly #sessions = new Map<string, GatewaySession>();
  readonly #failures: InjectedFailure[] = [];
  /** Interactions POSTed to an HTTP-mode bot whose HTTP response has not been applied yet. */
  readonly #awaitingHttpResponse = new Map<string, Promise<void>>();
  readonly #heartbeatIntervalMs: number;
  readonly #signingKey: KeyObject;
  /** The hex Ed25519 public key a bot in HTTP mode verifies with (DISCORD_PUBLIC_KEY). */
  readonly publicKey: string;
  #snowflake = snowflakeBase;
  #port = 0;

  private constructor(options: FakeDiscordOptions) {
    this.token = options.token ?? 'fake-bot-token-0123456789';
    this.applicationId = options.applicationId ?? '1100000000000000001';
    this.botUser = options.botUser ?? { id: this.applicationId, username: 'imagine', discriminator: '0', bot: true, global_name: null };
    this.#heartbeatIntervalMs = options.heartbeatIntervalMs ?? 41_250;
    const pair = generateKeyPairSync('ed25519');
    this.#signingKey = pair.privateKey;
    const jwk = pair.publicKey.export({ format: 'jwk' });
    this.publicKey = Buffer.from(jwk.x ?? '', 'base64url').toString('hex');
    this.#events.setMaxListeners(100);
    this.#server = createServer((request, response) => {
      void this.#handle(request, response).catch((error: unknown) => {
        if (!response.headersSent) this.#send(response, 500, { message: String(error), code: 0 });
      });
    });
    this.#gateway = new WebSocketServer({ noServer: true });
    this.#server.on('upgrade', (request, socket, head) => {
      if (!(request.url ?? '').startsWith('/gateway')) {
        socket.destroy();
        return;
      }
      this.#gateway.handleUpgrade(request, socket, head, (client) => this.#onGatewayConnection(client));
    });
  }

  /** Starts a fake Discord on 127.0.0.1 and a free port. */
  static async start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const fake = new FakeDiscord(options);
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    fake.#port = (fake.#server.address() as AddressInfo).port;
    return fake;
  }

  /** DISCORD_API_URL: the REST base without the version, like discord.js's `rest.api`. */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.#port}/api`;
  }

  /** The gateway URL GET /gateway/bot returns. */
  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.#port}/gateway`;
  }

  /** Stops the server and drops every gateway connection. */
  async close(): Promise<void> {
    for (const client of this.#gateway.clients) client.terminate();
    this.#gateway.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- test controls

  /** Makes every later use of an interaction token fail as Discord does after 15 minutes. */
  expireToken(token: string): void {
    const state = this.interactions.get(token);
    if (state) state.expired = true;
  }

  /** Expires every interaction token handed out so far. */
  expireAllTokens(): void {
    for (const state of this.interactions.values()) state.expired = true;
  }

  /** Makes the next `times` calls of a route fail with the given status and body. */
  injectFailure(method: string, route: string, status: number, body: unknown = { message: 'Injected failure', code: 0 }, times = 1): void {
    this.#failures.push({ method: method.toUpperCase(), route, status, body, remaining: times });
  }

  /** Calls of one route (see {@link RecordedCall.route}), optionally of one method. */
  callsTo(route: string, method?: string): RecordedCall[] {
    return this.calls.filter((call) => call.route === route && (method === undefined || call.method === method.toUpperCase()));
  }

  /** Messages not deleted, oldest first. */
  liveMessages(): FakeMessage[] {
    return [...this.messages.values()].filter((message) => !message.deleted);
  }

  /** The message that answers an interaction (its original response), if any. */
  originalResponse(token: string): FakeMessage | undefined {
    const id = this.interactions.get(token)?.originalMessageId;
    return id === undefined ? undefined : this.messages.get(id);
  }

  /** Resolves when `check` returns something other than undefined, re-checking after every change. */
  async waitFor<T>(check: () => T | undefined | false, description = 'condition', timeoutMs = 15_000): Promise<T> {
    const first = check();
    if (first !== undefined && first !== false) return first;
    return new Promise<T>((resolve, reject) => {
      const onChange = (): void => {
        let value: T | undefined | false;
        try {
          value = check();
        } catch (error) {
          cleanup();
          reject(error as Error);
          return;
        }
        if (value !== undefined && value !== false) {
          cleanup();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`FakeDiscord: timed out waiting for ${description}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.#events.off('change', onChange);
      };
      this.#events.on('change', onChange);
    });
  }

  /** Calls `listener` after every recorded change; returns a function that stops it. */
  onChange(listener: () => void): () => void {
    this.#events.on('change', listener);
    return () => this.#events.off('change', listener);
  }

  // ---------------------------------------------------------------- interactions

  /** Builds a slash-command interaction from `actor` and registers its token. */
  slashCommand(name: string, options: FakeCommandOption[], actor: FakeActor): Record<string, unknown> {
    return this.#interaction(InteractionKind.ApplicationCommand, actor, {
      data: { id: this.#nextId(), name, type: 1, options },
    });
  }

  /** Builds the interaction of `actor` pressing the button `customId` on `message`. */
  buttonPress(message: FakeMessage, customId: string, actor: FakeActor): Record<string, unknown> {
    const known = message.components.some((row) => row.components.some((button) => button.custom_id === customId));
    if (!known) throw new Error(`FakeDiscord: message ${message.id} has no button ${customId}`);
    return this.#interaction(InteractionKind.MessageComponent, { ...actor, channelId: message.channelId }, {
      data: { custom_id: customId, component_type: 2 },
      message: this.#messageJson(message),
    }, message.id);
  }

  /** Builds a button press with any custom_id, as a forged request would carry. */
  forgedButtonPress(message: FakeMessage, customId: string, actor: FakeActor): Record<string, unknown> {
    return this.#interaction(InteractionKind.MessageComponent, { ...actor, channelId: message.channelId }, {
      data: { custom_id: customId, component_type: 2 },
      message: this.#messageJson(message),
    }, message.id);
  }

  /** A PING, as Discord sends to check an HTTP endpoint. */
  ping(): Record<string, unknown> {
    const id = this.#nextId();
    return { id, application_id: this.applicationId, type: InteractionKind.Ping, token: `ping-${id}`, version: 1 };
  }

  /** Sends an INTERACTION_CREATE dispatch to the newest identified gateway session. */
  dispatchInteraction(interaction: Record<string, unknown>): void {
    this.dispatch('INTERACTION_CREATE', interaction);
  }

  /** Sends a dispatch event to the newest identified gateway session. */
  dispatch(event: string, data: unknown): void {
    const session = [...this.#sessions.values()].reverse().find((candidate) => candidate.socket !== undefined);
    if (!session?.socket) throw new Error('FakeDiscord: no gateway session is connected');
    this.#sendDispatch(session, event, data);
  }

  /** Number of gateway sessions with an open socket that identified or resumed. */
  connectedSessions(): number {
    return [...this.#sessions.values()].filter((session) => session.socket !== undefined).length;
  }

  /** Closes every gateway socket with `code` (4000 lets the client resume). */
  dropGatewayConnections(code = 4000): void {
    for (const session of this.#sessions.values()) {
      session.socket?.close(code, 'fake disconnect');
      session.socket = undefined;
    }
  }

  /**
   * POSTs an interaction to an HTTP-mode bot, signed with the fake's key (or with a bad or
   * missing signature), and applies the interaction response it returns, as Discord does.
   */
  async postInteraction(url: string, interaction: Record<string, unknown>, signature: 'valid' | 'bad' | 'missing' = 'valid', options: { timestamp?: number } = {}): Promise<{ status: number; body: unknown }> {
    const body = JSON.stringify(interaction);
    const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (signature !== 'missing') {
      const signed = sign(null, Buffer.from(timestamp + body), this.#signingKey);
      if (signature === 'bad') signed[0] = (signed[0] ?? 0) ^ 0xff;
      headers['x-signature-ed25519'] = signed.toString('hex');
      headers['x-signature-timestamp'] = timestamp;
    }
    const token = typeof interaction.token === 'string' ? interaction.token : undefined;
    // Discord learns of the answer only from the HTTP response: calls for this token wait for it.
    let applied: () => void = () => undefined;
    if (token) this.#awaitingHttpResponse.set(token, new Promise<void>((resolve) => (applied = resolve)));
    try {
      return await this.#postSigned(url, body, headers, interaction, token);
    } finally {
      if (token) this.#awaitingHttpResponse.delete(token);
      applied();
    }
  }

  async #postSigned(url: string, body: string, headers: Record<string, string>, interaction: Record<string, unknown>, token: string | undefined): Promise<{ status: number; body: unknown }> {
    const response = await fetch(url, { method: 'POST', headers, body });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      // keep the text
    }
    this.httpResponses.push({ status: response.status, body: parsed, interactionToken: token });
    if (response.ok && token && this.interactions.has(token) && isRecord(parsed)) {
      const outcome = this.#applyCallback(this.interactions.get(token)!, parsed, []);
      if (outcome.status >= 400) throw new Error(`FakeDiscord: bad interaction response: ${JSON.stringify(outcome.body)}`);
    }
    this.#changed();
    return { status: response.status, body: parsed };
  }

  // ---------------------------------------------------------------- REST

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const raw = await readBody(request);
    const method = (request.method ?? 'GET').toUpperCase();
    const versioned = /^\/api\/v10(\/.*)$/.exec(url.pathname);
    const path = (versioned?.[1] ?? url.pathname).split('/').map((part) => decodeURIComponent(part)).join('/');
    const { json, files } = await parsePayload(request.headers['content-type'], raw);
    const tokenInPath = /^\/(?:interactions\/[^/]+|webhooks\/[^/]+)\/([^/]+)/.exec(path)?.[1];
    const pendingHttp = tokenInPath === undefined ? undefined : this.#awaitingHttpResponse.get(tokenInPath);
    if (pendingHttp) await pendingHttp;
    const authorization = request.headers.authorization;
    const call: RecordedCall = {
      method,
      path,
      route: routeOf(path),
      query: Object.fromEntries(url.searchParams),
      auth: authorization?.split(' ')[0],
      json,
      files,
      status: 0,
      at: Date.now(),
    };
    let result: { status: number; body?: unknown };
    const failure = this.#failures.find((candidate) => candidate.remaining > 0 && candidate.method === method && candidate.route === call.route);
    if (!versioned) {
      result = { status: 404, body: { message: '404: Not Found', code: 0 } };
    } else if (failure) {
      failure.remaining -= 1;
      result = { status: failure.status, body: failure.body };
    } else {
      result = this.#route(method, path, json, files, authorization);
    }
    call.status = result.status;
    this.calls.push(call);
    this.#send(response, result.status, result.body);
    this.#changed();
  }

  #route(method: string, path: string, json: unknown, files: RecordedCall['files'], authorization: string | undefined): { status: number; body?: unknown } {
    const parts = path.split('/').filter(Boolean);
    const botAuthorised = authorization === `Bot ${this.token}`;
    const unauthorised = { status: 401, body: { message: '401: Unauthorized', code: 0 } };
    const body = isRecord(json) ? json : {};

    if (method === 'GET' && (path === '/gateway/bot' || path === '/gateway')) {
      if (path === '/gateway/bot' && !botAuthorised) return unauthorised;
      return {
        status: 200,
        body: { url: this.gatewayUrl, shards: 1, session_start_limit: { total: 1000, remaining: 999, reset_after: 0, max_concurrency: 1 } },
      };
    }
    if (method === 'GET' && path === '/users/@me') return botAuthorised ? { status: 200, body: this.botUser } : unauthorised;

    // /interactions/{id}/{token}/callback
    if (parts[0] === 'interactions' && parts.length === 4 && parts[3] === 'callback' && method === 'POST') {
      const state = this.interactions.get(parts[2] ?? '');
      if (!state || state.id !== parts[1]) return { status: 404, body: { message: 'Unknown interaction', code: 10062 } };
      if (state.expired) return invalidWebhookToken();
      return this.#applyCallback(state, body, files);
    }

    // /webhooks/{app}/{token}[/messages/{id}]
    if (parts[0] === 'webhooks' && parts.length >= 3) {
      const state = this.interactions.get(parts[2] ?? '');
      if (parts[1] !== this.applicationId || !state) return { status: 404, body: { message: 'Unknown Webhook', code: 10015 } };
      if (state.expired) return invalidWebhookToken();
      if (parts.length === 3 && method === 'POST') return this.#followup(state, body, files);
      if (parts.length === 5 && parts[3] === 'messages') {
        const messageId = parts[4] === '@original' ? state.originalMessageId : parts[4];
        const message = messageId === undefined ? undefined : this.messages.get(messageId);
        const belongs = message !== undefined && !message.deleted && (message.id === state.originalMessageId || (message.source.kind === 'interaction' && message.source.token === state.token));
        if (!message || !belongs) return { status: 404, body: { message: 'Unknown Message', code: 10008 } };
        if (method === 'GET') return { status: 200, body: this.#messageJson(message) };
        if (method === 'DELETE') {
          message.deleted = true;
          return { status: 204 };
        }
        if (method === 'PATCH') return this.#edit(message, body, files, state.attachmentSizeLimit);
      }
    }

    // /channels/{id}/messages[/{id}]
    if (parts[0] === 'channels' && parts[2] === 'messages') {
      if (!botAuthorised) return unauthorised;
      const channelId = parts[1] ?? '';
      if (parts.length === 3 && method === 'POST') {
        const problem = validateMessage(body, files, defaultUploadLimit);
        if (problem) return problem;
        const message = this.#createMessage(channelId, body, files, { kind: 'bot' }, false);
        return { status: 200, body: this.#messageJson(message) };
      }
      if (parts.length === 4) {
        const message = this.messages.get(parts[3] ?? '');
        if (!message || message.deleted || message.channelId !== channelId) return { status: 404, body: { message: 'Unknown Message', code: 10008 } };
        if (method === 'GET') return { status: 200, body: this.#messageJson(message) };
        if (method === 'PATCH') {
          if (message.source.kind !== 'bot') return { status: 403, body: { message: 'Cannot edit a message authored by another user', code: 50005 } };
          return this.#edit(message, body, files, defaultUploadLimit);
        }
      }
    }

    // /applications/{id}/commands and /applications/{id}/guilds/{gid}/commands
    if (parts[0] === 'applications' && parts[1] === this.applicationId) {
      if (!botAuthorised) return unauthorised;
      const scope = parts.length === 3 && parts[2] === 'commands' ? 'global' : parts.length === 5 && parts[2] === 'guilds' && parts[4] === 'commands' ? parts[3] : undefined;
      if (scope !== undefined) {
        if (method === 'PUT') {
          if (!Array.isArray(json)) return { status: 400, body: { message: 'Invalid Form Body', code: 50035 } };
          const problem = validateCommands(json);
          if (problem) return problem;
          const saved = json.map((command) => ({ ...(command as object), id: this.#nextId(), application_id: this.applicationId, version: this.#nextId() }));
          this.registeredCommands.set(scope, saved);
          return { status: 200, body: saved };
        }
        if (method === 'GET') return { status: 200, body: this.registeredCommands.get(scope) ?? [] };
      }
    }
    return { status: 404, body: { message: '404: Not Found', code: 0 } };
  }

  #applyCallback(state: FakeInteractionState, body: Record<string, unknown>, files: RecordedCall['files']): { status: number; body?: unknown } {
    if (state.callbackType !== undefined) return { status: 400, body: { message: 'Interaction has already been acknowledged.', code: 40060 } };
    const type = Number(body.type);
    const data = isRecord(body.data) ? body.data : {};
    const isComponent = state.type === InteractionKind.MessageComponent;
    switch (type) {
      case CallbackKind.Pong:
        if (state.type !== InteractionKind.Ping) return invalidForm('PONG answers only a PING');
        state.callbackType = type;
        return { status: 204 };
      case CallbackKind.ChannelMessageWithSource: {
        const problem = validateMessage(data, files, state.attachmentSizeLimit ?? defaultUploadLimit);
        if (problem) return problem;
        state.callbackType = type;
        state.originalMessageId = this.#createMessage(state.channelId, data, files, { kind: 'interaction', token: state.token, interactionId: state.id }, false).id;
        return { status: 204 };
      }
      case CallbackKind.DeferredChannelMessageWithSource: {
        state.callbackType = type;
        const flags = Number(data.flags ?? 0) & EphemeralFlag;
        state.originalMessageId = this.#createMessage(state.channelId, { content: '', flags }, [], { kind: 'interaction', token: state.token, interactionId: state.id }, true).id;
        return { status: 204 };
      }
      case CallbackKind.DeferredUpdateMessage:
        if (!isComponent) return invalidForm('DEFERRED_UPDATE_MESSAGE needs a component interaction');
        state.callbackType = type;
        state.originalMessageId = state.sourceMessageId;
        return { status: 204 };
      case CallbackKind.UpdateMessage: {
        if (!isComponent || state.sourceMessageId === undefined) return invalidForm('UPDATE_MESSAGE needs a component interaction');
        const message = this.messages.get(state.sourceMessageId);
        if (!message) return { status: 404, body: { message: 'Unknown Message', code: 10008 } };
        const outcome = this.#edit(message, data, files, state.attachmentSizeLimit);
        if (outcome.status >= 400) return outcome;
        state.callbackType = type;
        state.originalMessageId = message.id;
        return { status: 204 };
      }
      default:
        return invalidForm(`unknown interaction callback type ${String(body.type)}`);
    }
  }

  #followup(state: FakeInteractionState, body: Record<string, unknown>, files: RecordedCall['files']): { status: number; body?: unknown } {
    if (state.callbackType === undefined) return { status: 404, body: { message: 'Unknown Webhook', code: 10015 } };
    const original = state.originalMessageId === undefined ? undefined : this.messages.get(state.originalMessageId);
    // Discord: the first followup after a deferred response fills in the "thinking…" message.
    if (original?.loading && state.callbackType === CallbackKind.DeferredChannelMessageWithSource) {
      return this.#edit(original, body, files, state.attachmentSizeLimit);
    }
    const problem = validateMessage(body, files, state.attachmentSizeLimit ?? defaultUploadLimit);
    if (problem) return problem;
    const message = this.#createMessage(state.channelId, body, files, { kind: 'interaction', token: state.token, interactionId: state.id }, false);
    return { status: 200, body: this.#messageJson(message) };
  }

  #edit(message: FakeMessage, body: Record<string, unknown>, files: RecordedCall['files'], uploadLimit: number | undefined): { status: number; body?: unknown } {
    const problem = validateMessage(body, files, uploadLimit ?? defaultUploadLimit);
    if (problem) return problem;
    if (typeof body.content === 'string' || body.content === null) message.content = (body.content as string | null) ?? '';
    if (Array.isArray(body.components)) message.components = body.components as FakeActionRow[];
    if (Array.isArray(body.embeds)) message.embeds = body.embeds;
    const uploaded = this.#attachments(body, files);
    if (Array.isArray(body.attachments)) {
      const keep = new Set((body.attachments as Array<Record<string, unknown>>).map((entry) => String(entry.id)));
      message.attachments = [...message.attachments.filter((attachment) => keep.has(attachment.id)), ...uploaded];
    } else {
      message.attachments = [...message.attachments, ...uploaded];
    }
    message.loading = false;
    message.edits += 1;
    this.#snapshot(message);
    return { status: 200, body: this.#messageJson(message) };
  }

  #createMessage(channelId: string, body: Record<string, unknown>, files: RecordedCall['files'], source: FakeMessage['source'], loading: boolean): FakeMessage {
    const message: FakeMessage = {
      id: this.#nextId(),
      channelId,
      content: typeof body.content === 'string' ? body.content : '',
      components: Array.isArray(body.components) ? (body.components as FakeActionRow[]) : [],
      embeds: Array.isArray(body.embeds) ? body.embeds : [],
      flags: Number(body.flags ?? 0),
      attachments: this.#attachments(body, files),
      source,
      loading,
      edits: 0,
      history: [],
      deleted: false,
      createdAt: Date.now(),
    };
    this.#snapshot(message);
    this.messages.set(message.id, message);
    return message;
  }

  #attachments(body: Record<string, unknown>, files: RecordedCall['files']): FakeAttachment[] {
    const described = Array.isArray(body.attachments) ? (body.attachments as Array<Record<string, unknown>>) : [];
    return files.map((file, index) => {
      const slot = /^files\[(\d+)\]$/.exec(file.field)?.[1] ?? String(index);
      const description = described.find((entry) => String(entry.id) === slot);
      const filename = typeof description?.filename === 'string' ? description.filename : file.filename;
      const id = this.#nextId();
      return { id, filename, contentType: file.contentType, size: file.data.length, data: file.data, url: `http://127.0.0.1:${this.#port}/attachments/${id}/${filename}` };
    });
  }

  #snapshot(message: FakeMessage): void {
    message.history.push({
      content: message.content,
      attachments: message.attachments.map((attachment) => attachment.filename),
      components: message.components.length,
      loading: message.loading,
    });
  }

  #messageJson(message: FakeMessage): Record<string, unknown> {
    return {
      id: message.id,
      type: message.source.kind === 'interaction' ? 20 : 0,
      channel_id: message.channelId,
      author: this.botUser,
      content: message.content,
      components: message.components,
      embeds: message.embeds,
      flags: message.flags | (message.loading ? 1 << 7 : 0),
      attachments: message.attachments.map((attachment) => ({
        id: attachment.id,
        filename: attachment.filename,
        size: attachment.size,
        url: attachment.url,
        proxy_url: attachment.url,
        content_type: attachment.contentType,
      })),
      timestamp: new Date(message.createdAt).toISOString(),
      edited_timestamp: message.edits > 0 ? new Date().toISOString() : null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      pinned: false,
    };
  }

  #interaction(type: number, actor: FakeActor, extra: Record<string, unknown>, sourceMessageId?: string): Record<string, unknown> {
    const id = this.#nextId();
    const token = `itoken-${randomBytes(12).toString('hex')}`;
    const channelId = actor.channelId ?? (actor.guildId === undefined ? `dm-${actor.id}` : '1300000000000000001');
    const user: FakeUser = { id: actor.id, username: actor.username ?? `user${actor.id}`, global_name: actor.username ?? `User ${actor.id}`, discriminator: '0' };
    this.interactions.set(token, {
      id,
      token,
      type,
      channelId,
      callbackType: undefined,
      originalMessageId: undefined,
      sourceMessageId,
      expired: false,
      attachmentSizeLimit: actor.attachmentSizeLimit,
    });
    const interaction: Record<string, unknown> = {
      id,
      application_id: this.applicationId,
      type,
      token,
      version: 1,
      channel_id: channelId,
      channel: { id: channelId, type: actor.guildId === undefined ? 1 : 0 },
      locale: 'en-US',
      app_permissions: '2248473465835073',
      entitlements: [],
      authorizing_integration_owners: { '0': actor.guildId ?? '0' },
      context: actor.guildId === undefined ? 1 : 0,
      ...extra,
    };
    if (actor.attachmentSizeLimit !== undefined) interaction.attachment_size_limit = actor.attachmentSizeLimit;
    if (actor.guildId === undefined) {
      interaction.user = user;
    } else {
      interaction.guild_id = actor.guildId;
      interaction.guild_locale = 'en-US';
      interaction.member = { user, roles: [], permissions: actor.permissions ?? '0', joined_at: new Date(0).toISOString(), deaf: false, mute: false, flags: 0, nick: null };
    }
    this.#changed();
    return interaction;
  }

  // ---------------------------------------------------------------- gateway

  #onGatewayConnection(socket: WebSocket): void {
    let session: GatewaySession | undefined;
    socket.send(JSON.stringify({ op: 10, d: { heartbeat_interval: this.#heartbeatIntervalMs }, s: null, t: null }));
    socket.on('message', (data) => {
      let payload: { op?: number; d?: Record<string, unknown> | number | null };
      try {
        payload = JSON.parse(String(data)) as typeof payload;
      } catch {
        socket.close(4002, 'Decode error');
        return;
      }
      const op = Number(payload.op);
      this.gatewayOps.set(op, (this.gatewayOps.get(op) ?? 0) + 1);
      const d = isRecord(payload.d) ? payload.d : {};
      if (op === 1) {
        socket.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
      } else if (op === 2) {
        if (d.token !== this.token) {
          socket.close(4004, 'Authentication failed.');
          return;
        }
        this.identifies.push({ token: String(d.token), intents: Number(d.intents) });
        session = { id: randomBytes(16).toString('hex'), socket, sequence: 0, sent: [], intents: Number(d.intents) };
        this.#sessions.set(session.id, session);
        this.#sendDispatch(session, 'READY', {
          v: 10,
          user: this.botUser,
          guilds: [],
          session_id: session.id,
          resume_gateway_url: this.gatewayUrl,
          shard: [0, 1],
          application: { id: this.applicationId, flags: 0 },
        });
      } else if (op === 6) {
        const resumed = this.#sessions.get(String(d.session_id));
        if (!resumed || d.token !== this.token) {
          socket.send(JSON.stringify({ op: 9, d: false, s: null, t: null }));
          return;
        }
        session = resumed;
        session.socket = socket;
        const after = Number(d.seq ?? 0);
        for (const entry of session.sent) if (entry.s > after) socket.send(entry.payload);
        this.#sendDispatch(session, 'RESUMED', {});
      }
      this.#changed();
    });
    socket.on('close', () => {
      if (session && session.socket === socket) session.socket = undefined;
      this.#changed();
    });
  }

  #sendDispatch(session: GatewaySession, event: string, data: unknown): void {
    session.sequence += 1;
    const payload = JSON.stringify({ op: 0, t: event, s: session.sequence, d: data });
    session.sent.push({ s: session.sequence, payload });
    session.socket?.send(payload);
  }

  // ---------------------------------------------------------------- helpers

  #nextId(): string {
    this.#snowflake += 1n;
    return this.#snowflake.toString();
  }

  #send(response: ServerResponse, status: number, body: unknown): void {
    if (status === 204 || body === undefined) {
      response.writeHead(status === 200 ? 204 : status);
      response.end();
      return;
    }
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  }

  #changed(): void {
    this.#events.emit('change');
  }
}

function invalidWebhookToken(): { status: number; body: unknown } {
  return { status: 401, body: { message: 'Invalid Webhook Token', code: 50027 } };
}

function invalidForm(detail: string): { status: number; body: unknown } {
  return { status: 400, body: { message: 'Invalid Form Body', code: 50035, errors: { detail } } };
}

/** Discord's message limits, as its API enforces them. */
function validateMessage(body: Record<string, unknown>, files: RecordedCall['files'], uploadLimit: number): { status: number; body: unknown } | undefined {
  if (typeof body.content === 'string' && body.content.length > 2000) return invalidForm('content is longer than 2000');
  const total = files.reduce((sum, file) => sum + file.data.length, 0);
  if (files.some((file) => file.data.length > uploadLimit) || total > uploadLimit) {
    return { status: 413, body: { message: 'Request entity too large', code: 40005 } };
  }
  if (body.components !== undefined) {
    if (!Array.isArray(body.components)) return invalidForm('components must be an array');
    if (body.components.length > 5) return invalidForm('more than 5 action rows');
    const seen = new Set<string>();
    for (const row of body.components as Array<Record<string, unknown>>) {
      if (row.type !== 1 || !Array.isArray(row.components)) return invalidForm('a top-level component is not an action row');
      if (row.components.length < 1 || row.components.length > 5) return invalidForm('an action row must hold 1 to 5 buttons');
      for (const button of row.components as Array<Record<string, unknown>>) {
        if (button.type !== 2) return invalidForm('only buttons are expected');
        if (button.style === 5) continue;
        if (typeof button.custom_id !== 'string' || button.custom_id.length < 1 || button.custom_id.length > 100) return invalidForm('custom_id must be 1..100 characters');
        if (seen.has(button.custom_id)) return invalidForm('custom_id values must be unique');
        seen.add(button.custom_id);
        if (button.label === undefined && button.emoji === undefined) return invalidForm('a button needs a label or an emoji');
        if (typeof button.label === 'string' && button.label.length > 80) return invalidForm('label is longer than 80');
      }
    }
  }
  return undefined;
}

function validateCommands(commands: unknown[]): { status: number; body: unknown } | undefined {
  const names = new Set<string>();
  for (const command of commands) {
    if (!isRecord(command) || typeof command.name !== 'string' || !/^[-_\p{L}\p{N}]{1,32}$/u.test(command.name)) return invalidForm('command name');
    if (command.name !== command.name.toLowerCase()) return invalidForm('command names are lower case');
    if (names.has(command.name)) return invalidForm('duplicate command name');
    names.add(command.name);
    if (typeof command.description !== 'string' || command.description.length < 1 || command.description.length > 100) return invalidForm(`description of ${command.name}`);
  }
  return undefined;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function parsePayload(contentType: string | undefined, raw: Buffer): Promise<{ json: unknown; files: RecordedCall['files'] }> {
  if (raw.length === 0) return { json: undefined, files: [] };
  if (contentType?.startsWith('multipart/form-data')) {
    const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': contentType } }).formData();
    const files: RecordedCall['files'] = [];
    let json: unknown;
    const entries: Array<[string, FormDataEntryValue]> = [];
    form.forEach((value, field) => entries.push([field, value]));
    for (const [field, value] of entries) {
      if (typeof value === 'string') {
        if (field === 'payload_json') json = JSON.parse(value);
      } else {
        files.push({ field, filename: value.name, contentType: value.type, data: Buffer.from(await value.arrayBuffer()) });
      }
    }
    return { json, files };
  }
  const text = raw.toString('utf8');
  try {
    return { json: JSON.parse(text), files: [] };
  } catch {
    return { json: text, files: [] };
  }
}

/** `/webhooks/123/abc/messages/@original` → `/webhooks/:app/:token/messages/@original`. */
export function routeOf(path: string): string {
  const parts = path.split('/').filter(Boolean);
  const names: Record<string, string[]> = {
    interactions: ['interactions', ':id', ':token', 'callback'],
    webhooks: ['webhooks', ':app', ':token', 'messages', ':message'],
    channels: ['channels', ':channel', 'messages', ':message'],
    applications: ['applications', ':app', 'guilds', ':guild', 'commands'],
  };
  const pattern = names[parts[0] ?? ''];
  if (!pattern) return `/${parts.join('/')}`;
  return `/${parts
    .map((part, index) => {
      const name = pattern[index];
      if (part === '@original' || part === '@me') return part;
      return name?.startsWith(':') ? name : part;
    })
    .join('/')}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
