import { Random, deriveSeed, portableLog, portableSinCos } from '../../src/engine/random.js';

describe('Random', () => {
  test('produces the same xoshiro128** sequence as a hand-checked reference', () => {
    // Values computed independently with a Python transcription of splitmix32 + xoshiro128**.
    const random = new Random(42);
    expect([random.nextUint32(), random.nextUint32(), random.nextUint32(), random.nextUint32()])
      .toEqual([2837322924, 544945897, 479756282, 3500138142]);
  });

  test('floats and gaussians have fixed first values', () => {
    const floats = new Random(42);
    expect(floats.nextFloat()).toBe(0.6606157208001621);
    expect(floats.nextFloat()).toBe(0.1117019639532224);
    const normals = new Random(0);
    // Exact: the logarithm and trigonometry are plain IEEE arithmetic, not the engine's libm.
    expect([normals.gaussian(), normals.gaussian(), normals.gaussian(), normals.gaussian()])
      .toEqual([2.0812089348701353, 0.16346561362740875, 0.2541306960223768, 0.039282023357514934]);
    expect(Array.from(new Random(7).fillGaussian(new Float32Array(4))))
      .toEqual([-0.6925843954086304, 0.2302679866552353, -1.287024974822998, -0.10708196461200714]);
  });

  test('the same seed repeats and different seeds differ', () => {
    const a = new Random(123456789);
    const b = new Random(123456789);
    const c = new Random(123456790);
    const sequenceA = Array.from({ length: 100 }, () => a.nextUint32());
    const sequenceB = Array.from({ length: 100 }, () => b.nextUint32());
    const sequenceC = Array.from({ length: 100 }, () => c.nextUint32());
    expect(sequenceA).toEqual(sequenceB);
    expect(sequenceA).not.toEqual(sequenceC);
  });

  test('seeds are taken modulo 2^32 and truncated; non-finite seeds are refused', () => {
    expect(new Random(2 ** 32 + 5).nextUint32()).toBe(new Random(5).nextUint32());
    expect(new Random(-1).seed).toBe(4294967295);
    expect(new Random(7.9).seed).toBe(7);
    expect(() => new Random(Number.NaN)).toThrow(RangeError);
    expect(() => new Random(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });

  test('outputs stay in range', () => {
    const random = new Random(99);
    let outOfRange = 0;
    for (let index = 0; index < 10_000; index += 1) {
      const integer = random.nextUint32();
      if (!(Number.isInteger(integer) && integer >= 0 && integer < 2 ** 32)) outOfRange += 1;
      const float = random.nextFloat();
      if (!(float >= 0 && float < 1)) outOfRange += 1;
    }
    expect(outOfRange).toBe(0);
  });

  test('gaussian samples have mean about 0 and variance about 1', () => {
    const samples = new Random(2024).fillGaussian(new Float32Array(200_000));
    let sum = 0;
    for (const value of samples) sum += value;
    const mean = sum / samples.length;
    let squares = 0;
    let fourth = 0;
    for (const value of samples) {
      squares += (value - mean) ** 2;
      fourth += (value - mean) ** 4;
    }
    const variance = squares / samples.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.02);
    // Kurtosis 3 tells a normal apart from, say, a scaled uniform with the same variance.
    expect(Math.abs(fourth / samples.length / variance ** 2 - 3)).toBeLessThan(0.1);
  });

  test('uniform floats have mean 1/2 and variance 1/12', () => {
    const random = new Random(5);
    const count = 100_000;
    let sum = 0;
    let squares = 0;
    for (let index = 0; index < count; index += 1) {
      const value = random.nextFloat();
      sum += value;
      squares += value * value;
    }
    const mean = sum / count;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(squares / count - mean * mean - 1 / 12)).toBeLessThan(0.005);
  });
});

describe('portable logarithm and trigonometry', () => {
  test('agree with Math.log, Math.sin and Math.cos to about 1e-15', () => {
    const random = new Random(11);
    let worstLog = 0;
    let worstTrig = 0;
    for (let index = 0; index < 20_000; index += 1) {
      const value = 1 - random.nextFloat();
      const exact = Math.log(value);
      if (exact !== 0) worstLog = Math.max(worstLog, Math.abs(portableLog(value) - exact) / Math.abs(exact));
      const turns = random.nextFloat();
      const { sin, cos } = portableSinCos(turns);
      worstTrig = Math.max(worstTrig, Math.abs(sin - Math.sin(2 * Math.PI * turns)), Math.abs(cos - Math.cos(2 * Math.PI * turns)));
    }
    expect(worstLog).toBeLessThan(2e-15);
    expect(worstTrig).toBeLessThan(2e-15);
  });

  test('handle the ends of their ranges', () => {
    expect(portableLog(1)).toBe(0);
    expect(portableLog(0.5)).toBeCloseTo(-Math.LN2, 15);
    expect(portableLog(Number.MIN_VALUE)).toBeCloseTo(Math.log(Number.MIN_VALUE), 10);
    expect(portableLog(1e300)).toBeCloseTo(Math.log(1e300), 10);
    expect(portableSinCos(0)).toEqual({ sin: 0, cos: 1 });
    expect(portableSinCos(0.25).sin).toBe(1);
    expect(portableSinCos(0.5).cos).toBe(-1);
  });
});

describe('deriveSeed', () => {
  test('is a fixed uint32 function of base and index', () => {
    expect([deriveSeed(42, 0), deriveSeed(42, 1), deriveSeed(0, 0), deriveSeed(4294967295, 3)])
      .toEqual([4222602631, 1324244391, 2951955315, 4287000115]);
  });

  test('gives distinct seeds for neighbouring indices and bases', () => {
    const seeds = new Set<number>();
    for (let base = 0; base < 50; base += 1) {
      for (let index = 0; index < 8; index += 1) {
        const seed = deriveSeed(base, index);
        expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true);
        seeds.add(seed);
      }
    }
    expect(seeds.size).toBe(400);
  });
});
