/**
 * A fake Slack for tests: a local HTTP server for the Web API methods the adapter uses
 * (auth.test, chat.postMessage, chat.update, chat.postEphemeral, files.getUploadURLExternal, the
 * upload URL it hands out, files.completeUploadExternal, apps.connections.open) and a WebSocket
 * endpoint that speaks Socket Mode. It records every call, keeps channel messages, ephemeral
 * messages and uploaded files, and injects rate limits and failures on demand.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** One Web API call the fake received. */
export interface SlackCall {
  method: string;
  params: Record<string, unknown>;
  /** The bearer token it carried (header or `token` parameter). */
  token: string | undefined;
  /** What the fake answered: an HTTP status other than 200, or a Slack error. */
  outcome: 'ok' | 'rate_limited' | 'http_error' | 'slack_error';
}

/** A message the bot posted into a channel (or thread). */
export interface SlackMessage {
  channel: string;
  ts: string;
  text: string;
  blocks: SlackBlock[] | undefined;
  threadTs: string | undefined;
  /** Files shared with the message (files.completeUploadExternal). */
  fileIds: string[];
  /** How many times chat.update changed it. */
  updates: number;
  /** Every text it showed, oldest first (the last is `text`). */
  history: string[];
  /** The token it was posted with. */
  token: string | undefined;
}

/** An ephemeral message, visible to one user. */
export interface SlackEphemeral {
  channel: string;
  user: string;
  text: string;
  blocks: SlackBlock[] | undefined;
  threadTs: string | undefined;
}

/** A file announced by files.getUploadURLExternal. */
export interface SlackFile {
  id: string;
  filename: string;
  length: number;
  /** The bytes posted to the upload URL, once they arrived. */
  bytes: Buffer | undefined;
  /** The content type of the multipart part (or of the raw body). */
  contentType: string | undefined;
  completed: boolean;
  channelId: string | undefined;
  threadTs: string | undefined;
  initialComment: string | undefined;
  title: string | undefined;
}

/** The Block Kit subset the fake understands. */
export interface SlackBlock {
  type: string;
  block_id?: string;
  text?: { type: string; text: string };
  elements?: Array<{ type: string; action_id?: string; value?: string; text?: { type: string; text: string }; style?: string }>;
  [key: string]: unknown;
}

/** A fault to inject into the next call(s) of a method (`upload` names the upload URL). */
export interface SlackFault {
  /** 429 with this Retry-After (seconds). */
  retryAfterSeconds?: number;
  /** An HTTP status other than 200 and 429. */
  httpStatus?: number;
  /** A Slack `{ ok: false, error }` answer. */
  error?: string;
  /** How many calls it applies to. Default 1. */
  times?: number;
}

/** An envelope acknowledged over Socket Mode. */
export interface SocketAck {
  envelope_id: string;
  payload?: Record<string, unknown>;
}

export interface FakeSlackOptions {
  botToken?: string;
  appToken?: string;
  teamId?: string;
  botUserId?: string;
}

/** Default identities the fake accepts. */
export const fakeSlackDefaults = {
  botToken: 'xoxb-fake-bot-token-0000',
  appToken: 'xapp-fake-app-token-0000',
  teamId: 'T0FAKE',
  botUserId: 'U0BOT',
  botId: 'B0BOT',
} as const;

/** The fake Slack server. Start it with {@link FakeSlack.start}; stop it with {@link FakeSlack.close}. */
export class FakeSlack {
  readonly calls: SlackCall[] = [];
  readonly messages: SlackMessage[] = [];
  readonly ephemerals: SlackEphemeral[] = [];
  readonly files = new Map<string, SlackFile>();
  /** Bodies POSTed to response URLs handed out by {@link responseUrl}. */
  readonly responses: Array<{ id: string; body: Record<string, unknown> }> = [];
  /** Every Socket Mode acknowledgement received. */
  readonly acks: SocketAck[] = [];
  readonly botToken: string;
  readonly appToken: string;
  readonly teamId: string;
  readonly botUserId: string;

  private readonly server: http.Server;
  private readonly sockets = new WebSocketServer({ noServer: true });
  private readonly connections = new Set<WebSocket>();
  private readonly faults = new Map<string, SlackFault[]>();
  private responseUrlsExpired = false;
  private readonly events = new EventEmitter();
  private nextId = 1;
  private clock = 1_700_000_000;
  private baseUrl = '';

