/**
 * Electron hardening, as installers over small interfaces so each can be
 * tested with fake objects (the Electron binary is not needed to test them).
 * The list, and where each item is tested, is in docs/electron.md.
 */
import { CONTENT_SECURITY_POLICY } from './csp.js';

/** The webPreferences every Belljar window gets, apart from `preload` and `devTools`. */
export const SECURE_WEB_PREFERENCES = Object.freeze({
  /** The preload runs in its own JavaScript world; the page sees only `window.belljar`. */
  contextIsolation: true,
  /** The renderer runs in Chromium's OS-level sandbox. */
  sandbox: true,
  nodeIntegration: false,
  nodeIntegrationInWorker: false,
  nodeIntegrationInSubFrames: false,
  webSecurity: true,
  allowRunningInsecureContent: false,
  experimentalFeatures: false,
  webviewTag: false,
  /** Dropping a file on the window must not navigate it to that file. */
  navigateOnDragDrop: false,
  safeDialogs: true,
  spellcheck: false,
});

export type SecureWebPreferences = typeof SECURE_WEB_PREFERENCES & {
  readonly preload: string;
  readonly devTools: boolean;
};

export function secureWebPreferences(preload: string, devTools: boolean): SecureWebPreferences {
  return { ...SECURE_WEB_PREFERENCES, preload, devTools };
}

export interface Preventable {
  preventDefault(): void;
}

/** The part of a WebContents that hardening touches. */
export interface HardenableContents {
  on(
    event: 'will-navigate' | 'will-redirect' | 'will-frame-navigate' | 'will-attach-webview',
    listener: (event: Preventable) => void,
  ): unknown;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void;
}

/**
 * The page never leaves our renderer: no navigation or redirect (of the page
 * or any frame), no new windows, no <webview>. Applied to every WebContents
 * the app creates (`web-contents-created`), not only to our window.
 */
export function hardenWebContents(contents: HardenableContents): void {
  const block = (event: Preventable) => event.preventDefault();
  contents.on('will-navigate', block);
  contents.on('will-redirect', block);
  contents.on('will-frame-navigate', block);
  contents.on('will-attach-webview', block);
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
}

/** The part of a Session that hardening touches. */
export interface HardenableSession {
  setPermissionRequestHandler(
    handler: (contents: unknown, permission: string, callback: (granted: boolean) => void) => void,
  ): void;
  setPermissionCheckHandler(handler: (contents: unknown, permission: string) => boolean): void;
  setDevicePermissionHandler(handler: (details: unknown) => boolean): void;
  on(event: 'will-download', listener: (event: Preventable) => void): unknown;
  readonly webRequest: {
    onBeforeRequest(
      listener: (details: { url: string }, callback: (response: { cancel: boolean }) => void) => void,
    ): void;
    onHeadersReceived(
      listener: (
        details: { responseHeaders?: Record<string, string | string[]> },
        callback: (response: { responseHeaders: Record<string, string | string[]> }) => void,
      ) => void,
    ): void;
  };
}

/**
 * Which requests the UI's session may make. None over the network: the UI
 * gets everything over IPC. Only DevTools' own pages pass. (file:// loads do
 * not pass through webRequest at all; Electron issue #22370.)
 */
export function isAllowedRequest(url: string): boolean {
  return url.startsWith('devtools://');
}

/** The response headers with our CSP in place of any the response brought. */
export function withCspHeader(
  headers: Record<string, string | string[]> | undefined,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() !== 'content-security-policy') out[name] = value;
  }
  out['Content-Security-Policy'] = [CONTENT_SECURITY_POLICY];
  return out;
}

export function hardenSession(session: HardenableSession, log: (message: string) => void): void {
  // Every permission (camera, notifications, clipboard, HID, …) is denied, asked or checked.
  session.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  session.setPermissionCheckHandler(() => false);
  session.setDevicePermissionHandler(() => false);
  session.on('will-download', (event) => event.preventDefault());
  session.webRequest.onBeforeRequest((details, callback) => {
    const allowed = isAllowedRequest(details.url);
    if (!allowed) log(`blocked a request to ${details.url.slice(0, 200)}`);
    callback({ cancel: !allowed });
  });
  session.webRequest.onHeadersReceived((details, callback) => {
    callback({ responseHeaders: withCspHeader(details.responseHeaders) });
  });
}

/** The part of `app` that hardening touches. */
export interface HardenableApp {
  enableSandbox(): void;
  on(event: 'web-contents-created', listener: (event: unknown, contents: HardenableContents) => void): unknown;
}

/** Before `ready`: every renderer sandboxed, every WebContents hardened as it is created. */
export function hardenApp(app: HardenableApp): void {
  app.enableSandbox();
  app.on('web-contents-created', (_event, contents) => hardenWebContents(contents));
}
