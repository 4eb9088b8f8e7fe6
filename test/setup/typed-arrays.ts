/**
 * Jest runs each test file in its own VM realm, so a Float32Array made in a test is not an
 * `instanceof` the Float32Array that onnxruntime-node checks against. Compare by tag instead,
 * as transformers.js does in its Jest setup.
 */
const constructors = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array,
  Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array,
];
for (const constructor of constructors) {
  Object.defineProperty(constructor, Symbol.hasInstance, {
    configurable: true,
    value(candidate: unknown): boolean {
      return ArrayBuffer.isView(candidate) && Object.prototype.toString.call(candidate) === `[object ${constructor.name}]`;
    },
  });
}
