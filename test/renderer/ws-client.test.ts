/**
 * The WebSocket transport (renderer/src/transport/ws-client.ts): the app
 * served without `window.belljar` talks to a small in-test bridge speaking
 * electron/contract/bridge-protocol.ts: calls answered by id, `sandboxes`
 * events, binary frames with at most BRIDGE_FRAMES_IN_FLIGHT unacknowledged,
 * and a clear message when the socket closes. It also proves the strict CSP
 * lets the page reach its own host's WebSocket.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  BRIDGE_FRAMES_IN_FLIGHT,
  BRIDGE_METHODS,
  BRIDGE_WS_PATH,
  packBridgeFrame,
  type BridgeServerMessage,
} from '../../electron/contract/bridge-protocol.js';
import type { InputEvent, OpenRequest, SandboxSummary } from '../../electron/contract/ipc.js';
import { readFrameStream } from './frame-stream.js';
import { openApp, readPixels, sandbox, startHarness, TEST_TIMEOUT_MS, waitFor, type Harness } from './harness.js';
import { SYNTHETIC_PIXELS, SYNTHETIC_STREAM_PATH } from './make-frame-stream.js';

/** A bridge with canned answers that records what the client did. */
class FakeBridge {
  readonly wss: WebSocketServer;
  readonly calls: { method: string; params: unknown[] }[] = [];
  readonly violations: string[] = [];
  readonly frames = readFrameStream(SYNTHETIC_STREAM_PATH);
  acks = 0;
  maxInFlight = 0;
  list: SandboxSummary[] = [sandbox({ id: 'sb-1' })];
  private lastId = 0;
  private sent = 0;
  private socket: WebSocket | null = null;

  constructor(h: Harness) {
    this.wss = new WebSocketServer({ server: h.server.server, path: BRIDGE_WS_PATH });
    this.wss.on('connection', (socket) => {
      this.socket = socket;
      this.send({ event: 'sandboxes', list: this.list });
      socket.on('message', (data, isBinary) => {
        if (isBinary) this.violations.push('binary message from the client');
        else this.onText(String(data));
      });
    });
  }

  private send(message: BridgeServerMessage): void {
    this.socket?.send(JSON.stringify(message));
  }

  private inFlight(): number {
    return this.sent - this.acks;
  }

  private pump(id: string): void {
    while (this.sent < this.frames.length && this.inFlight() < BRIDGE_FRAMES_IN_FLIGHT) {
      this.socket?.send(packBridgeFrame(id, this.frames[this.sent]!));
      this.sent += 1;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight());
    }
  }

  private onText(text: string): void {
    const m = JSON.parse(text) as { id?: unknown; method?: unknown; params?: unknown };
    if (m.method === 'frameAck') {
      this.acks += 1;
      if (this.inFlight() < 0) this.violations.push('more acks than frames');
      this.pump((m.params as string[])[0] ?? '');
      return;
    }
    const method = m.method as (typeof BRIDGE_METHODS)[number];
    if (typeof m.id !== 'number' || m.id <= this.lastId) this.violations.push(`bad call id ${String(m.id)}`);
    if (!BRIDGE_METHODS.includes(method)) this.violations.push(`unknown method ${String(m.method)}`);
    if (!Array.isArray(m.params)) this.violations.push('params is not an array');
    const id = m.id as number;
    this.lastId = id;
    const params = m.params as unknown[];
    this.calls.push({ method, params });
    switch (method) {
      case 'listSandboxes':
        return this.send({ id, result: this.list });
      case 'open': {
        const request = params[0] as OpenRequest;
        if (request.kind === 'url' && request.url.includes('bad.example')) {
          return this.send({ id, error: 'That address is on the blocked list.' });
        }
        const opened = sandbox({ id: 'sb-2', title: 'example.com', state: 'starting', stage: 'booting' });
        this.list = [...this.list, opened];
        this.send({ id, result: opened });
        return this.send({ event: 'sandboxes', list: this.list });
      }
      case 'attachDisplay':
        this.send({ id, result: null });
        return this.pump(params[0] as string);
      default:
        return this.send({ id, result: null });
    }
  }

  /** Drops the connection as a crashed bridge would. */
  kill(): void {
    this.socket?.terminate();
  }

  close(): Promise<void> {
    return new Promise((done) => this.wss.close(() => done()));
  }
}

let h: Harness;
let bridge: FakeBridge;

before(async () => {
  h = await startHarness();
  bridge = new FakeBridge(h);
});
after(async () => {
  await bridge?.close();
  await h?.close();
});

describe('WebSocket transport', () => {
  test(
    'calls, events, frames with acks, input, errors and a lost connection',
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { page, context, problems } = await openApp(h, null);
      try {
        assert.equal(await page.locator('html').getAttribute('data-transport'), 'websocket');
        // The 'sandboxes' event gives a tab.
        await page.getByRole('tab', { name: /invoice\.pdf/ }).click();

        // Frames arrive as binary messages, are drawn, and acknowledged: never more than allowed in flight.
        await waitFor('every frame acknowledged', async () => bridge.acks === bridge.frames.length);
        assert.ok(bridge.maxInFlight <= BRIDGE_FRAMES_IN_FLIGHT && bridge.maxInFlight > 0, `${bridge.maxInFlight}`);
        const pixels = await readPixels(page, SYNTHETIC_PIXELS);
        SYNTHETIC_PIXELS.forEach((p, i) => assert.deepEqual(pixels[i], [...p.rgb], `pixel (${p.x}, ${p.y})`));

        // Input is a call with the sandbox id and the events.
        await page.getByRole('application', { name: /Screen of invoice\.pdf/ }).focus();
        await page.keyboard.press('KeyB');
        const keys = await waitFor('the key events', async () => {
          const events = bridge.calls
            .filter((c) => c.method === 'input' && c.params[0] === 'sb-1')
            .flatMap((c) => c.params[1] as InputEvent[]);
          return events.length >= 2 ? events : undefined;
        });
        assert.deepEqual(keys, [
          { type: 'key', code: 'KeyB', down: true },
          { type: 'key', code: 'KeyB', down: false },
        ]);
        await waitFor('a resize call', async () => bridge.calls.some((c) => c.method === 'resize'));

        // A call answered with an error rejects with its message, shown in plain words.
        await page.getByRole('tab', { name: 'Home' }).click();
        await waitFor('detach on leaving the tab', async () => bridge.calls.some((c) => c.method === 'detachDisplay'));
        const field = page.getByLabel('Web address', { exact: true });
        await field.fill('https://bad.example/');
        await field.press('Enter');
        await page.getByRole('alert').getByText('That address is on the blocked list.', { exact: false }).waitFor();
        // A result resolves, and the following event adds its tab.
        await field.fill('https://example.com/');
        await field.press('Enter');
        await page.getByRole('tab', { name: /example\.com/, selected: true }).waitFor();

        assert.deepEqual(bridge.violations, []);
        assert.deepEqual(problems, [], 'no CSP or console errors');

        bridge.kill();
        await page
          .getByRole('alert')
          .getByText(/Lost the connection to the Belljar service/)
          .waitFor();
      } finally {
        await context.close();
      }
    },
  );
});
