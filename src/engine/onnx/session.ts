/**
 * One ONNX model file as a session that knows its own inputs: feeds are converted to the dtype the
 * model declares (int64 or float timesteps, int32 or int64 ids, float16 models) and shaped the way
 * it declares them (scalar or [batch]), so that pipelines never guess. Load failures become
 * {@link ModelError}s that name the file and what was expected.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import ort from 'onnxruntime-node';
import { EngineError, ErrorCode, ImagineError, ModelError } from '../../errors.js';
import { assertProvidersAvailable, isProviderLoadFailure, ortSessionOptions, providerUnavailableError, type SessionSettings } from './providers.js';

/** A tensor's element type as onnxruntime names it. */
export type TensorType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool' | 'string' | (string & {});

/** A declared input or output: its type and dimensions (numbers, or names for dynamic ones). */
export interface ValueInfo {
  name: string;
  type: TensorType;
  /** Dimensions; a string or -1 is dynamic. */
  dims: Array<number | string>;
}

/** A feed: numbers in any numeric array, converted to the input's declared type. */
export interface Feed {
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | number[];
  dims: number[];
}

/** An output, always as float32. */
export interface Output {
  data: Float32Array;
  dims: number[];
}

/** Time spent inside onnxruntime, shared by every session of one engine (for the benchmark). */
export class RunClock {
  calls = 0;
  milliseconds = 0;

  reset(): void {
    this.calls = 0;
    this.milliseconds = 0;
  }
}

/** What a model input must look like; checked once at load time. */
export interface InputExpectation {
  /** Accepted element types (the first is named in errors). */
  types?: TensorType[];
  /** Accepted ranks. */
  ranks?: number[];
  /** Expected sizes by axis; a negative axis counts from the end. Dynamic dims always pass. */
  sizes?: Record<number, number>;
}

/** Loads `file`; `role` says what the file is (e.g. "the unCLIP prior") in errors. */
export async function loadSession(file: string, role: string, settings: SessionSettings, clock: RunClock = new RunClock()): Promise<ModelSession> {
  assertProvidersAvailable(settings);
  if (!existsSync(file)) throw new ModelError(file, `${role} (an ONNX model file)`, 'the file does not exist');
  if (!statSync(file).isFile()) throw new ModelError(file, `${role} (an ONNX model file)`, 'this is not a file');
  let session: ort.InferenceSession;
  try {
    // Created from the path (not a buffer) so that external weights (model.onnx_data, weights.pb)
    // are found next to the model file.
    session = await ort.InferenceSession.create(file, ortSessionOptions(settings));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (isProviderLoadFailure(message)) {
      throw providerUnavailableError(settings.executionProviders.join(','), message.replace(/\s+/g, ' ').slice(0, 300), error);
    }
    const detail = /external|\.onnx_data|weights\.pb|data file|tensor/i.test(message) && /exist|open|No such|failed/i.test(message)
      ? `its external weights could not be read (${shorten(message, file)})`
      : /protobuf|parse|invalid|corrupt/i.test(message)
        ? `the file is corrupt or not an ONNX model (${shorten(message, file)})`
        : `onnxruntime could not load it (${shorten(message, file)})`;
    throw new ModelError(file, `${role} (a valid ONNX model)`, detail, { cause: error });
  }
  return new ModelSession(file, role, session, clock);
}

function shorten(message: string, file: string): string {
  return message.split(file).join(path.basename(file)).replace(/\s+/g, ' ').slice(0, 300);
}

/** A loaded model. */
export class ModelSession {
  readonly inputs: ReadonlyMap<string, ValueInfo>;
  readonly outputs: ReadonlyMap<string, ValueInfo>;
  private closed = false;

  constructor(
    /** The model file. */
    readonly file: string,
    /** What the file is, for errors. */
    readonly role: string,
    private readonly session: ort.InferenceSession,
    private readonly clock: RunClock,
  ) {
    this.inputs = describe(session.inputNames, session.inputMetadata);
    this.outputs = describe(session.outputNames, session.outputMetadata);
  }

  hasInput(name: string): boolean {
    return this.inputs.has(name);
  }

