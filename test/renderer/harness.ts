/**
 * Shared set-up of the renderer tests: the built renderer (dist/renderer)
 * served on loopback, Debian's Chromium through playwright-core, a page with
 * the fake `window.belljar`, and small helpers to read what the fake recorded
 * and what the canvas shows. Every wait has a timeout; tests close the
 * browser in their `after` hooks.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { InputEvent, SandboxSummary } from '../../electron/contract/ipc.js';
import { installFakeBelljar, type FakeCall, type FakeGlobals, type FakeInit } from './fake-api.js';
import { startStaticServer, type StaticServer } from './static-server.js';

export const CHROMIUM = '/usr/bin/chromium';
export const RENDERER_DIR = fileURLToPath(new URL('../../renderer/', import.meta.url));
/** Per-action timeout in the page; a test that needs longer says so. */
export const ACTION_TIMEOUT_MS = 5_000;
/** Each test's whole budget (node:test `timeout`). */
export const TEST_TIMEOUT_MS = 30_000;

export interface Harness {
  readonly browser: Browser;
  readonly server: StaticServer;
  close(): Promise<void>;
}

export async function startHarness(): Promise<Harness> {
  if (!existsSync(`${RENDERER_DIR}index.html`)) {
    throw new Error(`${RENDERER_DIR}index.html is missing: run node scripts/build.mjs first`);
  }
  const server = await startStaticServer(RENDERER_DIR);
  let browser: Browser;
  try {
    browser = await launchChromium();
  } catch (error) {
    await server.close();
    throw error;
  }
  return {
    browser,
    server,
    close: async () => {
      await browser.close().catch(() => undefined);
      await server.close();
    },
  };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu'],
    timeout: 20_000,
  });
}

export interface AppPage {
  readonly page: Page;
  readonly context: BrowserContext;
  /** Console errors, page errors and CSP violations seen so far. */
  readonly problems: string[];
}

/** A fresh context and page, optionally with the fake API, showing the app's home tab. */
export async function openApp(
  h: Harness,
  init: FakeInit | null,
  viewport = { width: 1000, height: 700 },
): Promise<AppPage> {
  const context = await h.browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content.Security.Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  if (init) await page.addInitScript(installFakeBelljar, init);
  await page.goto(`${h.server.origin}/index.html`);
  await page.getByRole('tab', { name: 'Home' }).waitFor();
  return { page, context, problems };
}

export async function fakeCalls(page: Page, method?: string): Promise<FakeCall[]> {
  const calls = await page.evaluate(() => (globalThis as unknown as FakeGlobals).__belljarFake.calls);
  return method === undefined ? calls : calls.filter((c) => c.method === method);
}

/** Every input event the app sent for one sandbox, in order. */
export async function inputEvents(page: Page, id: string): Promise<InputEvent[]> {
  const calls = await fakeCalls(page, 'sendInput');
  return calls.filter((c) => c.args[0] === id).flatMap((c) => c.args[1] as InputEvent[]);
}

export async function setSandboxes(page: Page, list: readonly SandboxSummary[]): Promise<void> {
  await page.evaluate((l) => (globalThis as unknown as FakeGlobals).__belljarFake.setSandboxes(l), list);
}

/** Replays frames into the display of sandbox `id`; returns how many listener calls returned. */
export async function playFrames(page: Page, id: string, frames: readonly ArrayBuffer[]): Promise<number> {
  const base64 = frames.map((f) => Buffer.from(f).toString('base64'));
  return page.evaluate(
    ([sandboxId, encoded]) => (globalThis as unknown as FakeGlobals).__belljarFake.play(sandboxId, encoded),
    [id, base64] as const,
  );
}

/**
 * RGB of the display canvas's backing store (guest pixels) at each point.
 * The root tsconfig has no DOM library, so the page's API is typed structurally.
 */
export async function readPixels(
  page: Page,
  points: readonly { readonly x: number; readonly y: number }[],
): Promise<[number, number, number][]> {
  return page.evaluate((pts) => {
    interface Canvas {
      getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
    }
    const doc = (globalThis as unknown as { document: { querySelector(s: string): Canvas | null } }).document;
    const canvas = doc.querySelector('canvas.display-canvas');
    if (!canvas) throw new Error('no display canvas');
    const ctx = canvas.getContext('2d');
    return pts.map(({ x, y }): [number, number, number] => {
      const d = ctx.getImageData(x, y, 1, 1).data;
      return [d[0] ?? -1, d[1] ?? -1, d[2] ?? -1];
    });
  }, points);
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = ACTION_TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A sandbox summary with sensible defaults. */
export function sandbox(overrides: Partial<SandboxSummary> & Pick<SandboxSummary, 'id'>): SandboxSummary {
  return {
    title: 'invoice.pdf',
    item: { kind: 'file', name: 'invoice.pdf' },
    state: 'running',
    stage: 'shown',
    openedAt: Date.now(),
    memoryMiB: 256,
    network: 'none',
    ...overrides,
  };
}
