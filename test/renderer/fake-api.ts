/**
 * A fake `window.belljar` for the renderer tests, installed with
 * `page.addInitScript(installFakeBelljar, init)` before the app's script
 * runs. It records every call and lets the test drive the app: replace the
 * sandbox list, replay a recorded frame stream into an attached display, make
 * `open` reject. `installFakeBelljar` is serialized into the page, so it must
 * not use anything from this module's scope (types are fine: they vanish).
 */
import type { BelljarApi, FrameListener, OpenRequest, SandboxSummary } from '../../electron/contract/ipc.js';

export interface FakeInit {
  readonly sandboxes: readonly SandboxSummary[];
  /** `pickAndOpenFile` resolves to null (the user cancelled the dialog). */
  readonly pickCancels?: boolean;
}

export interface FakeCall {
  readonly method: string;
  readonly args: readonly unknown[];
}

/** What tests reach in the page as `globalThis.__belljarFake`. */
export interface FakeControl {
  readonly calls: FakeCall[];
  setSandboxes(list: readonly SandboxSummary[]): void;
  /** Replays base64-encoded frames into the display's listeners; returns how many listener calls returned. */
  play(id: string, base64Frames: readonly string[]): number;
  displayListeners(id: string): number;
  /** The next `open` calls reject with this message (null: they succeed). */
  setOpenError(message: string | null): void;
}

export interface FakeGlobals {
  __belljarFake: FakeControl;
  belljar: BelljarApi;
}

export function installFakeBelljar(init: FakeInit): void {
  const g = globalThis as unknown as FakeGlobals;
  const calls: FakeCall[] = [];
  const listListeners = new Set<(list: readonly SandboxSummary[]) => void>();
  const displays = new Map<string, Set<FrameListener>>();
  let list: readonly SandboxSummary[] = init.sandboxes;
  let openError: string | null = null;
  let opened = 0;

  // Arguments are copied as JSON so later mutation by the app cannot rewrite history.
  const record = (method: string, args: readonly unknown[]) =>
    calls.push({ method, args: JSON.parse(JSON.stringify(args)) as unknown[] });
  const emit = () => {
    for (const listener of listListeners) listener(list);
  };
  const summary = (request: OpenRequest): SandboxSummary => {
    opened += 1;
    const title = request.kind === 'url' ? new URL(request.url).host : (request.path.split('/').pop() ?? 'file');
    return {
      id: `opened-${opened}`,
      title,
      item: request.kind === 'url' ? { kind: 'url', url: request.url } : { kind: 'file', name: title },
      state: 'starting',
      stage: 'preparing',
      openedAt: Date.now(),
      memoryMiB: 256,
      network: request.kind === 'url' ? 'web' : 'none',
    };
  };
  const start = (request: OpenRequest): SandboxSummary => {
    const s = summary(request);
    list = [...list, s];
    setTimeout(emit, 0);
    return s;
  };

  const api: BelljarApi = {
    listSandboxes: async () => {
      record('listSandboxes', []);
      return list;
    },
    open: async (request) => {
      record('open', [request]);
      if (openError !== null) throw new Error(openError);
      return start(request);
    },
    pickAndOpenFile: async () => {
      record('pickAndOpenFile', []);
      return init.pickCancels ? null : start({ kind: 'file', path: '/home/user/Downloads/invoice.pdf' });
    },
    close: async (id) => {
      record('close', [id]);
      list = list.filter((s) => s.id !== id);
      setTimeout(emit, 0);
    },
    sendInput: (id, events) => record('sendInput', [id, events]),
    resize: (id, width, height) => record('resize', [id, width, height]),
    onSandboxes: (listener) => {
      listListeners.add(listener);
      queueMicrotask(() => listener(list));
      return () => listListeners.delete(listener);
    },
    attachDisplay: (id, listener) => {
      record('attachDisplay', [id]);
      const set = displays.get(id) ?? new Set<FrameListener>();
      displays.set(id, set);
      set.add(listener);
      return () => {
        record('detachDisplay', [id]);
        set.delete(listener);
      };
    },
  };

  g.belljar = api;
  g.__belljarFake = {
    calls,
    setSandboxes(next) {
      list = next;
      emit();
    },
    play(id, base64Frames) {
      let delivered = 0;
      for (const text of base64Frames) {
        const binary = atob(text);
        const bytes = new Uint8Array(binary.length);
        for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
        for (const listener of displays.get(id) ?? []) {
          listener(bytes.buffer);
          delivered += 1;
        }
      }
      return delivered;
    },
    displayListeners: (id) => displays.get(id)?.size ?? 0,
    setOpenError(message) {
      openError = message;
    },
  };
}
