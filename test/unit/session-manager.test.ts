/**
 * SessionManager with the real VMM process script (dist/vmm/sandbox/sandbox-process.js)
 * and a fake guest image whose "kernel" is a small text file: the VMM process
 * refuses it while loading the kernel, before it touches KVM, so every machine
 * sees the same quick failure. TMPDIR points at a private directory for the
 * whole file, so temp directories the manager creates (or leaks) can be
 * counted exactly.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type { SandboxState, SandboxSummary } from '../../electron/contract/ipc.js';
import { SessionManager, type SessionManagerOptions } from '../../electron/sessions/session-manager.js';
import { OpenRefusedError, UnknownSandboxError } from '../../electron/sessions/session-service.js';

const WAIT_MS = 10_000;

let root = '';
let privateTmp = '';
let fixtures = '';
let savedTmpdir: string | undefined;
let kernel = '';
const managers: SessionManager[] = [];

before(() => {
  root = mkdtempSync(join(tmpdir(), 'belljar-sm-test-'));
  privateTmp = join(root, 'tmp');
  fixtures = join(root, 'fixtures');
  mkdirSync(privateTmp);
  mkdirSync(fixtures);
  savedTmpdir = process.env['TMPDIR'];
  process.env['TMPDIR'] = privateTmp;
  assert.equal(tmpdir(), privateTmp, 'os.tmpdir() follows TMPDIR');
  kernel = join(fixtures, 'vmlinuz');
  writeFileSync(kernel, 'not a kernel'); // 12 bytes
  writeFileSync(join(fixtures, 'initrd.img'), 'not an initrd');
  writeFileSync(join(fixtures, 'rootfs.squashfs'), 'not a rootfs');
  writeFileSync(join(fixtures, 'hello.txt'), 'hello, sandbox\n');
  writeFileSync(join(fixtures, 'empty.txt'), '');
  writeFileSync(join(fixtures, 'blob.bin'), Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 0, 0, 7, 8, 0, 0x80]));
  mkdirSync(join(fixtures, 'folder.txt'));
});

afterEach(async () => {
  // Whatever a test left open is closed, so no VMM process outlives it.
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
});

after(() => {
  if (savedTmpdir === undefined) delete process.env['TMPDIR'];
  else process.env['TMPDIR'] = savedTmpdir;
  rmSync(root, { recursive: true, force: true });
});

function fakeImage() {
  return {
    kernel,
    initrd: join(fixtures, 'initrd.img'),
    rootfs: join(fixtures, 'rootfs.squashfs'),
    cmdline: 'console=ttyS0',
  };
}

function manager(options: SessionManagerOptions = {}): SessionManager {
  const m = new SessionManager({ guestImage: fakeImage, memoryMiB: 64, vcpus: 1, ...options });
  managers.push(m);
  return m;
}

function sandboxDirs(): string[] {
  return readdirSync(privateTmp).filter((name) => name.startsWith('belljar-sandbox-'));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pidOf(m: SessionManager, id: string): number {
  const pid = m.session(id)?.pid;
  assert.ok(typeof pid === 'number' && pid > 0, 'the VMM process has a pid');
  return pid;
}

/** Resolves with the summary once the sandbox reaches `state`; rejects after WAIT_MS. */
function waitForState(m: SessionManager, id: string, state: SandboxState): Promise<SandboxSummary> {
  return new Promise((resolve, reject) => {
    const check = (list: readonly SandboxSummary[]) => {
      const found = list.find((s) => s.id === id);
      if (found?.state !== state) return false;
      clearTimeout(timer);
      unsubscribe();
      resolve(found);
      return true;
    };
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`sandbox ${id} did not reach ${state}: ${JSON.stringify(m.list())}`));
    }, WAIT_MS);
    const unsubscribe = m.onChange(check);
    check(m.list());
  });
}

async function assertRefused(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof OpenRefusedError, `expected OpenRefusedError, got ${String(error)}`);
    assert.equal(error.name, 'OpenRefusedError');
    assert.match(error.message, pattern);
    return true;
  });
}

