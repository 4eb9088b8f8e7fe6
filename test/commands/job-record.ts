import type { JobRecord } from '../../src/service/types.js';

/** A finished imagine job record for tests; fields overridable. */
export function jobRecord(overrides: Partial<JobRecord> = {}): JobRecord {
  return {
    id: 'job_123',
    kind: 'imagine',
    status: 'completed',
    requester: { platform: 'discord', userId: '42', displayName: 'Ada' },
    parameters: { prompt: 'a red circle', aspectRatio: '1:1', seed: 5, chaos: 0 },
    seeds: [5, 6, 7, 8],
    width: 64,
    height: 64,
    engine: 'fake',
    createdAt: 0,
    ...overrides,
  };
}
