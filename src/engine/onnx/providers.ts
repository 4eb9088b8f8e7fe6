/**
 * Execution providers and session options from the configuration. A provider that the installed
 * onnxruntime-node cannot run is refused up front with {@link ErrorCode.ProviderUnavailable}
 * instead of silently falling back to the CPU.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { Config } from '../../config/config.js';
import { ErrorCode, ImagineError } from '../../errors.js';

/** The configuration's provider names, in order of preference. */
export type ProviderName = 'cpu' | 'cuda' | 'dml' | 'coreml';

/** What every session of one engine is created with. */
export interface SessionSettings {
  /** Providers in order of preference (configuration names). */
  executionProviders: ProviderName[];
  /** Intra-op threads; 0 lets onnxruntime decide. */
  threads: number;
  graphOptimization: Config['graphOptimization'];
}

/** The defaults: CPU, onnxruntime's thread count, every graph optimisation. */
export const defaultSessionSettings: SessionSettings = { executionProviders: ['cpu'], threads: 0, graphOptimization: 'all' };

/** The session settings a configuration asks for. */
export function sessionSettingsFrom(config: Pick<Config, 'executionProviders' | 'threads' | 'graphOptimization'>): SessionSettings {
  return {
    executionProviders: config.executionProviders as ProviderName[],
    threads: config.threads,
    graphOptimization: config.graphOptimization,
  };
}

/** onnxruntime's name of each configuration provider name. */
const ortNames: Record<ProviderName, string> = { cpu: 'cpu', cuda: 'cuda', dml: 'dml', coreml: 'coreml' };

/** The InferenceSession options for these settings. */
export function ortSessionOptions(settings: SessionSettings): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: settings.executionProviders.map((name) => ortNames[name] ?? name),
    graphOptimizationLevel: settings.graphOptimization,
    // Warnings about unused initializers and the like would flood the service's log.
    logSeverityLevel: 3,
  };
  if (settings.threads > 0) options.intraOpNumThreads = settings.threads;
  return options;
}

interface SupportedBackend {
  name: string;
  bundled: boolean;
}

/** The backends the installed onnxruntime-node was built with (`bundled: false` ones need extra libraries). */
export function supportedBackends(): SupportedBackend[] {
  const list = (ort as unknown as { listSupportedBackends?: () => SupportedBackend[] }).listSupportedBackends;
  return typeof list === 'function' ? list() : [{ name: 'cpu', bundled: true }];
}

function bindingFolder(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve('onnxruntime-node');
    return path.join(path.dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** Why a provider cannot run here, or undefined when it may. */
export function providerUnavailableReason(name: ProviderName): string | undefined {
  if (name === 'cpu') return undefined;
  const backend = supportedBackends().find((entry) => entry.name === ortNames[name]);
  if (!backend) {
    const names = supportedBackends().map((entry) => entry.name).join(', ');
    return `the installed onnxruntime-node (${process.platform}/${process.arch}) has no "${name}" execution provider; it has: ${names}`;
  }
  if (!backend.bundled) {
    const folder = bindingFolder();
    const library = { linux: `libonnxruntime_providers_${name}.so`, win32: `onnxruntime_providers_${name}.dll`, darwin: `libonnxruntime_providers_${name}.dylib` }[process.platform as 'linux'];
    if (folder && library && !existsSync(path.join(folder, library))) {
      return `the "${name}" execution provider is not installed (${library} is missing from onnxruntime-node; reinstall it with its ${name} binaries, e.g. ONNXRUNTIME_NODE_INSTALL_CUDA=v12)`;
    }
  }
  return undefined;
}

/** The error for a provider that cannot run. */
export function providerUnavailableError(name: string, reason: string, cause?: unknown): ImagineError {
  return new ImagineError(ErrorCode.ProviderUnavailable, `Execution provider "${name}" is not available: ${reason}. Set IMAGINE_EXECUTION_PROVIDERS to providers this machine has (cpu always works).`, { cause });
}

/** Throws {@link ErrorCode.ProviderUnavailable} for the first requested provider that cannot run here. */
export function assertProvidersAvailable(settings: SessionSettings): void {
  if (settings.executionProviders.length === 0) throw providerUnavailableError('(none)', 'no execution provider was configured');
  for (const name of settings.executionProviders) {
    const reason = providerUnavailableReason(name);
    if (reason) throw providerUnavailableError(name, reason);
  }
}

/** True when an onnxruntime error message is about a provider that failed to load. */
export function isProviderLoadFailure(message: string): boolean {
  return /backend not found|Failed to load shared library|providers_shared|ExecutionProvider|no available backend|adapter/i.test(message);
}
