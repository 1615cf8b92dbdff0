import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONTENT_SECURITY_POLICY, cspWeaknesses, metaCspOf, parseCsp } from '../../electron/app/csp.js';
import {
  hardenApp,
  hardenSession,
  hardenWebContents,
  isAllowedRequest,
  SECURE_WEB_PREFERENCES,
  secureWebPreferences,
  withCspHeader,
  type HardenableContents,
  type HardenableSession,
  type Preventable,
} from '../../electron/app/hardening.js';
import { Listeners } from './electron-fakes.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

class FakeEvent implements Preventable {
  prevented = false;
  preventDefault(): void {
    this.prevented = true;
  }
}

class FakeContents extends Listeners implements HardenableContents {
  windowOpenHandler: ((details: { url: string }) => { action: 'deny' }) | null = null;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void {
    this.windowOpenHandler = handler;
  }
  fire(event: string): FakeEvent {
    const e = new FakeEvent();
    this.emit(event, e, {}, {});
    return e;
  }
}

test('webPreferences: the exact secure values, plus preload and devTools', () => {
  assert.deepEqual(secureWebPreferences('/app/preload.cjs', false), {
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    experimentalFeatures: false,
    webviewTag: false,
    navigateOnDragDrop: false,
    safeDialogs: true,
    spellcheck: false,
    preload: '/app/preload.cjs',
    devTools: false,
  });
  assert.ok(Object.isFrozen(SECURE_WEB_PREFERENCES));
});

test('navigation, redirects, frame navigation and <webview> attachment are prevented', () => {
  const contents = new FakeContents();
  hardenWebContents(contents);
  for (const event of ['will-navigate', 'will-redirect', 'will-frame-navigate', 'will-attach-webview']) {
    assert.equal(contents.count(event), 1, event);
    assert.equal(contents.fire(event).prevented, true, event);
  }
});

test('window.open is denied, whatever the URL', () => {
  const contents = new FakeContents();
  hardenWebContents(contents);
  for (const url of ['https://example.com/', 'file:///etc/passwd', 'about:blank', 'javascript:1']) {
    assert.deepEqual(contents.windowOpenHandler?.({ url }), { action: 'deny' });
  }
});

test('the app enables the sandbox everywhere and hardens every WebContents it creates', () => {
  let sandboxed = false;
  const app = Object.assign(new Listeners(), { enableSandbox: () => (sandboxed = true) });
  hardenApp(app);
  assert.equal(sandboxed, true);
  const contents = new FakeContents();
  app.emit('web-contents-created', {}, contents);
  assert.equal(contents.fire('will-navigate').prevented, true);
  assert.deepEqual(contents.windowOpenHandler?.({ url: 'https://x.example/' }), { action: 'deny' });
});

type BeforeRequest = Parameters<HardenableSession['webRequest']['onBeforeRequest']>[0];
type HeadersReceived = Parameters<HardenableSession['webRequest']['onHeadersReceived']>[0];

class FakeSession extends Listeners implements HardenableSession {
  requestHandler: Parameters<HardenableSession['setPermissionRequestHandler']>[0] | null = null;
  checkHandler: Parameters<HardenableSession['setPermissionCheckHandler']>[0] | null = null;
  deviceHandler: Parameters<HardenableSession['setDevicePermissionHandler']>[0] | null = null;
  beforeRequest: BeforeRequest | null = null;
  headersReceived: HeadersReceived | null = null;
  setPermissionRequestHandler(h: NonNullable<FakeSession['requestHandler']>) {
    this.requestHandler = h;
  }
  setPermissionCheckHandler(h: NonNullable<FakeSession['checkHandler']>) {
    this.checkHandler = h;
  }
  setDevicePermissionHandler(h: NonNullable<FakeSession['deviceHandler']>) {
    this.deviceHandler = h;
  }
  readonly webRequest = {
    onBeforeRequest: (l: BeforeRequest) => {
      this.beforeRequest = l;
    },
    onHeadersReceived: (l: HeadersReceived) => {
      this.headersReceived = l;
    },
  };
}

const PERMISSIONS = ['media', 'geolocation', 'notifications', 'clipboard-read', 'openExternal', 'hid', 'usb', 'serial'];

test('every permission request is answered false, every permission check returns false', () => {
  const session = new FakeSession();
  hardenSession(session, () => {});
  for (const permission of PERMISSIONS) {
    const answers: boolean[] = [];
    session.requestHandler?.({}, permission, (granted) => answers.push(granted));
    assert.deepEqual(answers, [false], permission);
    assert.equal(session.checkHandler?.({}, permission), false, permission);
  }
  assert.equal(session.deviceHandler?.({ deviceType: 'usb' }), false);
});

test('downloads are cancelled', () => {
  const session = new FakeSession();
  hardenSession(session, () => {});
  const event = new FakeEvent();
  session.emit('will-download', event, {}, {});
  assert.equal(event.prevented, true);
});

