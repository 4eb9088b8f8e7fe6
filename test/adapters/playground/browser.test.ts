/**
 * The playground in a real browser: headless Chromium (Debian's chromium package, driven by
 * playwright-core) against the real service and the FakeEngine. Types an /imagine prompt, waits
 * for the grid, presses U1 (from the keyboard) and V1 (with the mouse), checks that the new images
 * load, checks accessibility basics, and that the history survives a reload. Screenshots are kept
 * in test-artifacts/playground/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { startHarness, type PlaygroundHarness } from './harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const artifacts = path.join(root, 'test-artifacts', 'playground');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const chromiumFlags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

/** Resolves once the image has loaded; returns its natural size. */
async function loadedImage(image: Locator): Promise<{ width: number; height: number; alt: string }> {
  await image.waitFor({ state: 'visible', timeout: 30_000 });
  await image.evaluate((element: HTMLImageElement) => (element.complete && element.naturalWidth > 0 ? undefined : new Promise((resolve, reject) => {
    element.addEventListener('load', resolve, { once: true });
    element.addEventListener('error', () => reject(new Error(`image ${element.src} failed to load`)), { once: true });
  })));
  return image.evaluate((element: HTMLImageElement) => ({ width: element.naturalWidth, height: element.naturalHeight, alt: element.alt }));
}

/** The card of the newest job (cards are newest first). */
function newestCard(page: Page): Locator {
  return page.locator('#jobs > li.job').first();
}

async function completedCardImage(card: Locator): Promise<{ width: number; height: number; alt: string }> {
  await card.and(card.page().locator('[data-status="completed"]')).waitFor({ timeout: 30_000 });
  return loadedImage(card.locator('img.job-image'));
}

