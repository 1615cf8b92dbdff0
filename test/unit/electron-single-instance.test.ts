import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLaunchItems } from '../../electron/app/launch-items.js';
import { openLaunchItems } from '../../electron/app/launch-open.js';
import { claimSingleInstance, readLaunchData, type SingleInstanceApp } from '../../electron/app/single-instance.js';
import { FakeSessions } from './electron-fakes.js';

class FakeApp implements SingleInstanceApp {
  lockData: Record<string, unknown> | undefined;
  secondInstance: ((event: unknown, argv: string[], cwd: string, data: unknown) => void) | null = null;
  constructor(private readonly locked: boolean) {}
  requestSingleInstanceLock(additionalData?: Record<string, unknown>): boolean {
    this.lockData = additionalData;
    return !this.locked;
  }
  on(_event: 'second-instance', listener: (event: unknown, argv: string[], cwd: string, data: unknown) => void) {
    this.secondInstance = listener;
    return this;
  }
}

test('the first instance takes the lock, passing its own argv and cwd as additionalData', () => {
  const app = new FakeApp(false);
  const launches: unknown[] = [];
  assert.equal(
    claimSingleInstance(app, { argv: ['belljar', 'a.pdf'], cwd: '/home/ann' }, (l) => launches.push(l)),
    true,
  );
  assert.deepEqual(app.lockData, { argv: ['belljar', 'a.pdf'], cwd: '/home/ann' });
  assert.ok(app.secondInstance);
});

test('a second launch hands its items to the running app, which opens a sandbox for each', async () => {
  const app = new FakeApp(false);
  const sessions = new FakeSessions();
  const outcomes: Promise<unknown>[] = [];
  claimSingleInstance(app, { argv: ['belljar'], cwd: '/' }, (launch) => {
    const items = parseLaunchItems(launch.argv, { cwd: launch.cwd, defaultApp: false });
    outcomes.push(openLaunchItems(items, (r) => sessions.open(r)));
  });
  // Electron's argv may be reordered and carry extra switches; additionalData wins.
  app.secondInstance?.({}, ['belljar', '--original-process-start-time=1', 'x'], '/wrong', {
    argv: ['/usr/bin/belljar', 'open', 'Rechnung.pdf', 'https://example.com/'],
    cwd: '/home/bob/Mail',
  });
  await Promise.all(outcomes);
  assert.deepEqual(sessions.opened, [
    { kind: 'file', path: '/home/bob/Mail/Rechnung.pdf' },
    { kind: 'url', url: 'https://example.com/' },
  ]);
});

test('a second instance does not get the lock and must quit', () => {
  const app = new FakeApp(true);
  assert.equal(
    claimSingleInstance(app, { argv: ['belljar'], cwd: '/' }, () => {}),
    false,
  );
  assert.equal(app.secondInstance, null);
});

test('malformed additionalData falls back to the argv and cwd Electron reports', () => {
  const fallback = { argv: ['belljar', 'a.pdf'], cwd: '/tmp' };
  for (const bad of [
    null,
    'text',
    { argv: 'a.pdf', cwd: '/x' },
    { argv: [1, 2], cwd: '/x' },
    { argv: ['a'], cwd: 5 },
    { argv: new Array(2000).fill('a'), cwd: '/x' },
  ]) {
    assert.deepEqual(readLaunchData(bad, fallback.argv, fallback.cwd), fallback, JSON.stringify(bad)?.slice(0, 40));
  }
  assert.deepEqual(readLaunchData({ argv: ['b', 'c'], cwd: '/y', extra: 1 }, fallback.argv, fallback.cwd), {
    argv: ['b', 'c'],
    cwd: '/y',
  });
});

test('openLaunchItems reports refused arguments and refused opens in plain words', async () => {
  const sessions = new FakeSessions();
  const items = parseLaunchItems(['belljar', 'ok.pdf', 'javascript:x', 'refuse-me.pdf'], {
    cwd: '/d',
    defaultApp: false,
  });
  const outcome = await openLaunchItems(items, (r) => sessions.open(r));
  assert.equal(outcome.opened.length, 1);
  assert.equal(outcome.problems.length, 2);
  assert.match(outcome.problems[0] ?? '', /^javascript:x: /);
  assert.equal(outcome.problems[1], '/d/refuse-me.pdf: cannot open /d/refuse-me.pdf');
});
