import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closeSandboxesWithWindow, installQuitGate, quitOnSignals } from '../../electron/app/lifecycle.js';
import { FakeSessions, Listeners } from './electron-fakes.js';

class FakeApp extends Listeners {
  readonly actions: string[] = [];
  quit(): void {
    this.actions.push('quit');
    this.fireQuit('before-quit');
  }
  exit(code = 0): void {
    this.actions.push(`exit ${code}`);
  }
  /** Fires a quit event; returns whether a handler held the quit. */
  fireQuit(event: 'before-quit' | 'will-quit'): boolean {
    let prevented = false;
    this.emit(event, { preventDefault: () => (prevented = true) });
    if (!prevented) this.actions.push(`${event} proceeds`);
    return prevented;
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('quitting waits for closeAll, then quits for real', async () => {
  const app = new FakeApp();
  const sessions = new FakeSessions();
  let finish: () => void = () => {};
  sessions.closeAllImpl = () => new Promise<void>((resolve) => (finish = resolve));
  const gate = installQuitGate(app, sessions, () => {});
  assert.equal(gate.quitting, false);
  assert.equal(app.fireQuit('before-quit'), true, 'the first quit is held');
  assert.equal(gate.quitting, true);
  assert.equal(app.fireQuit('before-quit'), true, 'a second quit while closing is held too');
  assert.equal(app.fireQuit('will-quit'), true);
  await tick();
  assert.deepEqual(sessions.calls, ['closeAll'], 'closeAll once');
  assert.deepEqual(app.actions, []);
  finish();
  await tick();
  assert.deepEqual(app.actions, ['quit', 'before-quit proceeds']);
  assert.equal(app.fireQuit('will-quit'), false, 'later quit events pass');
});

test('will-quit alone (before-quit skipped) is gated the same way', async () => {
  const app = new FakeApp();
  const sessions = new FakeSessions();
  installQuitGate(app, sessions, () => {});
  assert.equal(app.fireQuit('will-quit'), true);
  await tick();
  assert.deepEqual(sessions.calls, ['closeAll']);
  assert.deepEqual(app.actions, ['quit', 'before-quit proceeds']);
});

test('a closeAll that fails or hangs never blocks the exit', async () => {
  const failing = new FakeApp();
  const failingSessions = new FakeSessions();
  failingSessions.closeAllImpl = async () => {
    throw new Error('VMM would not die');
  };
  const logs: string[] = [];
  installQuitGate(failing, failingSessions, (m) => logs.push(m));
  failing.fireQuit('before-quit');
  await tick();
  assert.deepEqual(failing.actions, ['exit 1']);
  assert.match(logs[0] ?? '', /VMM would not die/);

  const hanging = new FakeApp();
  const hangingSessions = new FakeSessions();
  hangingSessions.closeAllImpl = () => new Promise<void>(() => {});
  installQuitGate(hanging, hangingSessions, (m) => logs.push(m), 20);
  hanging.fireQuit('before-quit');
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(hanging.actions, ['exit 1']);
  assert.match(logs[1] ?? '', /still closing after 20 ms/);
});

test('closing the window closes all its sandboxes', async () => {
  const window = new Listeners();
  const sessions = new FakeSessions();
  closeSandboxesWithWindow(window, sessions, () => {});
  assert.deepEqual(sessions.calls, []);
  window.emit('closed');
  assert.deepEqual(sessions.calls, ['closeAll']);
});

test('SIGINT and SIGTERM quit through the same gate', () => {
  const signals = new Listeners();
  const quits: string[] = [];
  quitOnSignals(signals, { quit: () => quits.push('quit') });
  signals.emit('SIGINT');
  signals.emit('SIGTERM');
  assert.deepEqual(quits, ['quit', 'quit']);
});
