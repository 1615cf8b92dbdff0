// The frame path end to end, without Electron: the preload API (app/preload-api)
// ↔ main's IPC handlers ↔ DisplayPorts ↔ a fake session service, with Node's
// MessageChannel standing in for MessageChannelMain and the renderer's port.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { IPC_CHANNELS } from '../../electron/contract/ipc.js';
import { DisplayPorts, MAX_DISPLAYS_PER_WINDOW, type MainPort } from '../../electron/app/display-ports.js';
import { registerIpcHandlers, type IpcMainLike } from '../../electron/app/ipc-handlers.js';
import { FRAME_ACK } from '../../electron/app/ipc-wire.js';
import {
  createBelljarApi,
  type PreloadIpc,
  type PreloadIpcEvent,
  type PreloadPort,
} from '../../electron/app/preload-api.js';
import { TrustedWindows, type SenderEvent } from '../../electron/app/sender.js';
import { eventFrom, FakeContents, FakeSessions, RENDERER_INDEX } from './electron-fakes.js';

function mainPort(port: MessagePort): MainPort {
  return {
    postMessage: (message) => port.postMessage(message),
    on(event: 'message' | 'close', listener: ((e: { data: unknown }) => void) | (() => void)) {
      if (event === 'message')
        port.on('message', (data: unknown) => (listener as (e: { data: unknown }) => void)({ data }));
      else port.on('close', listener as () => void);
      return this;
    },
    start: () => port.start(),
    close: () => port.close(),
  };
}

function rendererPort(port: MessagePort): PreloadPort {
  return {
    postMessage: (message) => port.postMessage(message),
    addEventListener: (_type, listener) => port.on('message', (data: unknown) => listener({ data })),
    start: () => port.start(),
    close: () => port.close(),
  };
}

/** A MessageChannelMain stand-in: main's end adapted, the renderer's end transferred as is. */
function channelPair(): { port1: MainPort; port2: MessagePort } {
  const channel = new MessageChannel();
  return { port1: mainPort(channel.port1), port2: channel.port2 };
}

type Handler = (event: SenderEvent, ...args: unknown[]) => unknown;

/** A window whose WebContents delivers posted ports to the preload's listeners. */
class Window extends FakeContents {
  readonly preloadListeners = new Map<string, (event: PreloadIpcEvent, ...args: unknown[]) => void>();
  postMessage(channel: string, message: unknown, transfer: MessagePort[]): void {
    setImmediate(() => this.preloadListeners.get(channel)?.({ ports: transfer.map(rendererPort) }, message));
  }
}

function wire() {
  const sessions = new FakeSessions();
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const window = new Window(1);
  trusted.add(window);
  const displays = new DisplayPorts<MessagePort>(sessions, channelPair);
  const handlers = new Map<string, Handler>();
  const ipcMain: IpcMainLike<SenderEvent> = {
    handle: (channel, listener) => void handlers.set(channel, listener),
    on: (channel, listener) => handlers.set(channel, listener),
  };
  registerIpcHandlers(ipcMain, {
    sessions,
    isTrustedSender: (event) => trusted.isTrustedSender(event),
    pickFile: async () => null,
    attachDisplay: (_event, id, key) => displays.attach(window, id, key),
    log: () => {},
  });
  const ipcRenderer: PreloadIpc = {
    invoke: async (channel, ...args) => handlers.get(channel)?.(eventFrom(window), ...args),
    send: (channel, ...args) => void handlers.get(channel)?.(eventFrom(window), ...args),
    on: (channel, listener) => window.preloadListeners.set(channel, listener),
  };
  const logs: string[] = [];
  const api = createBelljarApi(ipcRenderer, (m) => logs.push(m));
  return { sessions, window, displays, api, logs };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(condition(), `timed out waiting for ${what}`);
}

test('frames flow main → renderer over the port; each listener return acknowledges one frame', async () => {
  const { sessions, window, displays, api } = wire();
  const received: number[] = [];
  const detach = api.attachDisplay('sb-1', (frame) => received.push(new Uint8Array(frame)[0] ?? -1));
  await until(() => sessions.sinks.has('sb-1'), 'the attach');
  assert.equal(displays.count(window.id), 1);
  const sink = sessions.sinks.get('sb-1');
  const delivered: number[] = [];
  for (let i = 1; i <= 3; i++) sink?.send(new Uint8Array([i, 0, 0, 0]).buffer, () => delivered.push(i));
  await until(() => delivered.length === 3, 'three acks');
  assert.deepEqual(received, [1, 2, 3]);
  assert.deepEqual(delivered, [1, 2, 3], 'acks complete frames oldest first');

  // Detaching in the renderer closes its port; main sees the close and detaches from the service.
  detach();
  await until(() => sessions.detached.includes('sb-1'), 'the detach');
  assert.equal(displays.count(window.id), 0);
});

