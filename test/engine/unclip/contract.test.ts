import { UnclipEngine } from '../../../src/engine/unclip/unclip-engine.js';
import { describeEngineContract } from '../engine-contract.js';
import { fixture } from '../fixtures.js';

describeEngineContract('UnclipEngine (tiny fixture)', () => UnclipEngine.load(fixture('unclip')));
describeEngineContract('UnclipEngine (plain fixture, one image per call)', () => UnclipEngine.load(fixture('unclip-plain'), { maxBatch: 1 }));
