/**
 * The worker thread of {@link WorkerEngine}: loads the model in-process and runs requests, so that
 * onnxruntime's blocking session.run never stalls the service's event loop. Cancels arrive as
 * messages and are seen between denoising steps.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../../errors.js';
import type { EngineResult, ImageEngine } from '../engine.js';
import { loadEngine } from '../factory.js';
import { RunClock } from '../onnx/session.js';
import type { FromWorker, ToWorker, WorkerStartOptions } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('worker-entry.ts must run in a worker thread');

const options = workerData as WorkerStartOptions;
const clock = new RunClock();
const controllers = new Map<number, AbortController>();
let engine: ImageEngine | undefined;

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

/** The result's pixel and embedding buffers, each once (they are not needed here afterwards). */
function buffersOf(result: EngineResult): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const image of result.images) {
    buffers.add(image.image.data.buffer as ArrayBuffer);
    if (image.artifact) buffers.add(image.artifact.values.buffer as ArrayBuffer);
  }
  return [...buffers];
}

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'call':
      void run(message);
      break;
    case 'cancel':
      controllers.get(message.id)?.abort();
      break;
    case 'stats':
      send({ type: 'stats', stats: { runCalls: clock.calls, runMilliseconds: clock.milliseconds, rss: process.memoryUsage.rss() } });
      break;
    case 'close':
      void (async () => {
        for (const controller of controllers.values()) controller.abort();
        await engine?.close();
        send({ type: 'closed' });
        port!.close();
      })();
      break;
  }
});

async function run(message: Extract<ToWorker, { type: 'call' }>): Promise<void> {
  const controller = new AbortController();
  controllers.set(message.id, controller);
  const onProgress = message.wantsProgress ? (progress: Parameters<NonNullable<Parameters<ImageEngine['generate']>[0]['onProgress']>>[0]) => send({ type: 'progress', id: message.id, progress }) : undefined;
  try {
    if (!engine) throw new Error('the engine is not loaded');
    const common = { signal: controller.signal, ...(onProgress ? { onProgress } : {}) };
    const result =
      message.method === 'generate'
        ? await engine.generate({ ...message.request, ...common })
        : message.method === 'vary'
          ? await engine.vary({ ...message.request, ...common })
          : await engine.upscale({ ...message.request, ...common });
    send({ type: 'result', id: message.id, result }, buffersOf(result));
  } catch (error) {
    send({ type: 'error', id: message.id, error: serializeError(error) });
  } finally {
    controllers.delete(message.id);
  }
}

try {
  engine = await loadEngine(options.model, { settings: options.settings, clock, ...(options.maxBatch ? { maxBatch: options.maxBatch } : {}) });
  send({ type: 'ready', capabilities: engine.capabilities });
} catch (error) {
  send({ type: 'failed', error: serializeError(error) });
}
