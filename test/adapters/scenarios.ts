/**
 * The scenarios every chat adapter passes, written once against a {@link PlatformDriver}. Each
 * platform (Discord gateway, Discord HTTP, Slack …) provides a driver that runs the real adapter
 * against its fake platform, with the real generation service on a FakeEngine and a temporary
 * DATA_DIR, and speaks to the bot as the platform would. Platform-specific details (deferred acks,
 * signatures, which REST route carried the file) are checked in each platform's own tests; these
 * check what a user sees.
 *
 * The driver's service must give the user {@link limitedUser} a burst of one job (via the
 * service's `limitsFor` option) and generous limits to everyone else, and the engine must fail
 * prompts containing {@link failingPromptWord}.
 */
import sharp from 'sharp';
import { decodeButton, type ButtonAction } from '../../commands/custom-id.js';
import { defaultGutter, gridLayout } from '../../src/image/grid.js';
import type { JobRecord } from '../../src/service/types.js';
import type { FakeEngine } from '../fakes/fake-engine.js';

/** The user whose limits are one job at once, for the limit scenario. */
export const limitedUser = 'limited-user';
/** Prompts with this word fail in the engine. */
export const failingPromptWord = 'explode';

/** A button as the user sees it. */
export interface ScenarioButton {
  label: string;
  id: string;
}

/** A message that carries a result: the file and the buttons under it. */
export interface ScenarioResult {
  /** The uploaded file's bytes. */
  file: Buffer;
  /** The buttons, row by row. */
  rows: ScenarioButton[][];
  /** The message text (caption). */
  text: string;
  /** True when it was sent with the bot token after the interaction token or response URL expired; undefined when the platform has no such notion. */
  sentWithBotToken?: boolean;
  /** Whatever the driver needs to press a button on this message. */
  handle: unknown;
}

