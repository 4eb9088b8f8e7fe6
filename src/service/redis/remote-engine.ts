/**
 * The engine as a bot process sees it in QUEUE=redis: the capabilities the GPU workers published
 * (sizes, limits, name), and no way to draw, since drawing happens on the workers. Commands and
 * adapters that read `engine.capabilities` work unchanged.
 */
import type { EngineCapabilities, EngineResult, ImageEngine } from '../../engine/engine.js';
import { EngineError, ErrorCode } from '../../errors.js';

/** Capabilities read from the workers; drawing calls reject with `unsupported`. */
export class RemoteEngine implements ImageEngine {
  constructor(private readonly current: () => EngineCapabilities) {}

  get capabilities(): EngineCapabilities {
    return this.current();
  }

  generate(): Promise<EngineResult> {
    return Promise.reject(notHere());
  }

  vary(): Promise<EngineResult> {
    return Promise.reject(notHere());
  }

  upscale(): Promise<EngineResult> {
    return Promise.reject(notHere());
  }

  async close(): Promise<void> {}
}

function notHere(): EngineError {
  return new EngineError('With QUEUE=redis the engine runs in GPU workers (`npm run worker`); bot processes queue jobs through the generation service.', { code: ErrorCode.Unsupported });
}