  private constructor(options: FakeSlackOptions) {
    this.botToken = options.botToken ?? fakeSlackDefaults.botToken;
    this.appToken = options.appToken ?? fakeSlackDefaults.appToken;
    this.teamId = options.teamId ?? fakeSlackDefaults.teamId;
    this.botUserId = options.botUserId ?? fakeSlackDefaults.botUserId;
    this.events.setMaxListeners(100);
    this.server = http.createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' });
        response.end(String(error));
      });
    });
    this.server.on('upgrade', (request, socket, head) => {
      const url = new URL(request.url ?? '/', 'http://fake');
      if (url.pathname !== '/link') {
        socket.destroy();
        return;
      }
      this.sockets.handleUpgrade(request, socket, head, (connection) => this.accept(connection));
    });
  }

  /** Starts a fake on 127.0.0.1 and a free port. */
  static async start(options: FakeSlackOptions = {}): Promise<FakeSlack> {
    const fake = new FakeSlack(options);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    const { port } = fake.server.address() as AddressInfo;
    fake.baseUrl = `http://127.0.0.1:${port}`;
    return fake;
  }

  /** The Web API base URL, for WebClient's `slackApiUrl` / SLACK_API_URL. */
  get apiUrl(): string {
    return `${this.baseUrl}/api/`;
  }

  /** A fresh response_url that records what is POSTed to it. */
  responseUrl(): string {
    return `${this.baseUrl}/respond/${this.newId('R')}`;
  }

  /** Makes every response_url handed out so far answer 404, as Slack's do after 30 minutes. */
  expireResponseUrls(): void {
    this.responseUrlsExpired = true;
  }

  /** Makes the next `times` calls of `method` fail (`upload` names the upload URL). */
  inject(method: string, fault: SlackFault): void {
    const list = this.faults.get(method) ?? [];
    for (let index = 0; index < (fault.times ?? 1); index += 1) list.push(fault);
    this.faults.set(method, list);
  }

  /** Calls of one method, in order. */
  callsOf(method: string): SlackCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  /** Messages that carry buttons (actions blocks). */
  buttonMessages(): SlackMessage[] {
    return this.messages.filter((message) => (message.blocks ?? []).some((block) => block.type === 'actions'));
  }

  /** Waits until `probe` returns something other than undefined or false, re-checking on every call. */
  async waitFor<T>(probe: () => T | undefined | false, timeoutMs = 15_000, what = 'a condition'): Promise<T> {
    const first = probe();
    if (first !== undefined && first !== false) return first;
    return new Promise<T>((resolve, reject) => {
      const check = (): void => {
        const value = probe();
        if (value !== undefined && value !== false) {
          cleanup();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`FakeSlack: timed out waiting for ${what}; calls so far: ${this.calls.map((call) => `${call.method}:${call.outcome}`).join(', ')}`));
      }, timeoutMs);
      const interval = setInterval(check, 25);
      const cleanup = (): void => {
        clearTimeout(timer);
        clearInterval(interval);
        this.events.off('change', check);
      };
      this.events.on('change', check);
    });
  }

  /** True while a Socket Mode client is connected. */
  get socketConnected(): boolean {
    return [...this.connections].some((connection) => connection.readyState === connection.OPEN);
  }

  /** Waits for a Socket Mode client to connect (and receive `hello`). */
  async waitForSocket(timeoutMs = 15_000): Promise<void> {
    await this.waitFor(() => this.socketConnected, timeoutMs, 'a Socket Mode connection');
  }

  /**
   * Sends an envelope over Socket Mode (`slash_commands`, `interactive`, `events_api`) and resolves
   * with the client's acknowledgement.
   */
  async sendEnvelope(type: string, payload: Record<string, unknown>, timeoutMs = 15_000): Promise<SocketAck> {
    const connection = [...this.connections].reverse().find((candidate) => candidate.readyState === candidate.OPEN);
    if (!connection) throw new Error('FakeSlack: no Socket Mode client is connected');
    const envelopeId = this.newId('E');
    connection.send(JSON.stringify({ envelope_id: envelopeId, type, payload, accepts_response_payload: type !== 'events_api', retry_attempt: 0, retry_reason: '' }));
    return this.waitFor(() => this.acks.find((ack) => ack.envelope_id === envelopeId), timeoutMs, `the ack of envelope ${envelopeId}`);
  }

  /** Tells connected Socket Mode clients to reconnect, as Slack does when it recycles a server. */
  sendDisconnect(): void {
    for (const connection of this.connections) connection.send(JSON.stringify({ type: 'disconnect', reason: 'refresh_requested' }));
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.terminate();
    this.sockets.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(connection: WebSocket): void {
    this.connections.add(connection);
    connection.on('message', (data) => {
      try {
        const message = JSON.parse(String(data)) as SocketAck;
        if (typeof message.envelope_id === 'string') {
          this.acks.push(message);
          this.changed();
        }
      } catch {
        // Clients only send JSON acks; anything else is ignored, as Slack does.
      }
    });
    connection.on('close', () => {
      this.connections.delete(connection);
      this.changed();
    });
    connection.send(JSON.stringify({ type: 'hello', num_connections: this.connections.size, debug_info: { host: 'fake-slack' }, connection_info: { app_id: 'A0FAKE' } }));
    this.changed();
  }

  private changed(): void {
    this.events.emit('change');
  }

  private newId(prefix: string): string {
    const id = `${prefix}${String(this.nextId).padStart(6, '0')}`;
    this.nextId += 1;
    return id;
  }

  private newTs(): string {
    this.clock += 1;
    return `${this.clock}.${String(this.nextId++).padStart(6, '0')}`;
  }

  private takeFault(method: string): SlackFault | undefined {
    const list = this.faults.get(method);
    const fault = list?.shift();
    if (list && list.length === 0) this.faults.delete(method);
    return fault;
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const body = await readBody(request);
    if (request.method !== 'POST') {
      response.writeHead(405).end();
      return;
    }
    if (url.pathname.startsWith('/upload/')) {
      await this.handleUpload(url.pathname.slice('/upload/'.length), request, body, response);
      return;
    }
    if (url.pathname.startsWith('/respond/')) {
      if (this.responseUrlsExpired) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('expired_url');
        return;
      }
      this.responses.push({ id: url.pathname.slice('/respond/'.length), body: JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown> });
      this.changed();
      sendJson(response, 200, { ok: true });
      return;
    }
    if (!url.pathname.startsWith('/api/')) {
      response.writeHead(404).end();
      return;
    }
    const method = url.pathname.slice('/api/'.length);
    const params = parseParams(request.headers['content-type'], body);
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : typeof params.token === 'string' ? params.token : undefined;
    const call: SlackCall = { method, params, token, outcome: 'ok' };
    this.calls.push(call);

    const fault = this.takeFault(method);
    if (fault?.retryAfterSeconds !== undefined) {
      call.outcome = 'rate_limited';
      response.writeHead(429, { 'retry-after': String(fault.retryAfterSeconds), 'content-type': 'application/json' });
      response.end(JSON.stringify({ ok: false, error: 'ratelimited' }));
      this.changed();
      return;
    }
    if (fault?.httpStatus !== undefined) {
      call.outcome = 'http_error';
      response.writeHead(fault.httpStatus, { 'content-type': 'text/plain' }).end('injected failure');
      this.changed();
      return;
    }
    const expectedToken = method === 'apps.connections.open' ? this.appToken : this.botToken;
    const result = token !== expectedToken ? { ok: false, error: 'invalid_auth' } : fault?.error !== undefined ? { ok: false, error: fault.error } : this.apply(method, params, token);
    if (result.ok === false) call.outcome = 'slack_error';
    sendJson(response, 200, result);
    this.changed();
  }

  private async handleUpload(fileId: string, request: http.IncomingMessage, body: Buffer, response: http.ServerResponse): Promise<void> {
    this.calls.push({ method: 'upload', params: { file_id: fileId, bytes: body.length }, token: undefined, outcome: 'ok' });
    const call = this.calls[this.calls.length - 1]!;
    const fault = this.takeFault('upload');
    const file = this.files.get(fileId);
    if (fault?.httpStatus !== undefined || fault?.retryAfterSeconds !== undefined || !file) {
      call.outcome = 'http_error';
      response.writeHead(fault?.httpStatus ?? (file ? 500 : 404), { 'content-type': 'text/plain' }).end('upload failed');
      this.changed();
      return;
    }
    const contentType = request.headers['content-type'] ?? '';
    if (contentType.startsWith('multipart/form-data')) {
      // WebClient sends the bytes as one multipart part; the platform's Response parses it for us.
      const form = await new Response(new Uint8Array(body), { headers: { 'content-type': contentType } }).formData();
      let part: File | undefined;
      form.forEach((value) => {
        if (typeof value !== 'string') part ??= value;
      });
      file.bytes = part ? Buffer.from(await part.arrayBuffer()) : Buffer.alloc(0);
      file.contentType = part?.type || undefined;
    } else {
      file.bytes = body;
      file.contentType = contentType || undefined;
    }
    response.writeHead(200, { 'content-type': 'text/plain' }).end(`OK - ${file.bytes.length}`);
    this.changed();
  }

  private apply(method: string, params: Record<string, unknown>, token: string | undefined): Record<string, unknown> {
    const text = (key: string): string | undefined => (typeof params[key] === 'string' && params[key] !== '' ? (params[key] as string) : undefined);
    switch (method) {
      case 'auth.test':
        return { ok: true, url: 'https://fake.slack.com/', team: 'Fake', user: 'imagine', team_id: this.teamId, user_id: this.botUserId, bot_id: fakeSlackDefaults.botId };
      case 'apps.connections.open':
        return { ok: true, url: `${this.baseUrl.replace('http://', 'ws://')}/link?ticket=${this.newId('W')}` };
      case 'chat.postMessage': {
        const channel = text('channel');
        if (!channel) return { ok: false, error: 'channel_not_found' };
        if (!text('text') && !params.blocks) return { ok: false, error: 'no_text' };
        const message: SlackMessage = { channel, ts: this.newTs(), text: text('text') ?? '', blocks: blocksOf(params.blocks), threadTs: text('thread_ts'), fileIds: [], updates: 0, history: [text('text') ?? ''], token };
        this.messages.push(message);
        return { ok: true, channel, ts: message.ts, message: { type: 'message', text: message.text, ts: message.ts, blocks: message.blocks, bot_id: fakeSlackDefaults.botId } };
      }
      case 'chat.update': {
        const message = this.messages.find((candidate) => candidate.channel === text('channel') && candidate.ts === text('ts'));
        if (!message) return { ok: false, error: 'message_not_found' };
        if (text('text') !== undefined) {
          message.text = text('text')!;
          message.history.push(message.text);
        }
        if (params.blocks !== undefined) message.blocks = blocksOf(params.blocks);
        message.updates += 1;
        return { ok: true, channel: message.channel, ts: message.ts, text: message.text };
      }
      case 'chat.postEphemeral': {
        const channel = text('channel');
        const user = text('user');
        if (!channel) return { ok: false, error: 'channel_not_found' };
        if (!user) return { ok: false, error: 'user_not_in_channel' };
        this.ephemerals.push({ channel, user, text: text('text') ?? '', blocks: blocksOf(params.blocks), threadTs: text('thread_ts') });
        return { ok: true, message_ts: this.newTs() };
      }
      case 'files.getUploadURLExternal': {
        const filename = text('filename');
        const length = Number(params.length);
        if (!filename) return { ok: false, error: 'invalid_arguments' };
        if (!Number.isInteger(length) || length <= 0) return { ok: false, error: 'invalid_length' };
        const id = this.newId('F');
        this.files.set(id, { id, filename, length, bytes: undefined, contentType: undefined, completed: false, channelId: undefined, threadTs: undefined, initialComment: undefined, title: undefined });
        return { ok: true, upload_url: `${this.baseUrl}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal': {
        const entries = parseJson(params.files);
        if (!Array.isArray(entries) || entries.length === 0) return { ok: false, error: 'invalid_arguments' };
        const done: SlackFile[] = [];
        for (const entry of entries as Array<{ id?: string; title?: string }>) {
          const file = entry.id ? this.files.get(entry.id) : undefined;
          if (!file) return { ok: false, error: 'file_not_found' };
          if (!file.bytes) return { ok: false, error: 'file_upload_not_found' };
          if (file.bytes.length !== file.length) return { ok: false, error: 'file_size_mismatch' };
          done.push(file);
          file.title = entry.title;
        }
        const channelId = text('channel_id') ?? text('channels');
        for (const file of done) {
          file.completed = true;
          file.channelId = channelId;
          file.threadTs = text('thread_ts');
          file.initialComment = text('initial_comment');
        }
        if (channelId) {
          const comment = text('initial_comment') ?? '';
          this.messages.push({ channel: channelId, ts: this.newTs(), text: comment, blocks: undefined, threadTs: text('thread_ts'), fileIds: done.map((file) => file.id), updates: 0, history: [comment], token });
        }
        return { ok: true, files: done.map((file) => ({ id: file.id, name: file.filename, title: file.title ?? file.filename, size: file.length })) };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }
}

function sendJson(response: http.ServerResponse, status: number, value: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  response.end(JSON.stringify(value));
}

async function readBody(request: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseParams(contentType: string | undefined, body: Buffer): Record<string, unknown> {
  const raw = body.toString('utf8');
  if (raw === '') return {};
  if (contentType?.includes('application/json')) return JSON.parse(raw) as Record<string, unknown>;
  return Object.fromEntries(new URLSearchParams(raw));
}

function parseJson(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return undefined;
  }
}

function blocksOf(value: unknown): SlackBlock[] | undefined {
  const parsed = parseJson(value);
  return Array.isArray(parsed) ? (parsed as SlackBlock[]) : undefined;
}