describe('SessionManager refuses items before anything starts', () => {
  test('URLs that are not plain http(s) links, in plain words, with no temp dir left', async () => {
    const m = manager();
    const seen: unknown[] = [];
    m.onChange((list) => seen.push(list));
    await assertRefused(
      m.open({ kind: 'url', url: 'ftp://example.com/file' }),
      /^Only http and https links .*\(not ftp:\)/,
    );
    await assertRefused(m.open({ kind: 'url', url: 'javascript:alert(1)' }), /not javascript:/);
    await assertRefused(m.open({ kind: 'url', url: 'file:///etc/passwd' }), /not file:/);
    await assertRefused(m.open({ kind: 'url', url: 'https://ann:secret@example.com/' }), /user name or password/);
    await assertRefused(m.open({ kind: 'url', url: 'https://ann@example.com/' }), /user name or password/);
    await assertRefused(m.open({ kind: 'url', url: 'not a link at all' }), /not a valid link/);
    await assertRefused(m.open({ kind: 'url', url: 'https://' + 'a'.repeat(9000) + '.com' }), /too long/);
    assert.deepEqual(sandboxDirs(), []);
    assert.deepEqual(m.list(), []);
    assert.deepEqual(seen, [], 'a refusal does not announce a change');
  });

  test('files that are missing, empty, directories or of an unknown type', async () => {
    const m = manager();
    await assertRefused(
      m.open({ kind: 'file', path: join(fixtures, 'nope.pdf') }),
      /^nope\.pdf: The file cannot be read: ENOENT/,
    );
    await assertRefused(m.open({ kind: 'file', path: join(fixtures, 'empty.txt') }), /^empty\.txt: The file is empty/);
    await assertRefused(
      m.open({ kind: 'file', path: join(fixtures, 'folder.txt') }),
      /^folder\.txt: Only regular files/,
    );
    await assertRefused(
      m.open({ kind: 'file', path: join(fixtures, 'blob.bin') }),
      /^blob\.bin: The file's content is not a type/,
    );
    assert.deepEqual(sandboxDirs(), []);
    assert.deepEqual(m.list(), []);
  });

  test('a missing guest image refuses with its own message', async () => {
    const m = manager({ guestImage: () => ({ missing: 'The sandbox image is not built yet.' }) });
    await assertRefused(
      m.open({ kind: 'file', path: join(fixtures, 'hello.txt') }),
      /^The sandbox image is not built yet\.$/,
    );
    assert.deepEqual(sandboxDirs(), []);
    assert.deepEqual(m.list(), []);
  });

  test('calls naming an unknown sandbox throw UnknownSandboxError', async () => {
    const m = manager();
    await assert.rejects(m.close('sbx-000000000000'), UnknownSandboxError);
    assert.throws(() => m.input('sbx-000000000000', [{ type: 'key', code: 'KeyA', down: true }]), UnknownSandboxError);
    assert.throws(() => m.resize('sbx-000000000000', 800, 600), UnknownSandboxError);
    assert.throws(() => m.attachDisplay('sbx-000000000000', { send: () => {} }), /no sandbox "sbx-000000000000"/);
    assert.equal(m.session('sbx-000000000000'), undefined);
  });
});

