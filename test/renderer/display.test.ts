/**
 * The live display: a recorded frame stream drawn onto the canvas, the
 * guest's cursor overlay, keyboard and pointer forwarding, and the debounced
 * resize. Runs the built renderer in Chromium with a fake `window.belljar`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { encodeFrame } from '../../electron/contract/frame-wire.js';
import { parseFrameStream, readFrameStream } from './frame-stream.js';
import {
  fakeCalls,
  inputEvents,
  openApp,
  playFrames,
  readPixels,
  sandbox,
  startHarness,
  TEST_TIMEOUT_MS,
  waitFor,
  type AppPage,
  type Harness,
} from './harness.js';
import {
  SYNTHETIC_CURSOR,
  SYNTHETIC_PIXELS,
  SYNTHETIC_SCREEN,
  SYNTHETIC_STREAM_PATH,
  syntheticStreamFile,
} from './make-frame-stream.js';

const ID = 'sb-1';
const options = { timeout: TEST_TIMEOUT_MS };
let h: Harness;

before(async () => {
  h = await startHarness();
});
after(async () => {
  await h?.close();
});

/** The app with one running sandbox shown, the recorded stream drawn. */
async function showSandbox(viewport?: { width: number; height: number }): Promise<AppPage> {
  const app = await openApp(h, { sandboxes: [sandbox({ id: ID })] }, viewport);
  await app.page.getByRole('tab', { name: /invoice\.pdf/ }).click();
  await waitFor('the display to attach', async () => (await fakeCalls(app.page, 'attachDisplay')).length > 0);
  const frames = readFrameStream(SYNTHETIC_STREAM_PATH);
  assert.equal(await playFrames(app.page, ID, frames), frames.length, 'one listener call per frame');
  return app;
}

