/** The shared adapter scenarios, run against the Discord adapter in both modes. */
import { runAdapterScenarios } from '../scenarios.js';
import { DiscordHarness } from './harness.js';

runAdapterScenarios('Discord gateway', () => DiscordHarness.start({ mode: 'gateway' }));
runAdapterScenarios('Discord HTTP interactions', () => DiscordHarness.start({ mode: 'http' }));
