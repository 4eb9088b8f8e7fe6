import { createHttpServer, healthAndMetrics, type HttpServerHandle } from '../../src/http/server.js';
import { formatPrometheus, prometheusContentType } from '../../src/http/prometheus.js';

describe('createHttpServer with healthAndMetrics', () => {
  let handle: HttpServerHandle;
  let ready = false;
  let scrapes = 0;

  beforeAll(async () => {
    handle = await createHttpServer({
      host: '127.0.0.1',
      port: 0,
      handlers: [healthAndMetrics({
        health: () => ({ ready, checks: { model: ready, store: true } }),
        metrics: () => {
          scrapes += 1;
          return formatPrometheus([{ name: 'imagine_scrapes_total', help: 'Scrapes.', type: 'counter', samples: [{ value: scrapes }] }]);
        },
      })],
    });
  });
  afterAll(() => handle.close());

  test('binds a free port and reports its URL', () => {
    expect(handle.port).toBeGreaterThan(0);
    expect(handle.url).toBe(`http://127.0.0.1:${handle.port}`);
  });

  test('/healthz answers 503 until ready, then 200', async () => {
    ready = false;
    const before = await fetch(`${handle.url}/healthz`);
    expect(before.status).toBe(503);
    expect(await before.json()).toEqual({ status: 'starting', checks: { model: false, store: true } });
    ready = true;
    const after = await fetch(`${handle.url}/healthz`);
    expect(after.status).toBe(200);
    expect(await after.json()).toEqual({ status: 'ok', checks: { model: true, store: true } });
  });

  test('/healthz is not ready when the check throws', async () => {
    const broken = await createHttpServer({ host: '127.0.0.1', port: 0, handlers: [healthAndMetrics({ health: () => { throw new Error('store closed'); }, metrics: () => '' })] });
    try {
      const response = await fetch(`${broken.url}/healthz`);
      expect(response.status).toBe(503);
    } finally {
      await broken.close();
    }
  });

  test('/metrics serves the Prometheus text format, rendered on every scrape', async () => {
    const first = await fetch(`${handle.url}/metrics`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe(prometheusContentType);
    const text = await first.text();
    expect(text).toMatch(/^# HELP imagine_scrapes_total Scrapes\.\n# TYPE imagine_scrapes_total counter\nimagine_scrapes_total \d+\n$/);
    const second = await (await fetch(`${handle.url}/metrics`)).text();
    expect(Number(second.trim().split(' ').at(-1))).toBe(Number(text.trim().split(' ').at(-1)) + 1);
  });

  test('unknown paths get 404 and other methods 405', async () => {
    expect((await fetch(`${handle.url}/nope`)).status).toBe(404);
    const post = await fetch(`${handle.url}/healthz`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  test('a handler that throws gives a 500 and the server keeps serving', async () => {
    handle.use((_request, _response, url) => {
      if (url.pathname === '/boom') throw new Error('boom');
      return false;
    });
    expect((await fetch(`${handle.url}/boom`)).status).toBe(500);
    expect((await fetch(`${handle.url}/metrics`)).status).toBe(200);
  });

  test('close() ends open streaming connections', async () => {
    const streaming = await createHttpServer({ host: '127.0.0.1', port: 0, handlers: [(_request, response) => { response.writeHead(200, { 'content-type': 'text/event-stream' }); response.write(': open\n\n'); return true; }] });
    const response = await fetch(`${streaming.url}/events`);
    const reader = response.body!.getReader();
    await reader.read();
    await streaming.close();
    // The client sees the stream end (or be cut off): either way it no longer hangs.
    const outcome = await (async () => {
      try {
        for (;;) if ((await reader.read()).done) return 'ended';
      } catch {
        return 'ended';
      }
    })();
    expect(outcome).toBe('ended');
  });
});

describe('formatPrometheus', () => {
  test('writes labels escaped, and histograms with cumulative buckets, sum and count', () => {
    const text = formatPrometheus([
      { name: 'imagine_commands_total', help: 'Commands.\nBy platform.', type: 'counter', samples: [{ labels: { platform: 'discord', command: 'imagine' }, value: 3 }, { labels: { platform: 'x"y\\z' }, value: 1 }] },
      { name: 'imagine_job_duration_seconds', help: 'Durations.', type: 'histogram', samples: [{ labels: { kind: 'imagine' }, buckets: [{ le: 1, count: 1 }, { le: 5, count: 2 }], sum: 4.5, count: 3 }] },
    ]);
    expect(text.split('\n')).toEqual([
      '# HELP imagine_commands_total Commands.\\nBy platform.',
      '# TYPE imagine_commands_total counter',
      'imagine_commands_total{platform="discord",command="imagine"} 3',
      'imagine_commands_total{platform="x\\"y\\\\z"} 1',
      '# HELP imagine_job_duration_seconds Durations.',
      '# TYPE imagine_job_duration_seconds histogram',
      'imagine_job_duration_seconds_bucket{kind="imagine",le="1"} 1',
      'imagine_job_duration_seconds_bucket{kind="imagine",le="5"} 2',
      'imagine_job_duration_seconds_bucket{kind="imagine",le="+Inf"} 3',
      'imagine_job_duration_seconds_sum{kind="imagine"} 4.5',
      'imagine_job_duration_seconds_count{kind="imagine"} 3',
      '',
    ]);
  });

  test('refuses invalid metric names', () => {
    expect(() => formatPrometheus([{ name: 'bad name', help: '', type: 'gauge', samples: [] }])).toThrow(/Invalid metric name/);
  });
});
