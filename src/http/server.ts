/**
 * The one web server of a running Imagine, in every mode: GET /healthz and GET /metrics always,
 * and whatever else is mounted on it (the playground). Built on node:http; it knows no platform.
 */
import http from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { prometheusContentType } from './prometheus.js';

/**
 * Handles a request or declines it. Returns true when it answered, false to let the next
 * handler try; the server answers 404 when none did.
 */
export type RouteHandler = (request: IncomingMessage, response: ServerResponse, url: URL) => boolean | Promise<boolean>;

/** The logger methods the server uses; a pino logger fits. */
export interface HttpLogger {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

/** What /healthz reports: ready only when every check passes. */
export interface HealthReport {
  ready: boolean;
  /** Named checks, e.g. `model` and `store`. */
  checks?: Record<string, boolean>;
}

/** Asked on every GET /healthz. */
export type HealthCheck = () => HealthReport | boolean | Promise<HealthReport | boolean>;

/** Renders the Prometheus text for GET /metrics. */
export type MetricsRenderer = () => string | Promise<string>;

/**
 * The handler for GET /healthz (200 when ready, 503 before, JSON body either way) and GET
 * /metrics (Prometheus text). Mount it on any server; {@link createHttpServer} mounts it first.
 */
export function healthAndMetrics(options: { health: HealthCheck; metrics: MetricsRenderer }): RouteHandler {
  return async (request, response, url) => {
    if (url.pathname === '/healthz') {
      if (!allowMethods(request, response, ['GET', 'HEAD'])) return true;
      let report: HealthReport;
      try {
        const result = await options.health();
        report = typeof result === 'boolean' ? { ready: result } : result;
      } catch {
        report = { ready: false };
      }
      const body = JSON.stringify({ status: report.ready ? 'ok' : 'starting', ...(report.checks ? { checks: report.checks } : {}) });
      sendText(response, report.ready ? 200 : 503, body, 'application/json; charset=utf-8', request.method === 'HEAD');
      return true;
    }
    if (url.pathname === '/metrics') {
      if (!allowMethods(request, response, ['GET', 'HEAD'])) return true;
      const text = await options.metrics();
      sendText(response, 200, text, prometheusContentType, request.method === 'HEAD');
      return true;
    }
    return false;
  };
}

/** Options of {@link createHttpServer}; `host` and `port` usually come from the config. */
export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  logger?: HttpLogger;
  /** Tried in order; more can be added later with `use`. */
  handlers?: RouteHandler[];
}

/** A listening server. */
export interface HttpServerHandle {
  readonly server: Server;
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  readonly port: number;
  /** Adds a handler after those already mounted. */
  use(handler: RouteHandler): void;
  /** Stops listening and ends open connections (server-sent event streams never end on their own). */
  close(): Promise<void>;
}

/** Starts a node:http server that tries each handler in turn and answers 404 when none takes a request. */
export async function createHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const handlers: RouteHandler[] = [...(options.handlers ?? [])];
  const server = http.createServer((request, response) => {
    void dispatch(handlers, request, response, options.logger);
  });
  // Keep-alive sockets would otherwise hold close() open for seconds in tests and on shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shownHost === '0.0.0.0' || shownHost === '[::]' ? '127.0.0.1' : shownHost}:${address.port}`;
  options.logger?.info({ url, host: options.host, port: address.port }, 'web server listening');
  let closing: Promise<void> | undefined;
  return {
    server,
    url,
    port: address.port,
    use(handler) {
      handlers.push(handler);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function dispatch(handlers: RouteHandler[], request: IncomingMessage, response: ServerResponse, logger: HttpLogger | undefined): Promise<void> {
  try {
    const url = new URL(request.url ?? '/', 'http://localhost');
    for (const handler of handlers) {
      if (await handler(request, response, url)) return;
    }
    sendText(response, 404, 'Not found\n', 'text/plain; charset=utf-8');
  } catch (error) {
    logger?.error({ err: error, path: request.url }, 'web request failed');
    if (!response.headersSent) sendText(response, 500, 'Internal error\n', 'text/plain; charset=utf-8');
    else response.end();
  }
}

/**
 * Reads a request body of at most `maxBytes`; undefined (and the rest of the request left unread) when
 * it is larger, so that the caller can answer 413 without buffering what nobody asked for.
 */
export async function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Answers 405 (with Allow) unless the method is one of `methods`; returns whether it may go on. */
export function allowMethods(request: IncomingMessage, response: ServerResponse, methods: string[]): boolean {
  if (methods.includes(request.method ?? 'GET')) return true;
  response.writeHead(405, { allow: methods.join(', '), 'content-type': 'text/plain; charset=utf-8' });
  response.end('Method not allowed\n');
  return false;
}

/** Sends a whole text body with its length and no caching. */
export function sendText(response: ServerResponse, status: number, body: string, contentType: string, headOnly = false): void {
  const bytes = Buffer.from(body, 'utf8');
  response.writeHead(status, { 'content-type': contentType, 'content-length': bytes.length, 'cache-control': 'no-store' });
  response.end(headOnly ? undefined : bytes);
}
