/** Messages between {@link WorkerEngine} and its worker thread (plain, structured-cloneable data). */
import type { SerializedError } from '../../errors.js';
import type { EngineCapabilities, EngineProgress, EngineResult, GenerateRequest, UpscaleRequest, VariationRequest } from '../engine.js';
import type { SessionSettings } from '../onnx/providers.js';

/** What the worker loads, passed as workerData. */
export interface WorkerStartOptions {
  /** The model folder. */
  model: string;
  settings: SessionSettings;
  maxBatch?: number;
}

type Plain<T> = Omit<T, 'signal' | 'onProgress'>;

/** A request without its signal and listener, which stay on the calling thread. */
export type WorkerCall =
  | { method: 'generate'; request: Plain<GenerateRequest> }
  | { method: 'vary'; request: Plain<VariationRequest> }
  | { method: 'upscale'; request: Plain<UpscaleRequest> };

/** Calling thread → worker. */
export type ToWorker =
  | ({ type: 'call'; id: number; wantsProgress: boolean } & WorkerCall)
  | { type: 'cancel'; id: number }
  | { type: 'stats' }
  | { type: 'close' };

/** Time inside onnxruntime so far (for the benchmark). */
export interface WorkerStats {
  runCalls: number;
  runMilliseconds: number;
  /** Resident set size of the whole process, bytes. */
  rss: number;
}

/** Worker → calling thread. */
export type FromWorker =
  | { type: 'ready'; capabilities: EngineCapabilities }
  | { type: 'failed'; error: SerializedError }
  | { type: 'progress'; id: number; progress: EngineProgress }
  | { type: 'result'; id: number; result: EngineResult }
  | { type: 'error'; id: number; error: SerializedError }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'closed' };
