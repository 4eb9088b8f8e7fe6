import { applyGuidance, imageToTensor, normalizeRows, resizeBilinear, resizeForModel, resizeNearest, tensorToImage } from '../../../src/engine/onnx/tensors.js';

describe('tensor helpers', () => {
  it('resizes bilinearly like torch F.interpolate(align_corners=False)', () => {
    const source = Float32Array.from([0, 1, 2, 3]);
    // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode="bilinear")
    const expected = [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3];
    expect(Array.from(resizeBilinear(source, 1, 2, 2, 4, 4))).toEqual(expected);
    expect(Array.from(resizeNearest(source, 1, 2, 2, 4, 4))).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
    // Downscaling 4→2 averages the two middle samples (no antialiasing).
    expect(Array.from(resizeBilinear(Float32Array.from([0, 1, 2, 3]), 1, 1, 4, 1, 2))).toEqual([0.5, 2.5]);
  });

  it('shrinks model inputs by whole factors with a box average, otherwise bilinearly', () => {
    const source = Float32Array.from({ length: 16 }, (_, index) => index * index);
    // 4×4 → 1×1 box: the mean of all 16 (77.5); bilinear sees only the middle four (60.5).
    expect(Array.from(resizeForModel(source, 1, 4, 4, 1, 1))).toEqual([77.5]);
    expect(Array.from(resizeBilinear(source, 1, 4, 4, 1, 1))).toEqual([60.5]);
    expect(Array.from(resizeForModel(source, 1, 4, 4, 2, 2))).toEqual([(0 + 1 + 16 + 25) / 4, (4 + 9 + 36 + 49) / 4, (64 + 81 + 144 + 169) / 4, (100 + 121 + 196 + 225) / 4]);
    expect(Array.from(resizeForModel(source, 1, 4, 4, 3, 3))).toEqual(Array.from(resizeBilinear(source, 1, 4, 4, 3, 3)));
  });

  it('turns RGB into CHW in [-1, 1] and back', () => {
    const image = { width: 2, height: 1, data: Uint8Array.from([0, 128, 255, 10, 20, 30]) };
    const tensor = imageToTensor(image);
    expect(tensor[0]).toBe(-1);
    expect(tensor[4]).toBe(1);
    expect(tensorToImage(tensor, 0, 2, 1).data).toEqual(image.data);
    expect(tensorToImage(Float32Array.from([-3, 3, 0, 0, 0, 0]), 0, 2, 1).data).toEqual(Uint8Array.from([0, 128, 128, 255, 128, 128]));
  });

  it('guides: scale 1 gives the conditional half, 0 the unconditional, above 1 extrapolates', () => {
    const output = Float32Array.from([1, 2, 3, 5]);
    expect(Array.from(applyGuidance(output, 1))).toEqual([3, 5]);
    expect(Array.from(applyGuidance(output, 0))).toEqual([1, 2]);
    expect(Array.from(applyGuidance(output, 2))).toEqual([5, 8]);
  });

  it('normalises rows', () => {
    expect(Array.from(normalizeRows(Float32Array.from([3, 4, 0, 2]), 2))).toEqual([0.6000000238418579, 0.800000011920929, 0, 1]);
  });
});
