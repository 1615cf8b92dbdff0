import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPC_CHANNELS, type BelljarApi, type SandboxSummary } from '../../electron/contract/ipc.js';
import {
  createBelljarApi,
  type PreloadIpc,
  type PreloadIpcEvent,
  type PreloadPort,
} from '../../electron/app/preload-api.js';
import { summary } from './electron-fakes.js';

type Listener = (event: PreloadIpcEvent, ...args: unknown[]) => void;

class FakeIpcRenderer implements PreloadIpc {
  readonly invoked: { channel: string; args: unknown[] }[] = [];
  readonly sent: { channel: string; args: unknown[] }[] = [];
  readonly listeners = new Map<string, Listener>();
  answers = new Map<string, () => Promise<unknown>>();
  invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    this.invoked.push({ channel, args });
    return this.answers.get(channel)?.() ?? Promise.resolve({ ok: true, value: null });
  }
  send(channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args });
  }
  on(channel: string, listener: Listener): this {
    this.listeners.set(channel, listener);
    return this;
  }
  push(channel: string, event: PreloadIpcEvent, ...args: unknown[]): void {
    this.listeners.get(channel)?.(event, ...args);
  }
}

class FakePort implements PreloadPort {
  readonly posted: unknown[] = [];
  closed = false;
  started = false;
  listener: ((event: { data: unknown }) => void) | null = null;
  postMessage(message: unknown): void {
    this.posted.push(message);
  }
  addEventListener(_type: 'message', listener: (event: { data: unknown }) => void): void {
    this.listener = listener;
  }
  start(): void {
    this.started = true;
  }
  close(): void {
    this.closed = true;
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('the API object has exactly the BelljarApi methods', () => {
  const api = createBelljarApi(new FakeIpcRenderer());
  const expected: (keyof BelljarApi)[] = [
    'listSandboxes',
    'open',
    'pickAndOpenFile',
    'close',
    'sendInput',
    'resize',
    'onSandboxes',
    'attachDisplay',
  ];
  assert.deepEqual(Object.keys(api).sort(), [...expected].sort());
  for (const key of expected) assert.equal(typeof api[key], 'function');
});

test('calls go to their channels; envelopes unwrap to values or clean errors', async () => {
  const ipc = new FakeIpcRenderer();
  const api = createBelljarApi(ipc);
  ipc.answers.set(IPC_CHANNELS.listSandboxes, async () => ({ ok: true, value: [summary('sb-1')] }));
  ipc.answers.set(IPC_CHANNELS.open, async () => ({ ok: false, error: 'This file type is not supported.' }));
  ipc.answers.set(IPC_CHANNELS.close, async () => 'garbage');
  assert.deepEqual(await api.listSandboxes(), [summary('sb-1')]);
  await assert.rejects(api.open({ kind: 'file', path: '/x.exe' }), { message: 'This file type is not supported.' });
  await assert.rejects(api.close('sb-1'), /unexpected answer/);
  assert.equal(await api.pickAndOpenFile(), null);
  api.sendInput('sb-1', [{ type: 'wheel', dx: 0, dy: 1 }]);
  api.resize('sb-1', 800, 600);
  assert.deepEqual(
    ipc.invoked.map((c) => [c.channel, c.args]),
    [
      [IPC_CHANNELS.listSandboxes, []],
      [IPC_CHANNELS.open, [{ kind: 'file', path: '/x.exe' }]],
      [IPC_CHANNELS.close, ['sb-1']],
      [IPC_CHANNELS.pickAndOpenFile, []],
    ],
  );
  assert.deepEqual(ipc.sent, [
    { channel: IPC_CHANNELS.input, args: ['sb-1', [{ type: 'wheel', dx: 0, dy: 1 }]] },
    { channel: IPC_CHANNELS.resize, args: ['sb-1', 800, 600] },
  ]);
});

test('onSandboxes: the current list once at once, then every pushed list; unsubscribe stops it', async () => {
  const ipc = new FakeIpcRenderer();
  ipc.answers.set(IPC_CHANNELS.listSandboxes, async () => ({ ok: true, value: [summary('sb-1')] }));
  const api = createBelljarApi(ipc);
  const seen: (readonly SandboxSummary[])[] = [];
  const unsubscribe = api.onSandboxes((list) => seen.push(list));
  await tick();
  assert.deepEqual(seen, [[summary('sb-1')]]);
  ipc.push(IPC_CHANNELS.sandboxes, { ports: [] }, [summary('sb-1'), summary('sb-2')]);
  assert.equal(seen.length, 2);
  ipc.push(IPC_CHANNELS.sandboxes, { ports: [] }, 'not a list');
  assert.equal(seen.length, 2);
  unsubscribe();
  ipc.push(IPC_CHANNELS.sandboxes, { ports: [] }, []);
  assert.equal(seen.length, 2);
});

test('onSandboxes: a push that overtakes the initial fetch wins (no stale list)', async () => {
  const ipc = new FakeIpcRenderer();
  let answer: (value: unknown) => void = () => {};
  ipc.answers.set(IPC_CHANNELS.listSandboxes, () => new Promise((resolve) => (answer = resolve)));
  const api = createBelljarApi(ipc);
  const seen: (readonly SandboxSummary[])[] = [];
  api.onSandboxes((list) => seen.push(list));
  ipc.push(IPC_CHANNELS.sandboxes, { ports: [] }, [summary('sb-new')]);
  answer({ ok: true, value: [summary('sb-old')] });
  await tick();
  assert.deepEqual(seen, [[summary('sb-new')]]);
  // A later subscriber gets the newest pushed list at once, without a round trip.
  const later: (readonly SandboxSummary[])[] = [];
  const invokes = ipc.invoked.length;
  api.onSandboxes((list) => later.push(list));
  await tick();
  assert.deepEqual(later, [[summary('sb-new')]]);
  assert.equal(ipc.invoked.length, invokes);
});

test('attachDisplay: sends a fresh key, takes the matching port, delivers ArrayBuffers and acks', async () => {
  const ipc = new FakeIpcRenderer();
  const api = createBelljarApi(ipc);
  const frames: ArrayBuffer[] = [];
  const detach = api.attachDisplay('sb-1', (frame) => frames.push(frame));
  api.attachDisplay('sb-2', () => {});
  const [first, second] = ipc.invoked;
  assert.equal(first?.channel, IPC_CHANNELS.attachDisplay);
  assert.equal(first?.args[0], 'sb-1');
  assert.notEqual(first?.args[1], second?.args[1], 'keys differ');
  const port = new FakePort();
  ipc.push(IPC_CHANNELS.displayPort, { ports: [port] }, { id: 'sb-1', key: first?.args[1] });
  assert.equal(port.started, true);
  const frame = new ArrayBuffer(36);
  port.listener?.({ data: frame });
  port.listener?.({ data: 'not a frame' });
  assert.deepEqual(frames, [frame]);
  assert.deepEqual(port.posted, ['ack']);
  detach();
  assert.equal(port.closed, true);
  port.listener?.({ data: new ArrayBuffer(36) });
  assert.equal(frames.length, 1, 'nothing after detach');
  assert.deepEqual(port.posted, ['ack']);
});

test('ports that match no pending attach, the wrong sandbox, or a detached one are closed', async () => {
  const ipc = new FakeIpcRenderer();
  const api = createBelljarApi(ipc);
  const detach = api.attachDisplay('sb-1', () => assert.fail('no frames'));
  const key = ipc.invoked[0]?.args[1];
  const cases: unknown[] = [{ id: 'sb-1', key: 9999 }, { id: 'sb-2', key }, 'junk', { id: 'sb-1', key: -1 }];
  for (const data of cases) {
    const port = new FakePort();
    ipc.push(IPC_CHANNELS.displayPort, { ports: [port] }, data);
    assert.equal(port.closed, true, JSON.stringify(data));
  }
  detach();
  const late = new FakePort();
  ipc.push(IPC_CHANNELS.displayPort, { ports: [late] }, { id: 'sb-1', key });
  assert.equal(late.closed, true, 'a port arriving after detach');
  ipc.push(IPC_CHANNELS.displayPort, { ports: [] }, { id: 'sb-1', key });
});

test('a second port for the same attach is closed', () => {
  const ipc = new FakeIpcRenderer();
  const api = createBelljarApi(ipc);
  api.attachDisplay('sb-1', () => {});
  const key = ipc.invoked[0]?.args[1];
  const first = new FakePort();
  const second = new FakePort();
  ipc.push(IPC_CHANNELS.displayPort, { ports: [first] }, { id: 'sb-1', key });
  ipc.push(IPC_CHANNELS.displayPort, { ports: [second] }, { id: 'sb-1', key });
  assert.equal(first.closed, false);
  assert.equal(second.closed, true);
});

test('a refused attach is logged and leaves nothing pending', async () => {
  const ipc = new FakeIpcRenderer();
  ipc.answers.set(IPC_CHANNELS.attachDisplay, async () => ({ ok: false, error: 'no sandbox "sb-9"' }));
  const logs: string[] = [];
  const api = createBelljarApi(ipc, (m) => logs.push(m));
  api.attachDisplay('sb-9', () => {});
  await tick();
  assert.ok(logs.some((m) => m.includes('no sandbox "sb-9"')));
  const port = new FakePort();
  ipc.push(IPC_CHANNELS.displayPort, { ports: [port] }, { id: 'sb-9', key: ipc.invoked[0]?.args[1] });
  assert.equal(port.closed, true);
});
