import { chunks, ProgressTracker, schedulerKindFor } from '../../../src/engine/onnx/diffusion.js';
import type { EngineProgress } from '../../../src/engine/engine.js';

describe('diffusion helpers', () => {
  it('maps diffusers scheduler classes, falling back to DDIM', () => {
    expect(schedulerKindFor('EulerAncestralDiscreteScheduler')).toEqual({ kind: 'euler-ancestral', fallback: false });
    expect(schedulerKindFor('DPMSolverMultistepScheduler')).toEqual({ kind: 'dpm-solver++', fallback: false });
    expect(schedulerKindFor('LCMScheduler')).toEqual({ kind: 'lcm', fallback: false });
    expect(schedulerKindFor('PNDMScheduler')).toEqual({ kind: 'ddim', fallback: true });
  });

  it('chunks', () => {
    expect(chunks(5, 2)).toEqual([[0, 2], [2, 4], [4, 5]]);
    expect(chunks(4, 4)).toEqual([[0, 4]]);
  });

  it('reports a monotonic overall fraction that ends at 1, weighting stages by cost', () => {
    const events: EngineProgress[] = [];
    const tracker = new ProgressTracker([{ stage: 'a', steps: 2, weight: 1 }, { stage: 'b', steps: 2, weight: 3 }], (event) => events.push(event));
    for (const stage of ['a', 'a', 'b', 'b']) tracker.step(stage);
    expect(events.map((event) => event.fraction)).toEqual([0.125, 0.25, 0.625, 1]);
    expect(events[2]).toMatchObject({ stage: 'b', step: 1, steps: 2 });
  });
});
