/**
 * Seedable pseudo-random numbers that are identical on every machine: xoshiro128** on 32-bit
 * integer arithmetic (Math.imul and shifts only), seeded through splitmix32. Gaussian samples use
 * Box–Muller; V8 ships its own fdlibm-derived Math.log/sin/cos, so they do not depend on the C library.
 */

const twoPow32 = 4_294_967_296;

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
    const radius = Math.sqrt(-2 * Math.log(1 - this.nextFloat()));
    const angle = 2 * Math.PI * this.nextFloat();
    this.spareGaussian = radius * Math.sin(angle);
    return radius * Math.cos(angle);
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
