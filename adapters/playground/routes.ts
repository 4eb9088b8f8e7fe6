/**
 * The playground's HTTP routes, mounted on the shared web server:
 *
 * - `GET /`, `/app.js`, `/style.css`: the page (plain files from public/).
 * - `GET /events?client=<id>`: server-sent events for one page, each tagged with its job id.
 * - `POST /api/command` `{ text, client }`: what was typed in the prompt box.
 * - `POST /api/button` `{ customId, client }`: a U/V/🔄 button.
 * - `GET /jobs/<id>`: the job as JSON ({@link JobView}); `GET /jobs/<id>/image`: its grid or
 *   upscaled image; `GET /jobs/<id>/images/<n>`: image n (1-based) of the job.
 *
 * Commands and buttons go through commands/dispatch.ts exactly as on the chat platforms, as the
 * one local user `playground:local`.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findCommand } from '../../commands/definitions.js';
import { runButton, runCommand, type CommandReply, type CommandSettings } from '../../commands/dispatch.js';
import { failedText, progressText, queuedText, retryingText } from '../../commands/messages.js';
import { ErrorCode, UserError, toUserMessage } from '../../src/errors.js';
import { allowMethods, readBody, sendText, type HttpLogger, type RouteHandler } from '../../src/http/server.js';
import { composeGrid, defaultGutter, gridLayout } from '../../src/image/grid.js';
import type { GenerationService, JobListener, JobRecord, Requester } from '../../src/service/types.js';
import { EventHub, clientIdPattern } from './event-hub.js';
import { parseTypedCommand } from './input.js';
import { captionFor, imageUrlFor, jobView, type JobView } from './job-view.js';
import { OutputCache } from './output-cache.js';
import { PlaygroundGate } from './sign-in.js';

/** The folder of the page's files. */
export const publicFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');

/** The one anonymous local user of the playground. */
export const playgroundRequester: Requester = { platform: 'playground', userId: 'local', displayName: 'you' };

/** What the page gets back from POST /api/command and /api/button. */
export type PlaygroundReply = { kind: 'job'; job: JobView; text: string } | { kind: 'message'; text: string; ephemeral: boolean };

/** The service as the playground uses it. */
export type PlaygroundService = GenerationService;

export interface PlaygroundRoutesOptions {
  service: PlaygroundService;
  /** Passed to every command; `format` is forced to plain text. */
  settings?: CommandSettings;
  logger?: HttpLogger;
  /** Who the playground's user is; {@link playgroundRequester} by default. */
  requester?: Requester;
  /** Finished outputs kept in memory. Default 32. */
  cacheSize?: number;
  /** Heartbeat of the event streams. */
  heartbeatMs?: number;
  /** PLAYGROUND_PASSWORD: when set, the page and its API need a signed-in browser. */
  password?: string;
  /** How long a wrong password waits for its answer (tests shorten it). */
  wrongPasswordDelayMs?: number;
}

/** The handler, and what must be stopped on shutdown. */
export interface PlaygroundRoutes {
  handler: RouteHandler;
  hub: EventHub;
  /** Ends the event streams. */
  close(): void;
}

