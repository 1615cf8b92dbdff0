/**
 * The interactive sandbox on our own VMM (KVM lab or hardware KVM), through
 * the same session service the app uses: the guest image boots with our
 * virtio-gpu, virtio-input and vsock; the agent says ready; a fixture page is
 * opened as a URL and fetched through the egress proxy over vsock (a test
 * allowlist lets it reach a fixture server on this machine's loopback, which
 * the policy refuses otherwise); the exported frames show it; a click and
 * typed text through virtio-input change the page, and the next frames show
 * that; closing ends the VMM process and removes its temp files.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodePng } from '../../vmm/devices/virtio/gpu/png.js';
import { findGuestImage } from '../../electron/sessions/guest-image.js';
import { SessionManager } from '../../electron/sessions/session-manager.js';
import type { SandboxSession } from '../../electron/sessions/sandbox-session.js';
import type { InputEvent } from '../../electron/contract/ipc.js';
import { Framebuffer, type Region, type Rgb } from '../support/framebuffer.js';
import { realKvmSkipReason } from './real-kvm.js';
import { labFault, STUCK_VCPU } from '../support/lab-faults.js';

const FIXTURE = new URL('../../../test/fixtures/guest/interactive-page.html', import.meta.url).pathname;
const RESULTS = 'dist/test-results';
/** Chromium under nested virtualization on a software CPU takes minutes to show a page. */
const PAGE_SHOWN_MS = 360_000;
const REACTION_MS = 90_000;
/** How long a click holds the button down (a hand's click: tens of milliseconds or more). */
const CLICK_HOLD_MS = 100;
/** From a resize request to the guest's screen at the new size. */
const RESIZE_MS = 60_000;
/** The cursor image's extent below and right of its hot spot, in pixels (about). */
const CURSOR_BOX = 12;
const DISPLAY = { width: 1024, height: 768 };
/**
 * Runs that hit one of the lab's known faults (test/support/lab-faults.ts) are
 * retried, each reported; no new attempt starts after ATTEMPTS_BUDGET_MS.
 */
const MAX_ATTEMPTS = 6;
const ATTEMPTS_BUDGET_MS = 18 * 60_000;
const RESIZE_ASKED = { width: 1021, height: 700 };
const RESIZED = { width: 1016, height: 700 };
/** Every attempt at its slowest, and then some: a hang fails the test instead of the whole lab run. */
const SCENARIO_TIMEOUT_MS = 30 * 60_000;
/** BELLJAR_GUEST_DEBUG=viewer|input: the guest's debug copy (SessionManagerOptions.guestDebug), kept in RESULTS. */
const GUEST_DEBUG_ENV = process.env['BELLJAR_GUEST_DEBUG'];
const GUEST_DEBUG = GUEST_DEBUG_ENV === 'viewer' || GUEST_DEBUG_ENV === 'input' ? GUEST_DEBUG_ENV : undefined;
if (GUEST_DEBUG_ENV !== undefined && GUEST_DEBUG === undefined) {
  throw new Error(`BELLJAR_GUEST_DEBUG must be viewer or input, not ${JSON.stringify(GUEST_DEBUG_ENV)}`);
}

/** The fixture's regions and colours (see the comment in interactive-page.html). */
const BUTTON: Region = [0.07, 0.07, 0.43, 0.43];
const STATUS: Region = [0.57, 0.07, 0.93, 0.43];
const FIELD: Region = [0.07, 0.57, 0.93, 0.88];
/** Background right of the status box and below the field: page content there means a layout for a larger screen. */
const RIGHT_MARGIN: Region = [0.965, 0.1, 0.995, 0.4];
const BOTTOM_MARGIN: Region = [0.1, 0.92, 0.9, 0.99];
/** Marks that turn yellow once the page sees the pointer move, a button go down, a button come up. */
const POINTER_TRACE: readonly (readonly [string, Region])[] = [
  ['move', [0.06, 0.015, 0.14, 0.035]],
  ['down', [0.21, 0.015, 0.29, 0.035]],
  ['up', [0.36, 0.015, 0.44, 0.035]],
];
const ORANGE: Rgb = [0xff, 0x88, 0x00];
const GREEN: Rgb = [0x00, 0xc0, 0x00];
const GREY: Rgb = [0x80, 0x80, 0x80];
const MAGENTA: Rgb = [0xc0, 0x00, 0xc0];
const WHITE: Rgb = [0xff, 0xff, 0xff];
const CYAN: Rgb = [0x00, 0xc0, 0xc0];
const YELLOW: Rgb = [0xe0, 0xe0, 0x00];

