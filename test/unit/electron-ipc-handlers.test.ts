import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IPC_CHANNELS, type SandboxSummary } from '../../electron/contract/ipc.js';
import { broadcastSandboxes, registerIpcHandlers, type IpcMainLike } from '../../electron/app/ipc-handlers.js';
import type { IpcResult } from '../../electron/app/ipc-wire.js';
import { TrustedWindows, type SenderEvent } from '../../electron/app/sender.js';
import { eventFrom, FakeContents, FakeSessions, frame, RENDERER_INDEX, summary } from './electron-fakes.js';

type Listener = (event: SenderEvent, ...args: unknown[]) => unknown;

class FakeIpcMain implements IpcMainLike<SenderEvent> {
  readonly handlers = new Map<string, Listener>();
  readonly listeners = new Map<string, Listener>();
  handle(channel: string, listener: Listener): void {
    assert.ok(!this.handlers.has(channel), `one handler per channel: ${channel}`);
    this.handlers.set(channel, listener);
  }
  on(channel: string, listener: Listener): this {
    this.listeners.set(channel, listener);
    return this;
  }
  async invoke(event: SenderEvent, channel: string, ...args: unknown[]): Promise<IpcResult<unknown>> {
    const handler = this.handlers.get(channel);
    assert.ok(handler, `handler for ${channel}`);
    return (await handler(event, ...args)) as IpcResult<unknown>;
  }
  send(event: SenderEvent, channel: string, ...args: unknown[]): void {
    const listener = this.listeners.get(channel);
    assert.ok(listener, `listener for ${channel}`);
    listener(event, ...args);
  }
}

function setup(pick: string | null = '/home/ann/picked.pdf') {
  const ipc = new FakeIpcMain();
  const sessions = new FakeSessions();
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const window = new FakeContents(1);
  trusted.add(window);
  const logs: string[] = [];
  const attached: { id: string; key: number }[] = [];
  registerIpcHandlers(ipc, {
    sessions,
    isTrustedSender: (event) => trusted.isTrustedSender(event),
    pickFile: async () => pick,
    attachDisplay: (_event, id, key) => {
      sessions.attachDisplay(id, { send: () => {} });
      attached.push({ id, key });
    },
    log: (m) => logs.push(m),
  });
  return { ipc, sessions, trusted, window, ok: eventFrom(window), logs, attached };
}

test('every channel of the preload API has exactly one main-process handler', () => {
  const { ipc } = setup();
  assert.deepEqual(
    [...ipc.handlers.keys()].sort(),
    [
      IPC_CHANNELS.attachDisplay,
      IPC_CHANNELS.close,
      IPC_CHANNELS.listSandboxes,
      IPC_CHANNELS.open,
      IPC_CHANNELS.pickAndOpenFile,
    ].sort(),
  );
  assert.deepEqual([...ipc.listeners.keys()].sort(), [IPC_CHANNELS.input, IPC_CHANNELS.resize].sort());
});

test('valid calls from our window reach the session service and answer in an envelope', async () => {
  const { ipc, sessions, ok, attached } = setup();
  assert.deepEqual(await ipc.invoke(ok, IPC_CHANNELS.listSandboxes), { ok: true, value: sessions.list() });
  const opened = await ipc.invoke(ok, IPC_CHANNELS.open, { kind: 'url', url: 'https://example.com/' });
  assert.equal(opened.ok, true);
  assert.deepEqual(sessions.opened, [{ kind: 'url', url: 'https://example.com/' }]);
  assert.deepEqual(await ipc.invoke(ok, IPC_CHANNELS.close, 'sb-1'), { ok: true, value: undefined });
  assert.deepEqual(await ipc.invoke(ok, IPC_CHANNELS.attachDisplay, 'sb-2', 7), { ok: true, value: null });
  assert.deepEqual(attached, [{ id: 'sb-2', key: 7 }]);
  ipc.send(ok, IPC_CHANNELS.input, 'sb-2', [{ type: 'key', code: 'KeyA', down: true }]);
  ipc.send(ok, IPC_CHANNELS.resize, 'sb-2', 1024, 99999);
  assert.deepEqual(sessions.inputs, [{ id: 'sb-2', events: [{ type: 'key', code: 'KeyA', down: true }] }]);
  assert.deepEqual(sessions.resizes, [{ id: 'sb-2', width: 1024, height: 3840 }], 'clamped by the contract');
});

test('pickAndOpenFile opens the chosen file, and answers null when the dialog is cancelled', async () => {
  const picked = setup('/home/ann/picked.pdf');
  const answer = await picked.ipc.invoke(picked.ok, IPC_CHANNELS.pickAndOpenFile);
  assert.equal(answer.ok, true);
  assert.deepEqual(picked.sessions.opened, [{ kind: 'file', path: '/home/ann/picked.pdf' }]);
  const cancelled = setup(null);
  assert.deepEqual(await cancelled.ipc.invoke(cancelled.ok, IPC_CHANNELS.pickAndOpenFile), { ok: true, value: null });
  assert.deepEqual(cancelled.sessions.opened, []);
});