/** What a scenario can do with a platform. */
export interface PlatformDriver {
  readonly name: string;
  /** The platform's limits on buttons. */
  readonly maxButtonIdLength: number;
  readonly maxButtonsPerRow: number;
  readonly engine: FakeEngine;
  /** The job store behind the running bot (changes after {@link restart}). */
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Sends `/imagine <text>` as `user`; resolves once the platform saw it acknowledged. */
  imagine(text: string, user?: string): Promise<void>;
  /** Presses the button `label` on `result` as `user`; resolves once acknowledged. */
  press(result: ScenarioResult, label: string, user?: string): Promise<void>;
  /** Presses a button with any id on `result`'s message, as a forged request would. */
  pressWithId(result: ScenarioResult, id: string, user?: string): Promise<void>;
  /** How many results have arrived so far. */
  resultCount(): number;
  /** Waits for the result number `index` (0-based, in order of arrival). */
  waitForResult(index: number): Promise<ScenarioResult>;
  /** How many ephemeral (only-you-can-see) messages have arrived so far. */
  ephemeralCount(): number;
  /** Waits for ephemeral message number `index` (0-based) and returns its text. */
  waitForEphemeral(index: number): Promise<string>;
  /** Texts the status message of the latest job showed before its result (queue position, progress). */
  statusTexts(): string[];
  /** Makes every interaction token / response URL issued so far unusable, as time would. */
  expireTokens(): Promise<void>;
  /** Stops the bot and its service and starts new ones on the same DATA_DIR. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const labelsOf = (result: ScenarioResult): string[][] => result.rows.map((row) => row.map((button) => button.label));

function checkButtons(driver: PlatformDriver, result: ScenarioResult): ButtonAction[] {
  const actions: ButtonAction[] = [];
  for (const row of result.rows) {
    expect(row.length).toBeGreaterThan(0);
    expect(row.length).toBeLessThanOrEqual(driver.maxButtonsPerRow);
    for (const button of row) {
      expect(button.id.length).toBeLessThanOrEqual(driver.maxButtonIdLength);
      actions.push(decodeButton(button.id));
    }
  }
  return actions;
}

async function imageSize(file: Buffer): Promise<{ width: number; height: number; format: string }> {
  const metadata = await sharp(file).metadata();
  return { width: metadata.width ?? 0, height: metadata.height ?? 0, format: metadata.format ?? '' };
}

/** Waits until `count` more ephemeral messages arrived than `before` and returns the last. */
async function nextEphemeral(driver: PlatformDriver, before: number): Promise<string> {
  return driver.waitForEphemeral(before);
}

/** Defines the shared scenarios as Jest tests for one platform. */
export function runAdapterScenarios(name: string, createDriver: () => Promise<PlatformDriver>): void {
  describe(`${name}: shared adapter scenarios`, () => {
    let driver: PlatformDriver;
    let grid: ScenarioResult | undefined;
    let gridJob: JobRecord | undefined;

    beforeAll(async () => {
      driver = await createDriver();
    });

    afterAll(async () => {
      await driver?.close();
    });

    /** The first grid, made by the first scenario or on demand. */
    async function firstGrid(): Promise<{ result: ScenarioResult; job: JobRecord }> {
      if (!grid || !gridJob) {
        const index = driver.resultCount();
        await driver.imagine('a red cube on a table --seed 7', 'alice');
        grid = await driver.waitForResult(index);
        const jobId = decodeButton(grid.rows[0]![0]!.id).jobId;
        gridJob = await driver.getJob(jobId);
      }
      return { result: grid, job: gridJob! };
    }

    test('/imagine posts a grid of the right size with U1–U4, V1–V4 and 🔄 after showing its progress', async () => {
      const before = driver.resultCount();
      await driver.imagine('a red cube on a table --seed 7', 'alice');
      const result = await driver.waitForResult(before);
      grid = result;

      expect(labelsOf(result)).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
      const actions = checkButtons(driver, result);
      expect(actions).toHaveLength(9);
      const jobId = actions[0]!.jobId;
      expect(new Set(actions.map((action) => action.jobId))).toEqual(new Set([jobId]));
      expect(actions.slice(0, 4).map((action) => (action.kind === 'upscale' ? action.index : 0))).toEqual([1, 2, 3, 4]);
      expect(actions.slice(4, 8).map((action) => (action.kind === 'vary' ? action.index : 0))).toEqual([1, 2, 3, 4]);
      expect(actions[8]!.kind).toBe('reroll');

      gridJob = await driver.getJob(jobId);
      expect(gridJob?.status).toBe('completed');
      expect(gridJob?.requester.userId).toBe('alice');
      expect(gridJob?.parameters.seed).toBe(7);

      const cell = driver.engine.capabilities.sizes['1:1']!;
      const expected = gridLayout(cell.width, cell.height, defaultGutter(cell.width, cell.height));
      expect(await imageSize(result.file)).toEqual({ width: expected.width, height: expected.height, format: 'png' });
      expect(result.text).toContain('a red cube on a table');

      const statuses = driver.statusTexts();
      expect(statuses.some((text) => /Generating… \d+%/.test(text))).toBe(true);
    });

    test('U1 posts the upscaled first image with Vary (Subtle), Vary (Strong) and 🔄', async () => {
      const { result: source, job } = await firstGrid();
      const before = driver.resultCount();
      const calls = driver.engine.calls.length;
      await driver.press(source, 'U1', 'alice');
      const result = await driver.waitForResult(before);

      expect(labelsOf(result)).toEqual([['Vary (Subtle)', 'Vary (Strong)', '🔄']]);
      checkButtons(driver, result);
      const call = driver.engine.calls[calls];
      expect(call?.method).toBe('upscale');
      expect(call?.sourceSeed).toBe(job.seeds[0]);
      const cell = driver.engine.capabilities.sizes['1:1']!;
      const factor = driver.engine.capabilities.upscaleFactor;
      expect(await imageSize(result.file)).toMatchObject({ width: cell.width * factor, height: cell.height * factor });
      const upscaled = await driver.getJob(decodeButton(result.rows[0]![0]!.id).jobId);
      expect(upscaled).toMatchObject({ kind: 'upscale', parent: { jobId: job.id, index: 1 } });
    });

    test('V2 posts a new grid of variations of image 2 with the full set of buttons', async () => {
      const { result: source, job } = await firstGrid();
      const before = driver.resultCount();
      const calls = driver.engine.calls.length;
      await driver.press(source, 'V2', 'alice');
      const result = await driver.waitForResult(before);

      expect(labelsOf(result)).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
      const actions = checkButtons(driver, result);
      expect(actions[0]!.jobId).not.toBe(job.id);
      const call = driver.engine.calls[calls];
      expect(call?.method).toBe('vary');
      expect(call?.sourceSeed).toBe(job.seeds[1]);
      const variation = await driver.getJob(actions[0]!.jobId);
      expect(variation).toMatchObject({ kind: 'variation', parent: { jobId: job.id, index: 2 } });
    });

    test('🔄 posts a new grid for the same prompt with new seeds; the job counts against whoever pressed', async () => {
      const { result: source, job } = await firstGrid();
      const before = driver.resultCount();
      const calls = driver.engine.calls.length;
      await driver.press(source, '🔄', 'bob');
      const result = await driver.waitForResult(before);

      expect(labelsOf(result)).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
      const call = driver.engine.calls[calls];
      expect(call?.method).toBe('generate');
      expect(call?.prompt).toBe(job.parameters.prompt);
      expect(call?.seeds).not.toEqual(job.seeds);
      const rerolled = await driver.getJob(decodeButton(result.rows[0]![0]!.id).jobId);
      expect(rerolled?.kind).toBe('reroll');
      expect(rerolled?.requester.userId).toBe('bob');
    });

    test('a request over the limit gets an ephemeral error that says when to try again, and no work', async () => {
      const results = driver.resultCount();
      await driver.imagine('first of two --seed 1', limitedUser);
      await driver.waitForResult(results);
      const calls = driver.engine.calls.length;
      const ephemerals = driver.ephemeralCount();
      await driver.imagine('second of two --seed 2', limitedUser);
      const text = await nextEphemeral(driver, ephemerals);
      expect(text).toMatch(/limit/i);
      expect(text).toMatch(/start another job in/i);
      expect(driver.engine.calls.length).toBe(calls);
    });

    test('bad input, a forged button id and an expired job get ephemeral errors and no work', async () => {
      const { result: source } = await firstGrid();
      const calls = driver.engine.calls.length;

      let ephemerals = driver.ephemeralCount();
      await driver.imagine('a cat --ar 5:7', 'carol');
      expect(await nextEphemeral(driver, ephemerals)).toMatch(/--ar|aspect/i);

      ephemerals = driver.ephemeralCount();
      await driver.pressWithId(source, 'im1:x:forged', 'carol');
      expect(await nextEphemeral(driver, ephemerals)).toMatch(/isn't valid|not valid|no longer works/i);

      ephemerals = driver.ephemeralCount();
      await driver.pressWithId(source, 'im1:u:NoSuchJob123:1', 'carol');
      expect(await nextEphemeral(driver, ephemerals)).toMatch(/expired|never existed/i);

      expect(driver.engine.calls.length).toBe(calls);
    });

    test('an engine failure ends in an ephemeral message, never in silence', async () => {
      const results = driver.resultCount();
      const ephemerals = driver.ephemeralCount();
      await driver.imagine(`please ${failingPromptWord} now`, 'dave');
      const text = await nextEphemeral(driver, ephemerals);
      expect(text).toMatch(/went wrong|try again/i);
      expect(text).not.toMatch(/EngineError|\n\s+at /);
      expect(driver.resultCount()).toBe(results);
    });

    test('a result ready after the interaction token expired is still delivered, with the bot token', async () => {
      driver.engine.configure({ hold: true });
      const before = driver.resultCount();
      const calls = driver.engine.calls.length;
      try {
        await driver.imagine('a late blue sphere --seed 11', 'erin');
        await driver.engine.waitForCalls(calls + 1);
        await driver.expireTokens();
      } finally {
        driver.engine.releaseAll();
      }
      const result = await driver.waitForResult(before);
      expect(labelsOf(result)).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
      checkButtons(driver, result);
      if (result.sentWithBotToken !== undefined) expect(result.sentWithBotToken).toBe(true);
      expect((await imageSize(result.file)).format).toBe('png');
    });

    test('buttons keep working after a restart on the same DATA_DIR', async () => {
      const { result: source, job } = await firstGrid();
      await driver.restart();
      const before = driver.resultCount();
      const calls = driver.engine.calls.length;
      await driver.press(source, 'U2', 'alice');
      const result = await driver.waitForResult(before);
      expect(labelsOf(result)).toEqual([['Vary (Subtle)', 'Vary (Strong)', '🔄']]);
      const call = driver.engine.calls[calls];
      expect(call?.method).toBe('upscale');
      expect(call?.sourceSeed).toBe(job.seeds[1]);
    });
  });
}
