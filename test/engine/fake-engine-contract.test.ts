/** The fake engine the service tests use passes the same contract as the real engines. */
import { FakeEngine } from '../fakes/fake-engine.js';
import { describeEngineContract } from './engine-contract.js';

describeEngineContract('FakeEngine (test/fakes)', async () => new FakeEngine());
