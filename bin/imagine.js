#!/usr/bin/env node
// The `imagine` command: registers tsx so Node runs the TypeScript sources, then hands over to
// adapters/cli/main.ts. Kept tiny on purpose; everything testable lives in runCli.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../adapters/cli/main.ts');
await main();