  hasOutput(name: string): boolean {
    return this.outputs.has(name);
  }

  /** The declared input, or a ModelError naming what the pipeline needs. */
  input(name: string, expectation: InputExpectation = {}): ValueInfo {
    const info = this.inputs.get(name);
    if (!info) {
      throw new ModelError(this.file, `${this.role} with an input named "${name}"`, `the model's inputs are ${[...this.inputs.keys()].map((key) => `"${key}"`).join(', ') || 'none'}`);
    }
    checkValue(this.file, this.role, 'input', info, expectation);
    return info;
  }

  /** The declared output (checked like {@link input}). */
  output(name: string, expectation: InputExpectation = {}): ValueInfo {
    const info = this.outputs.get(name);
    if (!info) {
      throw new ModelError(this.file, `${this.role} with an output named "${name}"`, `the model's outputs are ${[...this.outputs.keys()].map((key) => `"${key}"`).join(', ') || 'none'}`);
    }
    checkValue(this.file, this.role, 'output', info, expectation);
    return info;
  }

  /** The first of `names` the model has as an output. */
  pickOutput(names: string[]): string | undefined {
    return names.find((name) => this.outputs.has(name));
  }

  /**
   * Runs the model. Every feed is converted to its input's declared type; inputs the model does
   * not declare are left out (so optional inputs can be fed unconditionally).
   */
  async run(feeds: Record<string, Feed>, fetches?: string[]): Promise<Record<string, Output>> {
    if (this.closed) throw new EngineError(`${this.role} was closed`);
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds)) {
      const info = this.inputs.get(name);
      if (info) tensors[name] = toTensor(info, feed);
    }
    for (const name of this.inputs.keys()) {
      if (!tensors[name]) throw new EngineError(`${this.role} (${this.file}) needs the input "${name}", which the pipeline did not provide`);
    }
    const started = performance.now();
    let results: ort.InferenceSession.ReturnType;
    try {
      results = fetches ? await this.session.run(tensors, fetches) : await this.session.run(tensors);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new EngineError(`${this.role} failed to run (${shorten(message, this.file)})`, { cause: error });
    } finally {
      this.clock.calls += 1;
      this.clock.milliseconds += performance.now() - started;
    }
    const outputs: Record<string, Output> = {};
    for (const [name, tensor] of Object.entries(results)) {
      outputs[name] = { data: toFloat32(tensor), dims: [...tensor.dims] };
      tensor.dispose?.();
    }
    return outputs;
  }

  /** Runs and returns one named output, checking that it exists. */
  async runFor(output: string, feeds: Record<string, Feed>): Promise<Output> {
    const results = await this.run(feeds, [output]);
    const result = results[output];
    if (!result) throw new EngineError(`${this.role} returned no "${output}" output`);
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}

function describe(names: readonly string[], metadata: readonly ort.InferenceSession.ValueMetadata[]): Map<string, ValueInfo> {
  const map = new Map<string, ValueInfo>();
  names.forEach((name, index) => {
    const meta = metadata[index] as (ort.InferenceSession.ValueMetadata & { type?: string; shape?: ReadonlyArray<number | string> }) | undefined;
    map.set(name, { name, type: meta?.isTensor ? (meta.type ?? 'float32') : 'unknown', dims: meta?.isTensor ? [...(meta.shape ?? [])] : [] });
  });
  return map;
}

/** True when a dimension is fixed (a non-negative number). */
export function isFixed(dim: number | string | undefined): dim is number {
  return typeof dim === 'number' && dim >= 0;
}