test('messages from an unknown frame or URL are refused before any work', async () => {
  const { ipc, sessions, window, logs } = setup();
  const strangers: SenderEvent[] = [
    eventFrom(new FakeContents(2)),
    eventFrom(window, frame('https://evil.example/')),
    eventFrom(window, frame(undefined, window.mainFrame, 5)),
    eventFrom(window, null),
  ];
  for (const event of strangers) {
    for (const channel of Object.keys(Object.fromEntries(ipc.handlers))) {
      assert.deepEqual(await ipc.invoke(event, channel, 'sb-1', 1), { ok: false, error: 'refused: unknown sender' });
    }
    ipc.send(event, IPC_CHANNELS.input, 'sb-1', [{ type: 'key', code: 'KeyA', down: true }]);
    ipc.send(event, IPC_CHANNELS.resize, 'sb-1', 800, 600);
  }
  assert.deepEqual(sessions.calls, []);
  assert.deepEqual(sessions.inputs, []);
  assert.deepEqual(sessions.resizes, []);
  assert.ok(logs.some((line) => line.includes('https://evil.example/')));
});

test('malformed arguments are refused with the contract message; nothing reaches the service', async () => {
  const { ipc, sessions, ok } = setup();
  const bad: [string, unknown[], RegExp][] = [
    [IPC_CHANNELS.open, [{ kind: 'exe', path: '/bin/sh' }], /kind must be/],
    [IPC_CHANNELS.open, [{ kind: 'file', path: '/x', extra: 1 }], /unexpected field/],
    [IPC_CHANNELS.open, [{ kind: 'file', path: 'a\0b' }], /without NUL/],
    [IPC_CHANNELS.open, ['https://example.com'], /must be an object/],
    [IPC_CHANNELS.open, [], /expected 1 arguments/],
    [IPC_CHANNELS.open, [{ kind: 'url', url: 'https://a/' }, 'extra'], /expected 1 arguments/],
    [IPC_CHANNELS.close, ['../../etc'], /not a sandbox id/],
    [IPC_CHANNELS.close, [42], /not a sandbox id/],
    [IPC_CHANNELS.attachDisplay, ['sb-1', -1], /key must be/],
    [IPC_CHANNELS.attachDisplay, ['sb-1', 1.5], /key must be/],
    [IPC_CHANNELS.attachDisplay, ['SB 1', 1], /not a sandbox id/],
    [IPC_CHANNELS.listSandboxes, ['x'], /expected 0 arguments/],
  ];
  for (const [channel, args, message] of bad) {
    const answer = await ipc.invoke(ok, channel, ...args);
    assert.equal(answer.ok, false, `${channel} ${JSON.stringify(args)}`);
    if (!answer.ok) assert.match(answer.error, message);
  }
  assert.deepEqual(sessions.opened, []);
  assert.ok(!sessions.calls.some((c) => c.startsWith('close')));
  ipc.send(ok, IPC_CHANNELS.input, 'sb-1', [{ type: 'key', code: 'Key A', down: true }]);
  ipc.send(ok, IPC_CHANNELS.input, 'sb-1', new Array(300).fill({ type: 'wheel', dx: 0, dy: 1 }));
  ipc.send(ok, IPC_CHANNELS.input, 'sb-1', [{ type: 'pointer-move', x: Number.NaN, y: 0 }]);
  ipc.send(ok, IPC_CHANNELS.resize, 'sb-1', 800.5, 600);
  ipc.send(ok, IPC_CHANNELS.resize, 'sb-1', '800', 600);
  assert.deepEqual(sessions.inputs, []);
  assert.deepEqual(sessions.resizes, []);
});

test("the service's refusals reach the renderer in plain words; internal errors do not leak", async () => {
  const { ipc, sessions, ok, logs } = setup();
  assert.deepEqual(await ipc.invoke(ok, IPC_CHANNELS.open, { kind: 'file', path: '/tmp/refuse.pdf' }), {
    ok: false,
    error: 'cannot open /tmp/refuse.pdf',
  });
  assert.deepEqual(await ipc.invoke(ok, IPC_CHANNELS.close, 'sb-404'), { ok: false, error: 'no sandbox "sb-404"' });
  sessions.internalFailure = new Error('ENOENT: /secret/path/vmlinuz');
  const answer = await ipc.invoke(ok, IPC_CHANNELS.open, { kind: 'file', path: '/tmp/a.pdf' });
  assert.equal(answer.ok, false);
  if (!answer.ok) assert.doesNotMatch(answer.error, /secret|ENOENT/);
  assert.ok(
    logs.some((line) => line.includes('/secret/path/vmlinuz')),
    'logged in main instead',
  );
});

test('input for a sandbox that just closed is dropped quietly', () => {
  const { ipc, ok, logs } = setup();
  ipc.send(ok, IPC_CHANNELS.input, 'sb-99', [{ type: 'key', code: 'KeyA', down: true }]);
  assert.deepEqual(logs, []);
});

test('every change of the sandbox list is pushed, whole, to every trusted window', () => {
  const sessions = new FakeSessions();
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const a = new FakeContents(1);
  const b = new FakeContents(2);
  trusted.add(a);
  trusted.add(b);
  const unsubscribe = broadcastSandboxes(sessions, () => trusted.list());
  const list: SandboxSummary[] = [summary('sb-1'), summary('sb-2', { state: 'failed', error: 'VMM crashed' })];
  sessions.emitChange(list);
  b.destroy();
  sessions.emitChange([]);
  assert.deepEqual(a.sent, [
    { channel: IPC_CHANNELS.sandboxes, args: [list] },
    { channel: IPC_CHANNELS.sandboxes, args: [[]] },
  ]);
  assert.deepEqual(b.sent, [{ channel: IPC_CHANNELS.sandboxes, args: [list] }]);
  unsubscribe();
  assert.equal(sessions.changeListeners.size, 0);
});
