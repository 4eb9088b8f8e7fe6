/**
 * Server-sent events for the playground: one EventSource per page, identified by a client id the
 * page makes up, and every event tagged with its job id. Events for a page that is not connected
 * are dropped; the page catches up from GET /jobs/<id> when it comes back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** What the browser receives, as the `data` of an SSE `job` event. */
export type PlaygroundEvent =
  | { type: 'queued'; jobId: string; position: number; etaMs: number; text: string }
  | { type: 'started'; jobId: string; etaMs: number; text: string }
  | { type: 'progress'; jobId: string; fraction: number; stage: string; etaMs: number; text: string }
  | { type: 'retrying'; jobId: string; attempt: number; text: string }
  | { type: 'completed'; jobId: string; imageUrl: string; width: number; height: number; text: string }
  | { type: 'failed'; jobId: string; text: string };

/** Client ids are made by the page; anything else is refused so they cannot grow without bound. */
export const clientIdPattern = /^[A-Za-z0-9_-]{8,64}$/;

export interface EventHubOptions {
  /** A comment line is sent this often so that proxies and browsers keep the stream open. */
  heartbeatMs?: number;
}

/** Keeps the open event streams and sends events to them. */
export class EventHub {
  private readonly clients = new Map<string, Set<ServerResponse>>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(options: EventHubOptions = {}) {
    this.heartbeat = setInterval(() => this.writeAll(': heartbeat\n\n'), options.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
  }

  /** Takes over a GET /events request as an event stream for `clientId`. */
  connect(clientId: string, request: IncomingMessage, response: ServerResponse): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // retry: how long the browser waits before reconnecting after the server went away.
    response.write('retry: 2000\n: connected\n\n');
    // A reset connection must not become an unhandled 'error' event.
    response.on('error', () => undefined);
    const streams = this.clients.get(clientId) ?? new Set<ServerResponse>();
    streams.add(response);
    this.clients.set(clientId, streams);
    request.on('close', () => {
      streams.delete(response);
      if (streams.size === 0 && this.clients.get(clientId) === streams) this.clients.delete(clientId);
    });
  }

  /** Sends an event to every stream of one page. Returns how many streams it reached. */
  send(clientId: string, event: PlaygroundEvent): number {
    const streams = this.clients.get(clientId);
    if (!streams) return 0;
    const frame = `event: job\nid: ${event.jobId}\ndata: ${JSON.stringify(event)}\n\n`;
    let reached = 0;
    for (const stream of streams) if (writeTo(stream, frame)) reached += 1;
    return reached;
  }

  /** Pages connected now. */
  get size(): number {
    return this.clients.size;
  }

  /** Ends every stream. */
  close(): void {
    clearInterval(this.heartbeat);
    for (const streams of this.clients.values()) for (const stream of streams) stream.end();
    this.clients.clear();
  }

  private writeAll(text: string): void {
    for (const streams of this.clients.values()) for (const stream of streams) writeTo(stream, text);
  }
}

function writeTo(stream: ServerResponse, text: string): boolean {
  if (stream.writableEnded || stream.destroyed) return false;
  stream.write(text);
  return true;
}