describe('display', () => {
  test('the stored stream is what the generator makes (regenerate with make-frame-stream)', options, () => {
    const stored = new Uint8Array(readFileSync(SYNTHETIC_STREAM_PATH));
    assert.ok(stored.length < 200 * 1024, 'fixture stays small');
    assert.deepEqual(parseFrameStream(stored), parseFrameStream(syntheticStreamFile()));
  });

  test('draws the recorded frame stream: full frame, then dirty rectangles', options, async () => {
    const { page, context, problems } = await showSandbox();
    try {
      const canvas = page.getByRole('application', { name: /Screen of invoice\.pdf/ });
      assert.deepEqual(
        await canvas.evaluate((c) => [
          (c as unknown as { width: number }).width,
          (c as unknown as { height: number }).height,
        ]),
        [SYNTHETIC_SCREEN.width, SYNTHETIC_SCREEN.height],
      );
      const pixels = await readPixels(page, SYNTHETIC_PIXELS);
      SYNTHETIC_PIXELS.forEach((p, i) => assert.deepEqual(pixels[i], [...p.rgb], `pixel (${p.x}, ${p.y})`));
      // Shown scaled to fit with the guest's aspect ratio.
      const box = await canvas.boundingBox();
      assert.ok(box && box.width > 100);
      assert.ok(Math.abs(box.width / box.height - SYNTHETIC_SCREEN.width / SYNTHETIC_SCREEN.height) < 0.01);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("shows the guest's cursor as an overlay at its position", options, async () => {
    const { page, context } = await showSandbox();
    try {
      const cursor = page.locator('canvas.display-cursor');
      await cursor.waitFor({ state: 'visible' });
      const screen = await page.locator('canvas.display-canvas').boundingBox();
      const box = await cursor.boundingBox();
      assert.ok(screen && box);
      const scale = screen.width / SYNTHETIC_SCREEN.width;
      assert.ok(Math.abs(box.x - screen.x - SYNTHETIC_CURSOR.x * scale) < 1.5, `cursor x ${box.x - screen.x}`);
      assert.ok(Math.abs(box.y - screen.y - SYNTHETIC_CURSOR.y * scale) < 1.5, `cursor y ${box.y - screen.y}`);
      assert.ok(Math.abs(box.width - SYNTHETIC_CURSOR.width * scale) < 1.5);
      // The host's pointer is hidden over the display while the guest draws its own.
      assert.equal(
        await page
          .locator('canvas.display-canvas')
          .evaluate((c) => (globalThis as unknown as PageGlobals).getComputedStyle(c).cursor),
        'none',
      );
    } finally {
      await context.close();
    }
  });

  test('a full frame of another size resizes the canvas; a disabled screen is black', options, async () => {
    const { page, context } = await showSandbox();
    try {
      const small = new Uint8Array(320 * 200 * 4).fill(90);
      const full = encodeFrame({
        seq: 9,
        enabled: true,
        full: true,
        width: 320,
        height: 200,
        rects: [{ x: 0, y: 0, width: 320, height: 200, pixels: small }],
      });
      await playFrames(page, ID, [full]);
      const size = await page
        .locator('canvas.display-canvas')
        .evaluate((c) => `${(c as unknown as { width: number }).width}x${(c as unknown as { height: number }).height}`);
      assert.equal(size, '320x200');
      assert.deepEqual(await readPixels(page, [{ x: 319, y: 199 }]), [[90, 90, 90]]);
      await playFrames(page, ID, [
        encodeFrame({ seq: 10, enabled: false, full: false, width: 320, height: 200, rects: [] }),
      ]);
      assert.deepEqual(await readPixels(page, [{ x: 10, y: 10 }]), [[0, 0, 0]]);
      // A damaged frame is skipped and said so; the display keeps working.
      await playFrames(page, ID, [new Uint8Array([1, 2, 3]).buffer]);
      await page.getByText(/1 damaged display update skipped/).waitFor();
    } finally {
      await context.close();
    }
  });

  test('keys typed while the display has focus go to the guest, in order', options, async () => {
    const { page, context } = await showSandbox();
    try {
      const canvas = page.getByRole('application', { name: /Screen of invoice\.pdf/ });
      await canvas.focus();
      await page.keyboard.press('KeyA');
      await page.keyboard.press('Shift+Digit1');
      await page.keyboard.press('Enter');
      await page.keyboard.press('Tab'); // goes to the guest too: focus stays on the display
      await page.keyboard.press('Control+KeyO'); // plain Ctrl+O belongs to the guest inside the display
      const key = (code: string, down: boolean) => ({ type: 'key', code, down });
      const expected = [
        key('KeyA', true),
        key('KeyA', false),
        key('ShiftLeft', true),
        key('Digit1', true),
        key('Digit1', false),
        key('ShiftLeft', false),
        key('Enter', true),
        key('Enter', false),
        key('Tab', true),
        key('Tab', false),
        key('ControlLeft', true),
        key('KeyO', true),
        key('KeyO', false),
        key('ControlLeft', false),
      ];
      const events = await waitFor('all key events', async () => {
        const got = await inputEvents(page, ID);
        return got.length >= expected.length ? got : undefined;
      });
      assert.deepEqual(events, expected);
      assert.equal(
        await canvas.evaluate((c) => c === (globalThis as unknown as PageGlobals).document.activeElement),
        true,
        'focus stays on the display',
      );
      assert.equal((await fakeCalls(page, 'pickAndOpenFile')).length, 0);
    } finally {
      await context.close();
    }
  });

  test('a shortcut inside the display stays on the host and releases held keys', options, async () => {
    const { page, context } = await showSandbox();
    try {
      await page.getByRole('application', { name: /Screen of/ }).focus();
      await page.keyboard.press('Control+Shift+H');
      await page.getByRole('tab', { name: 'Home', selected: true }).waitFor();
      const events = await waitFor('the releases', async () => {
        const got = await inputEvents(page, ID);
        return got.length >= 4 ? got : undefined;
      });
      assert.deepEqual(events, [
        { type: 'key', code: 'ControlLeft', down: true },
        { type: 'key', code: 'ShiftLeft', down: true },
        { type: 'key', code: 'ControlLeft', down: false },
        { type: 'key', code: 'ShiftLeft', down: false },
      ]);
    } finally {
      await context.close();
    }
  });

  test('a click maps CSS position to guest pixels; wheel sends detents', options, async () => {
    const { page, context } = await showSandbox();
    try {
      const canvas = page.getByRole('application', { name: /Screen of invoice\.pdf/ });
      const box = await canvas.boundingBox();
      assert.ok(box);
      const at = { x: box.x + box.width * 0.25 + 0.3, y: box.y + box.height * 0.75 + 0.3 };
      const guest = {
        x: Math.floor(((at.x - box.x) * SYNTHETIC_SCREEN.width) / box.width),
        y: Math.floor(((at.y - box.y) * SYNTHETIC_SCREEN.height) / box.height),
      };
      await page.mouse.click(at.x, at.y);
      await page.mouse.click(at.x, at.y, { button: 'right' });
      await page.mouse.wheel(0, 300);
      const events = await waitFor('pointer events', async () => {
        const got = await inputEvents(page, ID);
        return got.some((e) => e.type === 'wheel') ? got : undefined;
      });
      assert.deepEqual(events.slice(0, 5), [
        { type: 'pointer-move', ...guest },
        { type: 'pointer-button', button: 'left', down: true },
        { type: 'pointer-button', button: 'left', down: false },
        { type: 'pointer-button', button: 'right', down: true },
        { type: 'pointer-button', button: 'right', down: false },
      ]);
      assert.ok(guest.x >= 155 && guest.x <= 165 && guest.y >= 295 && guest.y <= 305, JSON.stringify(guest));
      const wheel = events.filter((e) => e.type === 'wheel');
      assert.equal(
        wheel.reduce((sum, e) => sum + (e.type === 'wheel' ? e.dy : 0), 0),
        3,
        '300 px of wheel = 3 detents, positive = down',
      );
      assert.equal(
        await canvas.evaluate((c) => c === (globalThis as unknown as PageGlobals).document.activeElement),
        true,
        'a click focuses the display',
      );
    } finally {
      await context.close();
    }
  });

  test('resizing the window calls api.resize once, after it settles', options, async () => {
    const { page, context } = await showSandbox({ width: 1000, height: 700 });
    try {
      await waitFor('the first resize', async () => (await fakeCalls(page, 'resize')).length === 1);
      for (const width of [900, 850, 800, 760]) {
        await page.setViewportSize({ width, height: 600 });
        await new Promise((r) => setTimeout(r, 60));
      }
      await new Promise((r) => setTimeout(r, 700));
      const calls = await fakeCalls(page, 'resize');
      assert.equal(calls.length, 2, JSON.stringify(calls));
      const area = await page.locator('.display-area').boundingBox();
      assert.ok(area);
      assert.deepEqual(calls[1]?.args, [ID, Math.floor(area.width), Math.floor(area.height)]);
      assert.ok(calls[1]?.args.slice(1).every((v) => Number.isInteger(v)));
    } finally {
      await context.close();
    }
  });
});

/** The page's globals these tests touch (the root tsconfig has no DOM library). */
interface PageGlobals {
  document: { activeElement: unknown };
  getComputedStyle(element: unknown): { cursor: string };
}