test('remote content is never loaded: every network request is cancelled, DevTools pages pass', () => {
  const session = new FakeSession();
  const logged: string[] = [];
  hardenSession(session, (m) => logged.push(m));
  const decide = (url: string) => {
    let cancel: boolean | undefined;
    session.beforeRequest?.({ url }, (response) => (cancel = response.cancel));
    return cancel;
  };
  for (const url of ['https://example.com/', 'http://127.0.0.1:8080/', 'ws://localhost/', 'ftp://x/', 'wss://a/']) {
    assert.equal(decide(url), true, url);
    assert.equal(isAllowedRequest(url), false);
  }
  assert.equal(decide('devtools://devtools/bundled/inspector.html'), false);
  assert.equal(logged.length, 5);
});

test('responses that pass through webRequest carry our CSP, replacing any other', () => {
  const session = new FakeSession();
  hardenSession(session, () => {});
  let headers: Record<string, string | string[]> | undefined;
  session.headersReceived?.(
    { responseHeaders: { 'content-security-policy': ['default-src *'], 'Content-Type': ['text/html'] } },
    (response) => (headers = response.responseHeaders),
  );
  assert.deepEqual(headers, {
    'Content-Type': ['text/html'],
    'Content-Security-Policy': [CONTENT_SECURITY_POLICY],
  });
  assert.deepEqual(withCspHeader(undefined), { 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] });
});

test('our CSP is strict: nothing by default, own scripts only, no network, no frames, forms or base', () => {
  assert.deepEqual(cspWeaknesses(CONTENT_SECURITY_POLICY), []);
  const policy = parseCsp(CONTENT_SECURITY_POLICY);
  assert.deepEqual(policy.get('default-src'), ["'none'"]);
  assert.deepEqual(policy.get('script-src'), ["'self'"]);
  assert.deepEqual(policy.get('connect-src'), ["'none'"]);
  assert.deepEqual(policy.get('object-src'), ["'none'"]);
  assert.deepEqual(policy.get('frame-ancestors'), ["'none'"]);
  assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe|https?:|\*/);
});

test('the CSP checker catches weak policies', () => {
  const weak: [string, RegExp][] = [
    ["default-src 'self'", /default-src must be 'none'/],
    ["default-src 'none'; script-src 'self' 'unsafe-inline'", /unsafe-inline/],
    ["default-src 'none'; script-src 'self' 'unsafe-eval'", /unsafe-eval/],
    ["default-src 'none'; script-src https://cdn.example.com", /remote source/],
    ["default-src 'none'; img-src *", /allows \*/],
    ["default-src 'none'; script-src 'self' data:", /script-src allows data:/],
    ["default-src 'none'; connect-src wss://evil.example", /remote source/],
    ["default-src 'none'; object-src 'self'", /object-src must be 'none'/],
    ["default-src 'none'; script-src 'self'", /base-uri must be 'none'/],
  ];
  for (const [policy, problem] of weak) {
    assert.ok(
      cspWeaknesses(policy).some((w) => problem.test(w)),
      `${policy}: ${cspWeaknesses(policy).join(', ')}`,
    );
  }
});

test("the renderer page's own <meta> CSP (what applies to file:// pages) is strict", () => {
  const html = readFileSync(join(ROOT, 'renderer', 'index.html'), 'utf8');
  const policy = metaCspOf(html);
  assert.ok(policy, 'renderer/index.html has a Content-Security-Policy meta tag');
  assert.deepEqual(cspWeaknesses(policy, 'meta'), []);
  assert.ok(cspWeaknesses("default-src 'none'; base-uri 'none'").some((w) => /form-action/.test(w)));
  assert.equal(metaCspOf('<meta charset="utf-8">'), null);
  assert.equal(metaCspOf(`<meta content='default-src x' http-equiv='Content-Security-Policy'>`), 'default-src x');
});

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|js|mjs|cjs)$/.test(name) ? [path] : [];
  });
}

test('the Electron side never opens anything in the host (no shell, no openExternal)', () => {
  const files = sources(join(ROOT, 'electron'));
  assert.ok(files.length > 10);
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    assert.doesNotMatch(text, /openExternal|openPath|showItemInFolder/, file);
    assert.doesNotMatch(text, /\bimport\s*\{[^}]*\bshell\b[^}]*\}\s*from\s*['"]electron['"]/s, file);
  }
});

test('windows load only our own file: no loadURL anywhere, main.ts loads the renderer with loadFile', () => {
  for (const file of sources(join(ROOT, 'electron'))) {
    assert.doesNotMatch(readFileSync(file, 'utf8'), /\.loadURL\s*\(/, file);
  }
  const main = readFileSync(join(ROOT, 'electron', 'main.ts'), 'utf8');
  assert.match(main, /\.loadFile\(RENDERER_INDEX\)/);
  assert.match(main, /webPreferences: secureWebPreferences\(/);
  assert.match(main, /hardenApp\(app\)/);
  assert.match(main, /hardenSession\(session\.defaultSession/);
});

test('the sandboxed preload bundle loads nothing but electron (no Node built-ins, no files)', () => {
  const bundle = readFileSync(join(ROOT, 'dist', 'electron', 'preload.cjs'), 'utf8');
  const required = [...bundle.matchAll(/require\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(required)], ['electron']);
  assert.match(bundle, /exposeInMainWorld\(\s*["']belljar["']/);
});
