/** What every {@link FirstSightings} must do, run against each implementation (memory, Redis). */
import type { FirstSightings } from '../../src/service/first-sightings.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `create` returns a fresh, empty store each time it is called. */
export function firstSightingsContract(name: string, create: () => FirstSightings): void {
  describe(`FirstSightings contract: ${name}`, () => {
    test('a key is claimed once while remembered; other keys are independent', async () => {
      const sightings = create();
      expect(await sightings.claim('a', 60_000)).toBe(true);
      expect(await sightings.claim('a', 60_000)).toBe(false);
      expect(await sightings.claim('b', 60_000)).toBe(true);
      expect(await sightings.claim('a', 60_000)).toBe(false);
    });

    test('a key can be claimed again once its time to live has passed', async () => {
      const sightings = create();
      expect(await sightings.claim('short', 40)).toBe(true);
      expect(await sightings.claim('short', 40)).toBe(false);
      await sleep(120);
      expect(await sightings.claim('short', 40)).toBe(true);
    });

    test('of simultaneous claims of one key, exactly one wins', async () => {
      const sightings = create();
      const results = await Promise.all(Array.from({ length: 12 }, () => sightings.claim('race', 60_000)));
      expect(results.filter(Boolean)).toHaveLength(1);
    });
  });
}