describe('playground in Chromium', () => {
  let harness: PlaygroundHarness;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(chromiumPath)) throw new Error(`Chromium is not installed at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH).`);
    mkdirSync(artifacts, { recursive: true });
    harness = await startHarness({ engine: { steps: 6, stepDelayMs: 40 } });
    profile = mkdtempSync(path.join(os.tmpdir(), 'imagine-chromium-'));
    context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, args: chromiumFlags, headless: true, viewport: { width: 1100, height: 900 } });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
  });

  afterAll(async () => {
    await context?.close();
    await harness?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  test('types an /imagine prompt, gets the grid, presses U1 and V1 and sees the new images', async () => {
    await page.goto(harness.url);
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 15_000 });

    // The prompt box is labelled, and focused from the keyboard.
    const prompt = page.getByLabel('Prompt', { exact: true });
    await expect(prompt.evaluate((element) => element.id)).resolves.toBe('prompt');
    await prompt.focus();
    await page.keyboard.type('/imagine a red circle --ar 3:2 --seed 3');
    await page.keyboard.press('Enter');

    // Locators are lazy: pin the grid's card by its job id before newer cards push it down.
    await newestCard(page).waitFor({ timeout: 10_000 });
    const gridJobId = (await newestCard(page).getAttribute('data-job-id'))!;
    const gridCard = page.locator(`#job-${gridJobId}`);
    const grid = await completedCardImage(gridCard);
    expect(grid.width).toBeGreaterThan(grid.height);
    expect(grid.alt).toContain('a red circle');
    await expect(gridCard.locator('.job-title').textContent()).resolves.toBe('a red circle');
    await expect(prompt.inputValue()).resolves.toBe('');
    await page.screenshot({ path: path.join(artifacts, '1-grid.png'), fullPage: true });

    const labels = await gridCard.locator('.job-buttons button').allTextContents();
    expect(labels).toEqual(['U1', 'U2', 'U3', 'U4', 'V1', 'V2', 'V3', 'V4', '🔄 Re-roll']);

    // U1 is reachable with Tab from the prompt box and pressed with Enter.
    await prompt.focus();
    let focused = '';
    for (let presses = 0; presses < 30 && focused !== 'U1'; presses += 1) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.textContent ?? '');
    }
    expect(focused).toBe('U1');
    await expect(page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).resolves.toBe('U1: upscale image 1');
    await page.keyboard.press('Enter');
    await page.locator('#jobs > li.job').nth(1).waitFor();
    const upscaleCard = newestCard(page);
    const upscaled = await completedCardImage(upscaleCard);
    const record = (await harness.service.getJob(gridJobId))!;
    expect(upscaled.width).toBe(record.images![0]!.width * harness.engine.capabilities.upscaleFactor);
    expect(upscaled.alt).toMatch(/^Upscaled image 1 .*a red circle/);
    await expect(upscaleCard.locator('.job-buttons button').allTextContents()).resolves.toEqual(['Vary (Subtle)', 'Vary (Strong)', '🔄 Re-roll']);
    await page.screenshot({ path: path.join(artifacts, '2-upscaled.png'), fullPage: true });

    // V1 with the mouse, on the grid's card (now second).
    await gridCard.getByRole('button', { name: /^V1\b/ }).click();
    await page.locator('#jobs > li.job').nth(2).waitFor();
    const variationCard = newestCard(page);
    const variation = await completedCardImage(variationCard);
    expect(variation.width).toBe(grid.width);
    expect(variation.alt).toMatch(/variations of image 1 .*a red circle/);
    await page.screenshot({ path: path.join(artifacts, '3-variation.png'), fullPage: true });

    // Every image has alt text naming its prompt and every button an accessible name.
    const alts = await page.locator('img.job-image').evaluateAll((images) => images.map((image) => (image as HTMLImageElement).alt));
    expect(alts).toHaveLength(3);
    for (const alt of alts) expect(alt).toContain('a red circle');
    const unnamed = await page.locator('button').evaluateAll((buttons) => buttons.filter((button) => !(button.getAttribute('aria-label') || button.textContent?.trim())).length);
    expect(unnamed).toBe(0);
    expect(pageErrors).toEqual([]);
  });

  test('shows /help and bad input as messages, and keeps the history of this browser across a reload', async () => {
    await page.getByLabel('Prompt', { exact: true }).fill('/imagine a cat --zoom 2');
    await page.getByRole('button', { name: 'Imagine' }).click();
    await expect(page.locator('.notice').first().textContent({ timeout: 10_000 })).resolves.toMatch(/zoom/);

    await page.getByLabel('Prompt', { exact: true }).fill('/help');
    await page.keyboard.press('Enter');
    await page.locator('.notice', { hasText: 'draws four pictures' }).waitFor({ timeout: 10_000 });

    await page.reload();
    await page.locator('#jobs > li.job').nth(2).waitFor({ timeout: 15_000 });
    const restored = page.locator('#jobs > li.job');
    await expect(restored.count()).resolves.toBe(3);
    for (let index = 0; index < 3; index += 1) {
      const image = await loadedImage(restored.nth(index).locator('img.job-image'));
      expect(image.width).toBeGreaterThan(0);
    }
    await expect(restored.nth(2).locator('.job-title').textContent()).resolves.toBe('a red circle');
    await page.screenshot({ path: path.join(artifacts, '4-history-after-reload.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  test('shows the queue position of a waiting job and the live progress of a running one, and cancels a job', async () => {
    harness.engine.configure({ hold: true, stepDelayMs: 150 });
    const prompt = page.getByLabel('Prompt', { exact: true });
    const callsBefore = harness.engine.calls.length;
    await prompt.fill('a slow blue square');
    await prompt.press('Enter');
    await page.locator('#jobs > li.job', { hasText: 'a slow blue square' }).waitFor();
    await harness.engine.waitForCalls(callsBefore + 1);
    await prompt.fill('a waiting green circle');
    await prompt.press('Enter');
    const waiting = page.locator('#jobs > li.job', { hasText: 'a waiting green circle' });
    const running = page.locator('#jobs > li.job', { hasText: 'a slow blue square' });
    await waiting.locator('.job-status', { hasText: '#1 in line' }).waitFor({ timeout: 10_000 });
    await running.locator('.job-status', { hasText: 'Generating' }).waitFor({ timeout: 10_000 });
    await expect(running.locator('progress.job-progress').isVisible()).resolves.toBe(true);

    harness.engine.releaseAll();
    // The bar moves while the job runs, before the grid replaces it.
    await page.waitForFunction(() => {
      const bar = Array.from(document.querySelectorAll('#jobs > li.job')).find((card) => card.textContent?.includes('a slow blue square'))?.querySelector('progress');
      return bar instanceof HTMLProgressElement && bar.value > 0 && bar.value < 1;
    }, undefined, { timeout: 15_000 });
    await page.screenshot({ path: path.join(artifacts, '5-queue-and-progress.png'), fullPage: true });
    const runningImage = await completedCardImage(running);
    const waitingImage = await completedCardImage(waiting);
    expect(runningImage.alt).toContain('a slow blue square');
    expect(waitingImage.alt).toContain('a waiting green circle');
    await expect(running.locator('progress.job-progress').isHidden()).resolves.toBe(true);
    harness.engine.configure({ stepDelayMs: 40 });

    // A waiting job can be cancelled from its card; it ends with the cancellation and a re-roll.
    harness.engine.configure({ hold: true });
    await prompt.fill('a cancelled cube');
    await prompt.press('Enter');
    const cancelled = page.locator('#jobs > li.job', { hasText: 'a cancelled cube' });
    await cancelled.getByRole('button', { name: 'Cancel the job “a cancelled cube”' }).click();
    await cancelled.and(page.locator('[data-status="cancelled"], [data-status="failed"]')).waitFor({ timeout: 10_000 });
    await expect(cancelled.locator('.job-error').textContent()).resolves.toMatch(/cancel/i);
    await expect(cancelled.locator('.job-buttons button').allTextContents()).resolves.toEqual(['🔄 Re-roll']);
    await expect(cancelled.getByRole('button', { name: /^Cancel/ }).isHidden()).resolves.toBe(true);
    harness.engine.releaseAll();

    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.join(artifacts, '6-dark.png'), fullPage: false });
    expect(pageErrors).toEqual([]);
  });
});