function checkValue(file: string, role: string, kind: 'input' | 'output', info: ValueInfo, expectation: InputExpectation): void {
  const shape = `[${info.dims.join(', ')}]`;
  if (expectation.types && !expectation.types.includes(info.type)) {
    throw new ModelError(file, `${role} ${kind} "${info.name}" of type ${expectation.types.join(' or ')}`, `it is ${info.type}`, { code: ErrorCode.Model });
  }
  if (expectation.ranks && !expectation.ranks.includes(info.dims.length)) {
    throw new ModelError(file, `${role} ${kind} "${info.name}" with ${expectation.ranks.join(' or ')} dimensions`, `it has the shape ${shape}`);
  }
  for (const [axisText, size] of Object.entries(expectation.sizes ?? {})) {
    const axis = Number(axisText);
    const dim = info.dims[axis < 0 ? info.dims.length + axis : axis];
    if (isFixed(dim) && dim !== size) {
      throw new ModelError(file, `${role} ${kind} "${info.name}" with size ${size} on axis ${axis}`, `it has the shape ${shape}`);
    }
  }
}

/** A feed as a tensor of the input's declared type and rank (a [1] or [B] feed becomes a scalar for rank-0 inputs). */
export function toTensor(info: ValueInfo, feed: Feed): ort.Tensor {
  let dims = feed.dims;
  const count = dims.reduce((product, dim) => product * dim, 1);
  if (info.dims.length === 0 && dims.length > 0) {
    // A scalar input (e.g. a float timestep in some UNet exports) takes the first value: every
    // image of a batch is at the same step.
    dims = [];
  } else if (info.dims.length === 1 && dims.length === 1 && isFixed(info.dims[0]) && info.dims[0] === 1 && dims[0] !== 1) {
    dims = [1];
  } else if (info.dims.length === 1 && dims.length === 0) {
    dims = [1];
  }
  const size = dims.reduce((product, dim) => product * dim, 1);
  const values = feed.data;
  const at = (index: number): number => Number(values[index] as number | bigint);
  if (size > count) throw new EngineError(`input "${info.name}" got ${count} values for the shape [${dims.join(', ')}]`);
  switch (info.type) {
    case 'float32': {
      if (values instanceof Float32Array && size === values.length) return new ort.Tensor('float32', values, dims);
      const data = new Float32Array(size);
      for (let index = 0; index < size; index += 1) data[index] = at(index);
      return new ort.Tensor('float32', data, dims);
    }
    case 'float64': {
      const data = new Float64Array(size);
      for (let index = 0; index < size; index += 1) data[index] = at(index);
      return new ort.Tensor('float64', data, dims);
    }
    case 'float16': {
      const data = new Uint16Array(size);
      for (let index = 0; index < size; index += 1) data[index] = float32ToFloat16Bits(at(index));
      return new ort.Tensor('float16', data, dims);
    }
    case 'int64': {
      // Truncated like numpy's astype, which the diffusers ONNX pipelines use for fractional
      // (Euler) timesteps.
      const data = new BigInt64Array(size);
      for (let index = 0; index < size; index += 1) data[index] = BigInt(Math.trunc(at(index)));
      return new ort.Tensor('int64', data, dims);
    }
    case 'int32': {
      const data = new Int32Array(size);
      for (let index = 0; index < size; index += 1) data[index] = Math.trunc(at(index));
      return new ort.Tensor('int32', data, dims);
    }
    default:
      throw new ImagineError(ErrorCode.Unsupported, `input "${info.name}" has the type ${info.type}, which the engine does not feed`);
  }
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  const data = tensor.data;
  if (tensor.type === 'float32') return data as Float32Array;
  if (tensor.type === 'float16' && data instanceof Uint16Array) {
    const result = new Float32Array(data.length);
    for (let index = 0; index < data.length; index += 1) result[index] = float16BitsToFloat32(data[index]!);
    return result;
  }
  const result = new Float32Array((data as ArrayLike<number | bigint>).length);
  for (let index = 0; index < result.length; index += 1) result[index] = Number((data as ArrayLike<number | bigint>)[index]);
  return result;
}

const conversionView = new DataView(new ArrayBuffer(4));

/** IEEE half-precision bits of a number (round to nearest even). */
export function float32ToFloat16Bits(value: number): number {
  conversionView.setFloat32(0, value);
  const bits = conversionView.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    let half = mantissa >> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1))) half += 1;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1))) half += 1;
  return sign | half;
}

/** The number that half-precision bits stand for. */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (mantissa / 1024);
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exponent - 15) * (1 + mantissa / 1024);
}