function skipReason(): string | undefined {
  const image = findGuestImage();
  return realKvmSkipReason() ?? ('missing' in image ? image.missing : undefined);
}

async function until(what: string, ms: number, check: () => boolean, detail: () => string): Promise<number> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > ms) throw new Error(`${what}: not within ${ms / 1000} s (${detail()})`);
    await sleep(250);
  }
  return performance.now() - started;
}

/**
 * Progress on stdout as it happens (diagnostics only show when the test ends):
 * the lab takes a run that prints nothing for minutes for a hung L1.
 */
function progress(line: string): void {
  console.log(`sandbox scenario: ${line}`);
}

/** With a guest debug mode, the guest's console (tail) of each attempt is kept. */
function keepConsole(session: SandboxSession | undefined, attempt: number): void {
  if (GUEST_DEBUG === undefined || session?.consoleTail === undefined) return;
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(`${RESULTS}/sandbox-console-${attempt}.txt`, session.consoleTail);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test(
  'a sandbox on our VMM: page through the egress proxy, click and type through virtio-input, close',
  { skip: skipReason(), timeout: SCENARIO_TIMEOUT_MS },
  async (t) => {
    const page = readFileSync(FIXTURE);
    const fixture = createServer((req, res) => {
      if (req.url === '/interactive-page.html') res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => fixture.listen(0, '127.0.0.1', resolve));
    t.after(() => fixture.close());
    const port = (fixture.address() as AddressInfo).port;

    const sessions = new SessionManager({
      display: DISPLAY,
      allowForTests: [`127.0.0.1:${port}`],
      agentTimeoutMs: PAGE_SHOWN_MS,
      ...(GUEST_DEBUG ? { guestDebug: GUEST_DEBUG } : {}),
    });
    t.after(() => sessions.closeAll());
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      const opened: { session?: SandboxSession } = {};
      progress(`attempt ${attempt}: opening the fixture page`);
      try {
        await scenario(t, sessions, port, opened);
        keepConsole(opened.session, attempt);
        return;
      } catch (error) {
        // Retried: only the lab's known faults (see the note in the header), each
        // reported; anything else fails at once.
        // Closed either way; closing also brings the guest's console tail.
        await sessions.closeAll();
        keepConsole(opened.session, attempt);
        const guestConsole = opened.session?.consoleTail ?? '';
        const fault = labFault({
          sandboxError: opened.session?.error ?? '',
          guestConsole,
          vmmStderr: opened.session?.stderrTail ?? '',
        });
        const outOfTime = performance.now() - started > ATTEMPTS_BUDGET_MS;
        if (attempt >= MAX_ATTEMPTS || outOfTime || fault === null) {
          t.diagnostic(`the guest's console, last lines:\n${guestConsole.slice(-6000) || '(none)'}`);
          throw error;
        }
        t.diagnostic(`attempt ${attempt}: ${fault}; trying again`);
        progress(`attempt ${attempt}: ${fault}; trying again`);
      }
    }
  },
);

async function scenario(
  t: TestContext,
  sessions: SessionManager,
  port: number,
  opened: { session?: SandboxSession },
): Promise<void> {
  const started = performance.now();
  const summary = await sessions.open({ kind: 'url', url: `http://127.0.0.1:${port}/interactive-page.html` });
  const session = sessions.session(summary.id)!;
  opened.session = session;
  assert.equal(summary.network, 'web');
  assert.equal(summary.title, `127.0.0.1:${port}`);
  const screen = new Framebuffer();
  // The stream is recorded (frame-stream format, gzip) for the renderer's replay tests.
  mkdirSync(RESULTS, { recursive: true });
  const recording = createGzip();
  const recorded = pipeline(recording, createWriteStream(`${RESULTS}/sandbox-interactive.bjfs.gz`));
  sessions.attachDisplay(summary.id, {
    send: (frame, delivered) => {
      screen.apply(frame);
      if (!recording.writableEnded) {
        const length = Buffer.alloc(4);
        length.writeUInt32LE(frame.byteLength);
        recording.write(length);
        recording.write(Buffer.from(frame));
      }
      delivered();
    },
  });
  try {
    const colours = () =>
      `state ${session.state} ${session.error ?? ''}; page ${JSON.stringify(session.page ?? null)}; ` +
      `VMM timings ${JSON.stringify(session.timings)}; VMM stderr ${JSON.stringify(session.stderrTail.slice(-500))}; ` +
      `${screen.width}x${screen.height}, ${screen.frames} frames; ` +
      `button orange ${screen.coverage(ORANGE, BUTTON).toFixed(2)} green ${screen.coverage(GREEN, BUTTON).toFixed(2)}, ` +
      `status grey ${screen.coverage(GREY, STATUS).toFixed(2)} magenta ${screen.coverage(MAGENTA, STATUS).toFixed(2)}; ` +
      `the page saw the pointer ${POINTER_TRACE.map(([what, region]) => `${what} ${screen.coverage(YELLOW, region) > 0.5 ? 'yes' : 'no'}`).join(', ')}`;
    const failed = () => {
      if (session.state === 'failed') {
        throw new Error(`the sandbox failed: ${session.error}\n${session.consoleTail?.slice(-4000) ?? ''}`);
      }
      // A guest vCPU stuck for good: no use waiting out the test's timeouts.
      const stuck = STUCK_VCPU.exec(session.stderrTail);
      if (stuck) throw new Error(`the sandbox stalled: ${stuck[0]}`);
      return false;
    };

    await until(
      'the fixture page on the exported display',
      PAGE_SHOWN_MS,
      () => failed() || (screen.coverage(ORANGE, BUTTON) > 0.9 && screen.coverage(GREY, STATUS) > 0.9),
      colours,
    );
    const shownAfter = (performance.now() - started) / 1000;
    progress(`page shown after ${shownAfter.toFixed(1)} s; moving the pointer`);
    assert.ok(screen.coverage(WHITE, FIELD) > 0.9, `the text field is white (${screen.coverage(WHITE, FIELD)})`);
    t.diagnostic(
      `fixture page shown ${shownAfter.toFixed(1)} s after open; VMM process timings (ms since its start): ` +
        JSON.stringify(session.timings),
    );

    const at = (region: Region) => ({
      x: Math.round(((region[0] + region[2]) / 2) * screen.width),
      y: Math.round(((region[1] + region[3]) / 2) * screen.height),
    });
    /** A click as a hand makes one: the button is held for a moment, not released in the same instant. */
    const click = async (region: Region): Promise<void> => {
      sessions.input(summary.id, [
        { type: 'pointer-move', ...at(region) },
        { type: 'pointer-button', button: 'left', down: true },
      ]);
      await sleep(CLICK_HOLD_MS);
      sessions.input(summary.id, [{ type: 'pointer-button', button: 'left', down: false }]);
    };

    // The pointer: its motion reaches the compositor, which draws the cursor where we put it.
    const target = at(STATUS);
    sessions.input(summary.id, [{ type: 'pointer-move', ...target }]);
    const cursorRegion: Region = [
      target.x / screen.width,
      target.y / screen.height,
      (target.x + CURSOR_BOX) / screen.width,
      (target.y + CURSOR_BOX) / screen.height,
    ];
    await until(
      'the guest draws its cursor where the pointer moved',
      REACTION_MS,
      () => failed() || screen.differing(GREY, cursorRegion) > 0.05,
      colours,
    );

    progress('cursor drawn; clicking');
    // A click on the status box: the page sees it (cyan). The press and the
    // release go in separate batches, as from a hand.
    await click(STATUS);
    const clickMs = await until(
      'the status box turns cyan after a click',
      REACTION_MS,
      () => failed() || screen.coverage(CYAN, STATUS) > 0.9,
      colours,
    );
    t.diagnostic(`click shown after ${(clickMs / 1000).toFixed(1)} s`);

    // The keyboard. The field has focus from the page's load (the status box
    // does not take focus when clicked). Type into the field, then Shift+Tab to
    // the button and press it.
    const keys = (codes: readonly string[]): InputEvent[] =>
      codes.flatMap((code): InputEvent[] => [
        { type: 'key', code, down: true },
        { type: 'key', code, down: false },
      ]);
    progress('typing');
    sessions.input(summary.id, keys(['KeyB', 'KeyE', 'KeyL', 'KeyL', 'KeyJ', 'KeyA', 'KeyR']));
    const typeMs = await until(
      'the status box turns magenta once "belljar" is typed',
      REACTION_MS,
      () => failed() || screen.coverage(MAGENTA, STATUS) > 0.9,
      colours,
    );
    assert.ok(screen.differing(WHITE, FIELD) > 0.005, 'the typed text shows in the field');
    sessions.input(summary.id, [
      { type: 'key', code: 'ShiftLeft', down: true },
      ...keys(['Tab']),
      { type: 'key', code: 'ShiftLeft', down: false },
      ...keys(['Space']),
    ]);
    const pressMs = await until(
      'the button turns green when pressed from the keyboard',
      REACTION_MS,
      () => failed() || screen.coverage(GREEN, BUTTON) > 0.9,
      colours,
    );
    t.diagnostic(
      `typing shown after ${(typeMs / 1000).toFixed(1)} s; key press after ${(pressMs / 1000).toFixed(1)} s`,
    );

    writeFileSync(`${RESULTS}/sandbox-interactive.png`, encodePng(screen.width, screen.height, screen.pixels));

    // The host's window changes size: our virtio-gpu offers the new mode
    // (VIRTIO_GPU_EVENT_DISPLAY) and the agent has sway show it. The asked
    // width is not a multiple of 8: the VMM offers (and sway shows) 1016.
    progress('typed and pressed; resizing');
    sessions.resize(summary.id, RESIZE_ASKED.width, RESIZE_ASKED.height);
    const resizeMs = await until(
      `the guest's screen becomes ${RESIZED.width}x${RESIZED.height}`,
      RESIZE_MS,
      () => failed() || (screen.width === RESIZED.width && screen.height === RESIZED.height),
      () => `screen ${screen.width}x${screen.height}; ${colours()}`,
    );
    // The page is laid out again for the new size: its regions are where they belong.
    const layoutMs = await until(
      'the page fills the new screen',
      REACTION_MS,
      () =>
        failed() ||
        (screen.coverage(GREEN, BUTTON) > 0.9 &&
          screen.coverage(MAGENTA, STATUS) > 0.9 &&
          screen.coverage(MAGENTA, RIGHT_MARGIN) < 0.05 &&
          screen.coverage(WHITE, BOTTOM_MARGIN) < 0.05),
      colours,
    );
    t.diagnostic(
      `resize → new mode on screen after ${(resizeMs / 1000).toFixed(1)} s, ` +
        `the page laid out for it ${(layoutMs / 1000).toFixed(1)} s after that`,
    );
    writeFileSync(`${RESULTS}/sandbox-resized.png`, encodePng(screen.width, screen.height, screen.pixels));
  } finally {
    // Ended however the scenario ends: a failed run's stream is the evidence.
    recording.end();
    await recorded;
  }

  progress('resized; closing');
  const pid = session.pid!;
  const tempDir = session.item.tempDir;
  assert.ok(processAlive(pid));
  await sessions.close(summary.id);
  assert.equal(processAlive(pid), false, 'the VMM process is gone');
  assert.equal(existsSync(tempDir), false, 'its temp directory is removed');
  assert.deepEqual(sessions.list(), []);
}
