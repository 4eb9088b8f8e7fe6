/**
 * An {@link ImageEngine} whose models run in a worker thread. onnxruntime-node's session.run
 * blocks the thread that calls it for the whole model call, so the service keeps its event loop
 * (acks, progress edits, HTTP) free by running inference here instead. Requests are copied over,
 * results' pixel buffers are transferred back, progress is forwarded, an abort posts a cancel that
 * the worker sees between steps, and errors keep their class and code.
 */
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { deserializeError, EngineError, type SerializedError } from '../../errors.js';
import type { EngineCallOptions, EngineCapabilities, EngineResult, GenerateRequest, ImageEngine, UpscaleRequest, VariationRequest } from '../engine.js';
import type { FromWorker, ToWorker, WorkerCall, WorkerStartOptions, WorkerStats } from './protocol.js';

/**
 * How to start the worker. Under tsx or Jest the entry is the .ts source: a worker thread gets
 * neither Jest's transform nor (in Node 20) tsx's hooks for its entry file, so a small CommonJS
 * bootstrap registers tsx in the worker first and then imports the entry. Compiled, the .js entry
 * runs directly.
 */
function workerSource(): { source: string | URL; eval: boolean } {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith('.ts')) return { source: new URL('./worker-entry.js', import.meta.url), eval: false };
  const entry = pathToFileURL(path.join(path.dirname(here), 'worker-entry.ts')).href;
  // require.resolve finds the CommonJS build; its ES module sibling registers the hooks properly.
  const tsx = pathToFileURL(path.join(path.dirname(createRequire(import.meta.url).resolve('tsx/esm/api')), 'index.mjs')).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); }).catch((error) => { setImmediate(() => { throw error; }); });`;
  return { source: bootstrap, eval: true };
}

/** How long close() waits for the worker to finish its current step and release its sessions. */
const closeGraceMs = 60_000;

interface Pending {
  resolve: (result: EngineResult) => void;
  reject: (error: unknown) => void;
  onProgress: EngineCallOptions['onProgress'];
  /** False once the caller has been answered (e.g. on abort) while the worker still finishes. */
  open: boolean;
  cleanup: () => void;
}

/** Builds the Error a caller gets for an aborted request. */
function abortError(): Error {
  const error = new Error('The operation was aborted.');
  error.name = 'AbortError';
  return error;
}

/** Rebuilds a worker error with its class, code, fields and original message. */
function rebuild(data: SerializedError): Error {
  const error = deserializeError(data);
  // Some classes rebuild their message from fields; keep the worker's exact text.
  if (error.message !== data.message) Object.defineProperty(error, 'message', { value: data.message, configurable: true, writable: true });
  return error;
}

/** The engine in a worker thread. Create with {@link WorkerEngine.start}. */
export class WorkerEngine implements ImageEngine {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private restarting: Promise<void> | undefined;
  private statsWaiters: Array<(stats: WorkerStats) => void> = [];

  private constructor(
    private readonly options: WorkerStartOptions,
    readonly capabilities: EngineCapabilities,
    worker: Worker,
  ) {
    this.attach(worker);
  }

  /** Starts a worker, loads the model there and resolves once it is ready (or rejects with the load error). */
  static async start(options: WorkerStartOptions): Promise<WorkerEngine> {
    const { worker, capabilities } = await spawn(options);
    return new WorkerEngine(options, capabilities, worker);
  }

  /** Calls the worker has not finished yet, including ones whose callers already gave up. */
  get inFlight(): number {
    return this.pending.size;
  }

  generate(request: GenerateRequest): Promise<EngineResult> {
    const { signal, onProgress, ...plain } = request;
    return this.call({ method: 'generate', request: plain }, signal, onProgress);
  }

  vary(request: VariationRequest): Promise<EngineResult> {
    const { signal, onProgress, ...plain } = request;
    return this.call({ method: 'vary', request: plain }, signal, onProgress);
  }

  upscale(request: UpscaleRequest): Promise<EngineResult> {
    const { signal, onProgress, ...plain } = request;
    return this.call({ method: 'upscale', request: plain }, signal, onProgress);
  }

  /** Time the worker's sessions spent inside onnxruntime, and the process's RSS. */
  async stats(): Promise<WorkerStats> {
    const worker = await this.ready();
    return new Promise((resolve) => {
      this.statsWaiters.push(resolve);
      worker.postMessage({ type: 'stats' } satisfies ToWorker);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, entry] of this.pending) {
      entry.cleanup();
      if (entry.open) entry.reject(new EngineError('The engine was closed.'));
      this.pending.delete(id);
    }
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    await new Promise<void>((resolve) => {
      // The worker answers between two denoising steps. Terminating it in the middle of a
      // session.run can abort the whole process (onnxruntime-node throws a native Napi::Error while
      // its thread is torn down), so it is only a last resort after a generous grace period.
      const timer = setTimeout(() => void worker.terminate().then(() => resolve()), closeGraceMs);
      timer.unref();
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'closed') void worker.terminate();
      });
      worker.postMessage({ type: 'close' } satisfies ToWorker);
    });
  }

  private async call(call: WorkerCall, signal: AbortSignal | undefined, onProgress: EngineCallOptions['onProgress']): Promise<EngineResult> {
    if (this.closed) throw new EngineError('The engine was closed.');
    if (signal?.aborted) throw abortError();
    const worker = await this.ready();
    const id = this.nextId++;
    return new Promise<EngineResult>((resolve, reject) => {
      const onAbort = (): void => {
        const entry = this.pending.get(id);
        if (!entry?.open) return;
        entry.open = false;
        worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
        reject(abortError());
      };
      const entry: Pending = { resolve, reject, onProgress, open: true, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      this.pending.set(id, entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        worker.postMessage({ type: 'call', id, wantsProgress: onProgress !== undefined, ...call } as ToWorker);
      } catch (error) {
        this.pending.delete(id);
        entry.cleanup();
        reject(new EngineError(`The request could not be sent to the engine worker (${(error as Error).message}).`, { cause: error }));
      }
    });
  }

  /** The live worker, restarting one that died (e.g. out of memory) before this call. */
  private async ready(): Promise<Worker> {
    if (this.closed) throw new EngineError('The engine was closed.');
    if (this.worker) return this.worker;
    this.restarting ??= spawn(this.options).then(({ worker }) => {
      this.attach(worker);
    }).finally(() => {
      this.restarting = undefined;
    });
    await this.restarting;
    if (!this.worker) throw new EngineError('The engine worker could not be restarted.');
    return this.worker;
  }

  private attach(worker: Worker): void {
    this.worker = worker;
    worker.on('message', (message: FromWorker) => this.onMessage(message));
    const fail = (reason: string): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const [id, entry] of this.pending) {
        entry.cleanup();
        if (entry.open) entry.reject(new EngineError(`The engine worker stopped unexpectedly (${reason}).`));
        this.pending.delete(id);
      }
    };
    worker.on('error', (error) => fail(error.message));
    worker.on('exit', (code) => fail(`exit code ${code}`));
  }

  private onMessage(message: FromWorker): void {
    switch (message.type) {
      case 'progress': {
        const entry = this.pending.get(message.id);
        if (!entry?.open || !entry.onProgress) return;
        try {
          entry.onProgress(message.progress);
        } catch {
          // A failing listener must not break the call.
        }
        return;
      }
      case 'result':
      case 'error': {
        const entry = this.pending.get(message.id);
        if (!entry) return;
        this.pending.delete(message.id);
        entry.cleanup();
        if (!entry.open) return;
        entry.open = false;
        if (message.type === 'result') entry.resolve(message.result);
        else entry.reject(rebuild(message.error));
        return;
      }
      case 'stats': {
        const waiters = this.statsWaiters;
        this.statsWaiters = [];
        for (const waiter of waiters) waiter(message.stats);
        return;
      }
      default:
        return;
    }
  }
}

/** Starts a worker and waits for its model to load. */
function spawn(options: WorkerStartOptions): Promise<{ worker: Worker; capabilities: EngineCapabilities }> {
  const { source, eval: isEval } = workerSource();
  const worker = new Worker(source, { eval: isEval, execArgv: [], workerData: options, stderr: false, stdout: false });
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (message: FromWorker): void => {
      if (message.type === 'ready') {
        cleanup();
        resolve({ worker, capabilities: message.capabilities });
      } else if (message.type === 'failed') {
        cleanup();
        void worker.terminate();
        reject(rebuild(message.error));
      }
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(new EngineError(`The engine worker failed to start (${error.message}).`, { cause: error }));
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new EngineError(`The engine worker exited while loading the model (exit code ${code}).`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