test('a listener that throws still acknowledges its frame (the display never stalls)', async () => {
  const { sessions, api, logs } = wire();
  const detach = api.attachDisplay('sb-2', () => {
    throw new Error('draw failed');
  });
  await until(() => sessions.sinks.has('sb-2'), 'the attach');
  let delivered = 0;
  sessions.sinks.get('sb-2')?.send(new ArrayBuffer(8), () => delivered++);
  await until(() => delivered === 1, 'the ack');
  assert.ok(logs.some((m) => m.includes('draw failed')));
  detach();
  await until(() => sessions.detached.includes('sb-2'), 'the detach');
});

test('the same sandbox attached twice gets two independent ports', async () => {
  const { sessions, api, displays, window } = wire();
  const a: number[] = [];
  const b: number[] = [];
  const detachA = api.attachDisplay('sb-1', () => a.push(1));
  await until(() => displays.count(window.id) === 1, 'first attach');
  const firstSink = sessions.sinks.get('sb-1');
  const detachB = api.attachDisplay('sb-1', () => b.push(1));
  await until(() => displays.count(window.id) === 2, 'second attach');
  const secondSink = sessions.sinks.get('sb-1');
  assert.notEqual(firstSink, secondSink);
  firstSink?.send(new ArrayBuffer(4), () => {});
  secondSink?.send(new ArrayBuffer(4), () => {});
  secondSink?.send(new ArrayBuffer(4), () => {});
  await until(() => a.length === 1 && b.length === 2, 'frames on both');
  detachA();
  detachB();
  await until(() => displays.count(window.id) === 0, 'both detached');
});

test('attaching an unknown sandbox fails cleanly: no port, nothing left open', async () => {
  const { api, displays, window, logs } = wire();
  api.attachDisplay('sb-404', () => assert.fail('no frames'));
  await until(() => logs.some((m) => m.includes('no sandbox "sb-404"')), 'the refusal');
  assert.equal(displays.count(window.id), 0);
});

test('a window that goes away detaches all its displays', async () => {
  const { sessions, api, displays, window } = wire();
  api.attachDisplay('sb-1', () => {});
  api.attachDisplay('sb-2', () => {});
  await until(() => displays.count(window.id) === 2, 'two attaches');
  window.destroy();
  assert.deepEqual(sessions.detached.sort(), ['sb-1', 'sb-2']);
  assert.equal(displays.count(window.id), 0);
});

test('main ignores anything but an ack on the port, and extra acks', async () => {
  const sessions = new FakeSessions();
  const channel = new MessageChannel();
  const displays = new DisplayPorts<MessagePort>(sessions, () => ({
    port1: mainPort(channel.port1),
    port2: channel.port2,
  }));
  const window = new Window(5);
  window.postMessage = () => {};
  displays.attach(window, 'sb-1', 1);
  let delivered = 0;
  sessions.sinks.get('sb-1')?.send(new ArrayBuffer(4), () => delivered++);
  for (const junk of ['ACK', { ack: true }, 1, null, new ArrayBuffer(2)]) channel.port2.postMessage(junk);
  channel.port2.postMessage(FRAME_ACK);
  channel.port2.postMessage(FRAME_ACK);
  channel.port2.postMessage(FRAME_ACK);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(delivered, 1);
  window.destroy();
  channel.port2.close();
});

test(`at most ${MAX_DISPLAYS_PER_WINDOW} displays per window`, () => {
  const sessions = new FakeSessions();
  const channels: MessageChannel[] = [];
  const displays = new DisplayPorts<MessagePort>(sessions, () => {
    const channel = new MessageChannel();
    channels.push(channel);
    return { port1: mainPort(channel.port1), port2: channel.port2 };
  });
  const window = new Window(6);
  window.postMessage = () => {};
  for (let i = 0; i < MAX_DISPLAYS_PER_WINDOW; i++) displays.attach(window, 'sb-1', i);
  assert.throws(() => displays.attach(window, 'sb-1', 999), /too many displays/);
  window.destroy();
  for (const channel of channels) channel.port2.close();
});

test('IPC_CHANNELS.displayPort carries the sandbox id and the preload key', async () => {
  const sessions = new FakeSessions();
  const displays = new DisplayPorts<MessagePort>(sessions, () => {
    const channel = new MessageChannel();
    return { port1: mainPort(channel.port1), port2: channel.port2 };
  });
  const posts: { channel: string; message: unknown; ports: number }[] = [];
  const window = new Window(7);
  window.postMessage = (channel, message, transfer) => {
    posts.push({ channel, message, ports: transfer.length });
    for (const port of transfer) port.close();
  };
  displays.attach(window, 'sb-2', 42);
  assert.deepEqual(posts, [{ channel: IPC_CHANNELS.displayPort, message: { id: 'sb-2', key: 42 }, ports: 1 }]);
  window.destroy();
});