describe('SessionManager runs a VMM process per sandbox', { timeout: 30_000 }, () => {
  test('a text file: starting summary, then failed on the fake kernel, temp dir and process gone', async () => {
    const m = manager();
    const states: string[] = [];
    m.onChange((list) => {
      const state = list[0]?.state;
      if (state && states.at(-1) !== state) states.push(state);
    });
    const before = Date.now();
    const summary = await m.open({ kind: 'file', path: join(fixtures, 'hello.txt') });
    assert.match(summary.id, /^sbx-[0-9a-f]{12}$/);
    assert.equal(summary.state, 'starting');
    assert.equal(summary.title, 'hello.txt');
    assert.deepEqual(summary.item, { kind: 'file', name: 'hello.txt' });
    assert.equal(summary.network, 'none');
    assert.equal(summary.memoryMiB, 64);
    assert.equal(summary.error, undefined);
    assert.ok(summary.openedAt >= before && summary.openedAt <= Date.now());
    assert.deepEqual(m.list(), [summary]);

    // The item disk lives in a private temp dir under os.tmpdir().
    const session = m.session(summary.id);
    assert.ok(session);
    const itemDisk = session.spec.itemDisk;
    assert.ok(itemDisk);
    const dir = dirname(itemDisk);
    assert.equal(dirname(dir), tmpdir());
    assert.match(dir, /belljar-sandbox-[^/]+$/);
    assert.deepEqual(sandboxDirs(), [dir.slice(privateTmp.length + 1)]);
    assert.equal(session.spec.url, undefined);
    assert.equal(session.spec.network, 'none');
    assert.equal(session.spec.kernel, kernel);
    // Opened by the VMM read-only; written owner-only, in the item disk format.
    assert.equal(statSync(itemDisk).mode & 0o777, 0o600);
    const pid = pidOf(m, summary.id);

    const failed = await waitForState(m, summary.id, 'failed');
    assert.equal(failed.error, 'kernel: file of 12 bytes is too short to be a kernel');
    assert.equal(existsSync(dir), false, 'the temp dir is removed');
    assert.deepEqual(sandboxDirs(), []);
    assert.equal(isAlive(pid), false, 'the VMM process is gone');
    assert.deepEqual(states, ['starting', 'failed']);
    // A failed sandbox stays in the list, with its reason, until closed.
    assert.deepEqual(
      m.list().map((s) => [s.id, s.state]),
      [[summary.id, 'failed']],
    );

    const closedStates: string[] = [];
    m.onChange((list) => closedStates.push(list.map((s) => s.state).join(',')));
    await m.close(summary.id);
    assert.deepEqual(m.list(), []);
    assert.equal(m.session(summary.id), undefined);
    assert.deepEqual(closedStates, ['closed', '']);
    await assert.rejects(m.close(summary.id), UnknownSandboxError);
  });

  test('an https link: title is the host, network is the web, no item disk', async () => {
    const m = manager();
    const summary = await m.open({ kind: 'url', url: 'https://Example.COM:8443/path?q=1#frag' });
    assert.equal(summary.title, 'example.com:8443');
    assert.deepEqual(summary.item, { kind: 'url', url: 'https://example.com:8443/path?q=1#frag' });
    assert.equal(summary.network, 'web');
    assert.equal(summary.state, 'starting');
    const session = m.session(summary.id);
    assert.ok(session);
    assert.equal(session.spec.url, 'https://example.com:8443/path?q=1#frag');
    assert.equal(session.spec.itemDisk, undefined);
    assert.equal(session.spec.network, 'web');
    assert.equal(sandboxDirs().length, 1, 'a link gets a temp dir too (removed at the end)');
    const pid = pidOf(m, summary.id);
    const failed = await waitForState(m, summary.id, 'failed');
    assert.match(failed.error ?? '', /^kernel: /);
    assert.equal(isAlive(pid), false);
    assert.deepEqual(sandboxDirs(), []);
  });

  test("the guest's command line is the image's, plus belljar.debug only when asked for", async () => {
    const plain = manager();
    const a = await plain.open({ kind: 'url', url: 'https://example.com/' });
    assert.equal(plain.session(a.id)?.spec.cmdline, 'console=ttyS0');
    const debugging = manager({ guestDebug: 'viewer' });
    const b = await debugging.open({ kind: 'url', url: 'https://example.com/' });
    assert.equal(debugging.session(b.id)?.spec.cmdline, 'console=ttyS0 belljar.debug=viewer loglevel=5');
    await plain.closeAll();
    await debugging.closeAll();
    assert.deepEqual(sandboxDirs(), []);
  });

  test('input, resize and attachDisplay on a live or failed sandbox do not throw', async () => {
    const m = manager();
    const { id } = await m.open({ kind: 'file', path: join(fixtures, 'hello.txt') });
    pidOf(m, id);
    m.input(id, [{ type: 'pointer-move', x: 1, y: 2 }]);
    m.resize(id, 1024, 768);
    const detach = m.attachDisplay(id, { send: () => assert.fail('no frames from a VM that never booted') });
    await waitForState(m, id, 'failed');
    m.input(id, [{ type: 'key', code: 'KeyA', down: true }]);
    m.resize(id, 800, 600);
    detach();
    detach();
  });

  test('maxSandboxes refuses one more while the others are starting, with a message', async () => {
    const m = manager({ maxSandboxes: 1 });
    const first = await m.open({ kind: 'file', path: join(fixtures, 'hello.txt') });
    pidOf(m, first.id);
    await assertRefused(
      m.open({ kind: 'url', url: 'https://example.com/' }),
      /^1 sandboxes are open already; close one first\.$/,
    );
    assert.equal(m.list().length, 1);
    assert.equal(sandboxDirs().length, 1, 'the refused open made no temp dir');
    // A failed sandbox no longer counts against the limit.
    await waitForState(m, first.id, 'failed');
    const second = await m.open({ kind: 'url', url: 'https://example.com/' });
    pidOf(m, second.id);
    assert.equal(m.list().length, 2);
    await waitForState(m, second.id, 'failed');
  });

  test('closeAll closes sandboxes that are still starting: processes ended, dirs removed, list empty', async () => {
    const m = manager();
    const a = await m.open({ kind: 'file', path: join(fixtures, 'hello.txt') });
    const b = await m.open({ kind: 'url', url: 'http://example.org/' });
    const pidA = pidOf(m, a.id);
    const pidB = pidOf(m, b.id);
    assert.notEqual(a.id, b.id);
    assert.equal(sandboxDirs().length, 2);
    const lastLists: (readonly SandboxSummary[])[] = [];
    m.onChange((list) => lastLists.push(list));
    await m.closeAll();
    assert.deepEqual(m.list(), []);
    assert.deepEqual(lastLists.at(-1), []);
    assert.equal(isAlive(pidA), false);
    assert.equal(isAlive(pidB), false);
    assert.deepEqual(sandboxDirs(), []);
    // Each reached `closed` (not `failed`) before being removed.
    const seenStates = new Set(lastLists.flat().map((s) => s.state));
    assert.ok(seenStates.has('closed'), JSON.stringify([...seenStates]));
    await m.closeAll();
  });

  test('a VMM binary that cannot be started fails the sandbox and leaves no temp dir', async () => {
    const m = manager({ execPath: join(fixtures, 'no-such-node') });
    const { id } = await m.open({ kind: 'file', path: join(fixtures, 'hello.txt') });
    const failed = await waitForState(m, id, 'failed');
    assert.match(failed.error ?? '', /the VMM process could not start: .*ENOENT/);
    assert.deepEqual(sandboxDirs(), [], 'the temp dir of a sandbox that never started is removed');
    await m.close(id);
    assert.deepEqual(m.list(), []);
    assert.deepEqual(sandboxDirs(), []);
  });
});
