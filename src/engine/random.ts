/**
 * Seedable pseudo-random numbers that are identical on every machine: xoshiro128** on 32-bit
 * integer arithmetic (Math.imul and shifts only), seeded through splitmix32. Gaussian samples use
 * Box–Muller with a logarithm, sine and cosine written in plain IEEE arithmetic below, because
 * ECMAScript leaves Math.log/sin/cos implementation-approximated; only Math.sqrt (correctly
 * rounded everywhere) is borrowed.
 */

const twoPow32 = 4_294_967_296;

const float64 = new Float64Array(1);
const float64Words = new Uint32Array(float64.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const highWord = littleEndian ? 1 : 0;

/**
 * Natural logarithm of a positive finite number, within about 1 ulp of Math.log: split off the
 * binary exponent, bring the mantissa into [√½, √2), and sum the atanh series 2·(s + s³/3 + …).
 */
export function portableLog(value: number): number {
  float64[0] = value;
  const high = float64Words[highWord]!;
  let exponent = ((high >>> 20) & 0x7ff) - 1023;
  // Set the exponent field to 0 to get the mantissa in [1, 2); subnormals are pre-scaled.
  if (exponent === -1023) {
    float64[0] = value * 2 ** 54;
    exponent = ((float64Words[highWord]! >>> 20) & 0x7ff) - 1023 - 54;
  }
  float64Words[highWord] = (float64Words[highWord]! & 0x800fffff) | 0x3ff00000;
  let mantissa = float64[0]!;
  if (mantissa > Math.SQRT2) {
    mantissa /= 2;
    exponent += 1;
  }
  const s = (mantissa - 1) / (mantissa + 1);
  const s2 = s * s;
  // |s| ≤ 0.1716, so terms past s^23 are below 1e-18 of the result.
  let series = 1 / 23;
  for (let odd = 21; odd >= 1; odd -= 2) series = series * s2 + 1 / odd;
  return exponent * Math.LN2 + 2 * s * series;
}

/** sin and cos of 2π·turns for turns in [0, 1), by quadrant reduction and Taylor series on [−π/4, π/4]. */
export function portableSinCos(turns: number): { sin: number; cos: number } {
  const quarters = turns * 4;
  const quadrant = Math.round(quarters);
  const x = (quarters - quadrant) * (Math.PI / 2);
  const x2 = x * x;
  // Horner forms of the Taylor series up to x^19 / x^18: truncation below 1e-18 on [−π/4, π/4].
  let sine = 0;
  for (let n = 19; n >= 3; n -= 2) sine = (sine + (n % 4 === 3 ? -1 : 1)) * x2 / (n * (n - 1));
  sine = x + x * sine;
  let cosine = 0;
  for (let n = 18; n >= 2; n -= 2) cosine = (cosine + (n % 4 === 2 ? -1 : 1)) * x2 / (n * (n - 1));
  cosine = 1 + cosine;
  switch (((quadrant % 4) + 4) % 4) {
    case 0: return { sin: sine, cos: cosine };
    case 1: return { sin: cosine, cos: -sine };
    case 2: return { sin: -sine, cos: -cosine };
    default: return { sin: -cosine, cos: sine };
  }
}

/** splitmix32's output mix, also used to derive seeds. */
function mix32(value: number): number {
  let z = value | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotateLeft(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}

/** Turns any finite number into a uint32 seed; throws on NaN and infinities. */
function toUint32Seed(seed: number, name: string): number {
  if (!Number.isFinite(seed)) throw new RangeError(`${name} must be a finite number, got ${seed}`);
  // Modulo 2^32 rather than `>>> 0` of a float so that seeds above 2^53 still map deterministically.
  const integer = Math.trunc(seed);
  return ((integer % twoPow32) + twoPow32) % twoPow32;
}

/** A deterministic generator: the same seed gives the same sequence everywhere. */
export class Random {
  /** The uint32 seed this generator started from. */
  readonly seed: number;
  private state0: number;
  private state1: number;
  private state2: number;
  private state3: number;
  /** Box–Muller makes two samples at a time; the second waits here for the next call. */
  private spareGaussian: number | undefined;

  /** @param seed any finite number; it is truncated and taken modulo 2^32. */
  constructor(seed: number) {
    this.seed = toUint32Seed(seed, 'seed');
    let splitmixState = this.seed | 0;
    const next = (): number => {
      splitmixState = (splitmixState + 0x9e3779b9) | 0;
      return mix32(splitmixState) | 0;
    };
    // Four distinct splitmix32 states never all mix to zero (the mix is a bijection), so the
    // forbidden all-zero xoshiro state cannot occur.
    this.state0 = next();
    this.state1 = next();
    this.state2 = next();
    this.state3 = next();
  }

  /** The next integer in [0, 2^32). */
  nextUint32(): number {
    const result = Math.imul(rotateLeft(Math.imul(this.state1, 5), 7), 9);
    const shifted = this.state1 << 9;
    this.state2 ^= this.state0;
    this.state3 ^= this.state1;
    this.state1 ^= this.state2;
    this.state0 ^= this.state3;
    this.state2 ^= shifted;
    this.state3 = rotateLeft(this.state3, 11);
    return result >>> 0;
  }

  /** A uniform float in [0, 1) with 53 random bits (two draws). */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67_108_864 + low) / 9_007_199_254_740_992;
  }

  /** A standard normal sample (mean 0, variance 1). */
  gaussian(): number {
    if (this.spareGaussian !== undefined) {
      const spare = this.spareGaussian;
      this.spareGaussian = undefined;
      return spare;
    }
    // 1 - u lies in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * portableLog(1 - this.nextFloat()));
    const { sin, cos } = portableSinCos(this.nextFloat());
    this.spareGaussian = radius * sin;
    return radius * cos;
  }

  /** Fills `target` with standard normal samples, in index order, and returns it. */
  fillGaussian(target: Float32Array): Float32Array {
    for (let index = 0; index < target.length; index += 1) target[index] = this.gaussian();
    return target;
  }
}

/**
 * A well-mixed uint32 seed for image `index` of a request seeded with `base`, so that neighbouring
 * images (and neighbouring base seeds) get unrelated sequences. `deriveSeed(base, 0)` is not `base`.
 */
export function deriveSeed(base: number, index: number): number {
  const baseSeed = toUint32Seed(base, 'base');
  const indexSeed = toUint32Seed(index, 'index');
  return mix32(mix32(baseSeed ^ 0x5bd1e995) ^ mix32((indexSeed + 0x9e3779b9) | 0));
}
