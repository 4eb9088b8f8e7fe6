/**
 * Run by worker-engine.test.ts as `node --import tsx test/engine/worker/generate-in-worker.ts <model>`:
 * proves that the worker thread starts outside Jest too. Prints one JSON line.
 */
import { createEngine } from '../../../src/engine/factory.js';

const engine = await createEngine({ model: process.argv[2]!, executionProviders: ['cpu'], threads: 1, graphOptimization: 'all' });
const stages = new Set<string>();
const result = await engine.generate({ prompt: 'a red circle', width: 64, height: 64, seeds: [1, 2], onProgress: (event) => stages.add(event.stage) });
await engine.close();
console.log(JSON.stringify({ engine: engine.constructor.name, images: result.images.map((image) => [image.image.width, image.image.height, image.image.data.length]), stages: [...stages] }));
