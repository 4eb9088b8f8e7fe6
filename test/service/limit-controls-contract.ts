/**
 * The contract every {@link LimitControls} passes: call `limitControlsContract(name, make)` from a
 * test file with a factory for the implementation. With `reopen`, changes must also outlive the
 * instance (a restart of the process that made them).
 */
import type { LimitControls, LimitValues } from '../../src/service/limits.js';

/** Controls over fresh storage whose configured limits are `configured`. */
export type MakeLimitControls = (configured: LimitValues) => Promise<{
  controls: LimitControls;
  /** A second instance over the same storage, as after a restart, configured with `configured` again. */
  reopen?: () => Promise<LimitControls>;
}>;

/** Configured limits the contract starts from. */
export const configuredLimits: LimitValues = { ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5 };

export function limitControlsContract(name: string, make: MakeLimitControls): void {
  describe(`LimitControls contract: ${name}`, () => {
    test('starts at the configured limits; a change applies to its fields only and is read back', async () => {
      const { controls } = await make({ ...configuredLimits });
      expect(await controls.getLimits()).toEqual(configuredLimits);
      expect(await controls.setLimits({ maxQueued: 1 })).toEqual({ ...configuredLimits, maxQueued: 1 });
      expect(await controls.setLimits({ burst: 9, ratePerMinute: 60 })).toEqual({ ratePerMinute: 60, burst: 9, maxRunning: 1, maxQueued: 1 });
      expect(await controls.getLimits()).toEqual({ ratePerMinute: 60, burst: 9, maxRunning: 1, maxQueued: 1 });
      expect(await controls.setLimits({})).toEqual({ ratePerMinute: 60, burst: 9, maxRunning: 1, maxQueued: 1 });
    });

    test('the range ends are accepted; a value outside its range or not whole is refused and changes nothing', async () => {
      const { controls } = await make({ ...configuredLimits });
      expect(await controls.setLimits({ maxQueued: 0, maxRunning: 100 })).toMatchObject({ maxQueued: 0, maxRunning: 100 });
      for (const bad of [{ burst: 0 }, { ratePerMinute: 10_001 }, { maxRunning: 1.5 }, { maxQueued: -1 }, { burst: Number.NaN }]) {
        await expect(Promise.resolve().then(() => controls.setLimits({ maxQueued: 7, ...bad }))).rejects.toBeInstanceOf(RangeError);
      }
      expect(await controls.getLimits()).toEqual({ ...configuredLimits, maxQueued: 0, maxRunning: 100 });
    });

    test('changes outlive a restart when the implementation keeps them', async () => {
      const { controls, reopen } = await make({ ...configuredLimits });
      await controls.setLimits({ maxQueued: 2, burst: 4 });
      if (!reopen) {
        // Not persistent by design: nothing more to check than that the instance kept them.
        expect(await controls.getLimits()).toMatchObject({ maxQueued: 2, burst: 4 });
        return;
      }
      const restarted = await reopen();
      expect(await restarted.getLimits()).toEqual({ ...configuredLimits, maxQueued: 2, burst: 4 });
      expect(await restarted.setLimits({ maxQueued: 3 })).toEqual({ ...configuredLimits, maxQueued: 3, burst: 4 });
    });
  });
}