const staticFiles: Record<string, { file: string; contentType: string }> = {
  '/': { file: 'index.html', contentType: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', contentType: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', contentType: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', contentType: 'text/css; charset=utf-8' },
};

const securityHeaders = {
  'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const maxBodyBytes = 64 * 1024;

/** Builds the playground's routes. Reads the page's files once. */
export async function createPlaygroundRoutes(options: PlaygroundRoutesOptions): Promise<PlaygroundRoutes> {
  const { service, logger } = options;
  const requester = options.requester ?? playgroundRequester;
  const settings: CommandSettings = {
    ...options.settings,
    format: 'plain',
    onError: options.settings?.onError ?? ((error, where) => logger?.error({ err: error, where }, 'playground command failed')),
  };
  const gate = new PlaygroundGate(options.password, options.wrongPasswordDelayMs);
  const hub = new EventHub(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs });
  const cache = new OutputCache(options.cacheSize ?? 32);
  const files = new Map<string, Buffer>();
  for (const entry of Object.values(staticFiles)) {
    if (!files.has(entry.file)) files.set(entry.file, await readFile(path.join(publicFolder, entry.file)));
  }

  const listenerFor = (clientId: string): JobListener => ({
    queued: ({ job, position, etaMs }) => {
      hub.send(clientId, { type: 'queued', jobId: job.id, position, etaMs, text: queuedText(position, etaMs) });
    },
    started: ({ job, etaMs }) => {
      hub.send(clientId, { type: 'started', jobId: job.id, etaMs, text: plainProgress(0, etaMs) });
    },
    progress: ({ job, fraction, stage, etaMs }) => {
      hub.send(clientId, { type: 'progress', jobId: job.id, fraction, stage, etaMs, text: plainProgress(fraction, etaMs) });
    },
    retrying: ({ job, attempt }) => {
      hub.send(clientId, { type: 'retrying', jobId: job.id, attempt, text: retryingText(attempt) });
    },
    completed: ({ job, file }) => {
      cache.set(job.id, { data: file.data, contentType: file.contentType, width: file.width, height: file.height });
      hub.send(clientId, { type: 'completed', jobId: job.id, imageUrl: imageUrlFor(job.id), width: file.width, height: file.height, text: captionFor(job) });
    },
    failed: ({ job, error }) => {
      hub.send(clientId, { type: 'failed', jobId: job.id, text: failedText(error) });
    },
  });

  const toPageReply = async (reply: CommandReply): Promise<PlaygroundReply> => {
    if (reply.kind === 'message') return reply;
    return { kind: 'job', job: await viewOf(reply.ticket.job), text: reply.text };
  };

  const viewOf = async (job: JobRecord): Promise<JobView> => {
    const cached = cache.peek(job.id);
    return jobView(job, cached ?? gridSize(job));
  };

  const handler: RouteHandler = async (request, response, url) => {
    const pathname = url.pathname;
    if (pathname === '/signin') {
      await gate.signIn(request, response);
      return true;
    }
    // The stylesheet is shared with the sign-in form; everything else of the playground needs the cookie.
    const guarded = pathname !== '/style.css' && (pathname in staticFiles || pathname === '/events' || pathname.startsWith('/api/') || pathname.startsWith('/jobs/'));
    if (guarded && !gate.allows(request)) {
      gate.refuse(request, response, pathname);
      return true;
    }
    const entry = staticFiles[pathname];
    if (entry) {
      if (!allowMethods(request, response, ['GET', 'HEAD'])) return true;
      const body = files.get(entry.file)!;
      response.writeHead(200, { 'content-type': entry.contentType, 'content-length': body.length, 'cache-control': 'no-cache', ...securityHeaders });
      response.end(request.method === 'HEAD' ? undefined : body);
      return true;
    }
    if (pathname === '/events') {
      if (!allowMethods(request, response, ['GET'])) return true;
      const clientId = url.searchParams.get('client') ?? '';
      if (!clientIdPattern.test(clientId)) {
        sendJson(response, 400, { error: 'A client id (8–64 letters, digits, _ or -) is required.' });
        return true;
      }
      hub.connect(clientId, request, response);
      return true;
    }
    if (pathname === '/api/command' || pathname === '/api/button') {
      if (!allowMethods(request, response, ['POST'])) return true;
      const body = await readJsonBody(request, response);
      if (!body) return true;
      const clientId = typeof body.client === 'string' ? body.client : '';
      if (!clientIdPattern.test(clientId)) {
        sendJson(response, 400, { error: 'A client id (8–64 letters, digits, _ or -) is required.' });
        return true;
      }
      const context = { service, requester, listener: listenerFor(clientId), settings };
      let reply: CommandReply;
      if (pathname === '/api/command') {
        const text = typeof body.text === 'string' ? body.text : '';
        try {
          const typed = parseTypedCommand(text);
          reply = await runCommand(context, typed.name, typed.options);
        } catch (error) {
          reply = { kind: 'message', ephemeral: true, text: toUserMessage(error) };
        }
      } else {
        const customId = typeof body.customId === 'string' ? body.customId : '';
        reply = await runButton(context, customId);
      }
      sendJson(response, 200, await toPageReply(reply));
      return true;
    }
    const jobMatch = /^\/jobs\/([A-Za-z0-9_-]{1,40})(?:\/(image|images\/(\d+)))?$/.exec(pathname);
    if (jobMatch) {
      if (!allowMethods(request, response, ['GET', 'HEAD'])) return true;
      const jobId = jobMatch[1]!;
      const job = await service.getJob(jobId);
      // Only the playground's own jobs: jobs from Discord or Slack are not the local user's to see.
      if (!job || job.requester.platform !== requester.platform) {
        sendJson(response, 404, { error: toUserMessage(new UserError(ErrorCode.JobNotFound, 'There is no such job (it may have expired).')) });
        return true;
      }
      if (!jobMatch[2]) {
        sendJson(response, 200, await viewOf(job));
        return true;
      }
      if (job.status !== 'completed' || !job.images?.length) {
        sendJson(response, 409, { error: 'The job has no images yet.' });
        return true;
      }
      if (jobMatch[3] !== undefined) {
        const image = job.images[Number(jobMatch[3]) - 1];
        if (!image) {
          sendJson(response, 404, { error: `The job has ${job.images.length} image(s).` });
          return true;
        }
        sendImage(request, response, image.png, 'image/png');
        return true;
      }
      let output = cache.get(job.id);
      if (!output) {
        if (job.images.length === 1) {
          const only = job.images[0]!;
          output = { data: only.png, contentType: 'image/png', width: only.width, height: only.height };
        } else {
          const grid = await composeGrid(job.images.map((image) => image.png));
          output = { data: grid.data, contentType: grid.contentType, width: grid.width, height: grid.height };
        }
        cache.set(job.id, output);
      }
      sendImage(request, response, output.data, output.contentType);
      return true;
    }
    return false;
  };

  return { handler, hub, close: () => hub.close() };
}

/** "Generating… 40% · about 12 s left", without the text bar: the page draws a real progress bar. */
function plainProgress(fraction: number, etaMs: number): string {
  return progressText(fraction, etaMs).replace(/\s*[▰▱]+/g, '');
}

/** The grid's size for a finished job of four images, as composeGrid lays it out. */
function gridSize(job: JobRecord): { width: number; height: number } | undefined {
  const images = job.images;
  if (job.status !== 'completed' || !images || images.length !== 4) return undefined;
  const first = images[0]!;
  const layout = gridLayout(first.width, first.height, defaultGutter(first.width, first.height));
  return { width: layout.width, height: layout.height };
}

/**
 * Reads a small JSON body. Refuses anything but `application/json` (a cross-site form cannot send
 * it without a CORS preflight, which is never granted) and requests whose Origin is another site.
 */
async function readJsonBody(request: IncomingMessage, response: ServerResponse): Promise<Record<string, unknown> | undefined> {
  const origin = request.headers.origin;
  if (origin !== undefined) {
    let sameOrigin = false;
    try {
      sameOrigin = new URL(origin).host === request.headers.host;
    } catch {
      sameOrigin = false;
    }
    if (!sameOrigin) {
      sendJson(response, 403, { error: 'Requests from other sites are refused.' });
      return undefined;
    }
  }
  if (!(request.headers['content-type'] ?? '').toLowerCase().startsWith('application/json')) {
    sendJson(response, 415, { error: 'Send JSON (content-type: application/json).' });
    return undefined;
  }
  const body = await readBody(request, maxBodyBytes);
  if (!body) {
    sendJson(response, 413, { error: 'The request is too large.' });
    request.destroy();
    return undefined;
  }
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Falls through to the 400 below.
  }
  sendJson(response, 400, { error: 'The body must be a JSON object.' });
  return undefined;
}

function sendJson(response: ServerResponse, status: number, value: unknown): void {
  sendText(response, status, JSON.stringify(value), 'application/json; charset=utf-8');
}

function sendImage(request: IncomingMessage, response: ServerResponse, data: Uint8Array, contentType: string): void {
  // A job's images never change once it completed.
  response.writeHead(200, { 'content-type': contentType, 'content-length': data.byteLength, 'cache-control': 'private, max-age=86400, immutable', 'x-content-type-options': 'nosniff' });
  response.end(request.method === 'HEAD' ? undefined : data);
}
