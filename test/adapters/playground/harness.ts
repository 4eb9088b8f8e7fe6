/**
 * A playground on port 0 backed by the real generation service and the FakeEngine, plus a small
 * server-sent events client for the HTTP-level tests.
 */
import { startPlayground, type RunningPlayground } from '../../../adapters/playground/index.js';
import type { PlaygroundEvent } from '../../../adapters/playground/event-hub.js';
import { loadConfig, type Config } from '../../../src/config/config.js';
import { createGenerationService, type GenerationServiceOptions, type RunningGenerationService } from '../../../src/service/generation-service.js';
import { FakeEngine, type FakeEngineOptions } from '../../fakes/fake-engine.js';

export interface PlaygroundHarness {
  playground: RunningPlayground;
  service: RunningGenerationService;
  engine: FakeEngine;
  config: Config;
  url: string;
  close(): Promise<void>;
}

/** A configuration that reads no environment or .env file, with an in-memory store and port 0. */
export function playgroundConfig(overrides: Partial<Config> = {}): Config {
  return loadConfig({ storeUrl: 'memory://', logLevel: 'silent', port: 0, host: '127.0.0.1', rateLimitBurst: 50, rateLimitPerMinute: 600, maxQueuedPerUser: 20, ...overrides }, {}, false);
}

export async function startHarness(options: { engine?: FakeEngineOptions; config?: Partial<Config>; servePage?: boolean; service?: Partial<GenerationServiceOptions>; wrongPasswordDelayMs?: number } = {}): Promise<PlaygroundHarness> {
  const config = playgroundConfig(options.config);
  const engine = new FakeEngine({ steps: 4, stepDelayMs: 5, ...options.engine });
  const service = await createGenerationService({ config, engine, ...options.service });
  const playground = await startPlayground({ config, service, servePage: options.servePage ?? true, capabilities: engine.capabilities, ...(options.wrongPasswordDelayMs === undefined ? {} : { wrongPasswordDelayMs: options.wrongPasswordDelayMs }) });
  return {
    playground,
    service,
    engine,
    config,
    url: playground.url,
    async close() {
      await playground.close();
      await service.shutdown(0);
    },
  };
}

/** A made-up page id, as app.js makes one. */
export function clientId(): string {
  return `test${Math.random().toString(36).slice(2, 14)}`;
}

/** Posts JSON the way the page does. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

/** Reads /events for one client and keeps every job event it receives. */
export class EventStream {
  readonly events: PlaygroundEvent[] = [];
  private readonly waiters: Array<{ test: (event: PlaygroundEvent) => boolean; resolve: (event: PlaygroundEvent) => void }> = [];
  private readonly controller = new AbortController();
  private reading: Promise<void> | undefined;

  private constructor(private readonly response: Response) {}

  static async open(baseUrl: string, client: string): Promise<EventStream> {
    const controller = new AbortController();
    const response = await fetch(`${baseUrl}/events?client=${client}`, { signal: controller.signal });
    const stream = new EventStream(response);
    stream.controller.signal.addEventListener('abort', () => controller.abort());
    stream.reading = stream.read().catch(() => undefined);
    return stream;
  }

  get status(): number {
    return this.response.status;
  }

  get contentType(): string | null {
    return this.response.headers.get('content-type');
  }

  /** Resolves with the first event (already received or future) that passes `test`. */
  next(test: (event: PlaygroundEvent) => boolean, timeoutMs = 20_000): Promise<PlaygroundEvent> {
    const seen = this.events.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`No matching event; got ${JSON.stringify(this.events.map((event) => `${event.type}:${event.jobId}`))}`)), timeoutMs);
      this.waiters.push({ test, resolve: (event) => { clearTimeout(timer); resolve(event); } });
    });
  }

  forJob(jobId: string): PlaygroundEvent[] {
    return this.events.filter((event) => event.jobId === jobId);
  }

  async close(): Promise<void> {
    this.controller.abort();
    await this.reading;
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of this.response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const lines = frame.split('\n');
        const name = lines.find((line) => line.startsWith('event: '))?.slice(7);
        const data = lines.filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n');
        if (name !== 'job' || !data) continue;
        const event = JSON.parse(data) as PlaygroundEvent;
        this.events.push(event);
        for (const waiter of [...this.waiters]) {
          if (waiter.test(event)) {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            waiter.resolve(event);
          }
        }
      }
    }
  }
}
