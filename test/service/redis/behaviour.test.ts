/**
 * The shared GenerationService behaviour suite, run against the in-memory service and against
 * QUEUE=redis (a bot service and a GPU worker in this process, talking only through Redis).
 */
import { createGenerationService, type RunningGenerationService } from '../../../src/service/generation-service.js';
import { testConfig } from '../helpers.js';
import { generationServiceBehaviour, type ServiceFactory } from './behaviour-suite.js';
import { Deployment, redisAvailable } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the QUEUE=redis behaviour tests: no Redis answers on 127.0.0.1:6379 (.ci/run starts one).');

describe('GenerationService behaviour: QUEUE=memory', () => {
  const services: RunningGenerationService[] = [];
  const factory: ServiceFactory = {
    async create({ engine, config, limitsFor, randomSeed }) {
      const service = await createGenerationService({ config: testConfig(config), engine, ...(limitsFor ? { limitsFor } : {}), ...(randomSeed ? { randomSeed } : {}) });
      services.push(service);
      return { service, engine };
    },
    async cleanup() {
      for (const service of services.splice(0)) await service.shutdown(0);
    },
  };
  generationServiceBehaviour(factory);
});

(redisUp ? describe : describe.skip)('GenerationService behaviour: QUEUE=redis', () => {
  let deployment: Deployment | undefined;
  const factory: ServiceFactory = {
    async create({ engine, config, limitsFor, randomSeed }) {
      deployment = new Deployment('behaviour');
      await deployment.worker(engine, { config: config ?? {} });
      const service = await deployment.bot({ configOverrides: config ?? {}, ...(limitsFor ? { limitsFor } : {}), ...(randomSeed ? { randomSeed } : {}) });
      return { service, engine };
    },
    async cleanup() {
      await deployment?.cleanup();
      deployment = undefined;
    },
  };
  generationServiceBehaviour(factory);
});
