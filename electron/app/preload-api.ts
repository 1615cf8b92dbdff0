/**
 * The `window.belljar` object, built over ipcRenderer. Lives apart from
 * preload.ts (which only wires Electron in) so it is tested under plain Node.
 * Bundled into the sandboxed preload: it may import only the contract and
 * ipc-wire, never a Node built-in.
 *
 * Frames: main hands the preload a MessagePort per attached display. The port
 * stays here in the preload's isolated world and the page's listener is
 * called through contextBridge with each frame's ArrayBuffer (contextBridge
 * cannot pass a MessagePort; it copies an ArrayBuffer). See docs/electron.md.
 */
import {
  IPC_CHANNELS,
  type BelljarApi,
  type FrameListener,
  type InputEvent,
  type OpenRequest,
  type SandboxId,
  type SandboxSummary,
} from '../contract/ipc.js';
import { FRAME_ACK, parseDisplayPortAnnouncement, unwrapResult } from './ipc-wire.js';

/** The renderer-side MessagePort, as far as the preload uses it. */
export interface PreloadPort {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  start(): void;
  close(): void;
}

export interface PreloadIpcEvent {
  readonly ports: readonly PreloadPort[];
}

/** ipcRenderer, as far as the preload uses it. */
export interface PreloadIpc {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  send(channel: string, ...args: unknown[]): void;
  on(channel: string, listener: (event: PreloadIpcEvent, ...args: unknown[]) => void): unknown;
}

interface Attachment {
  readonly id: SandboxId;
  readonly listener: FrameListener;
  port: PreloadPort | null;
  detached: boolean;
}

export function createBelljarApi(ipc: PreloadIpc, log: (message: string) => void = () => {}): BelljarApi {
  const call = async (channel: string, ...args: unknown[]) => unwrapResult(await ipc.invoke(channel, ...args));

  // The sandbox list: one IPC listener for all subscribers; the newest list is kept.
  const listListeners = new Set<(list: readonly SandboxSummary[]) => void>();
  let pushes = 0;
  let latest: readonly SandboxSummary[] | null = null;
  ipc.on(IPC_CHANNELS.sandboxes, (_event, list) => {
    if (!Array.isArray(list)) return;
    pushes++;
    latest = list as readonly SandboxSummary[];
    for (const listener of [...listListeners]) listener(latest);
  });

  // Displays: attachments waiting for (or holding) their port, by the key sent with the request.
  const attachments = new Map<number, Attachment>();
  let nextKey = 1;
  ipc.on(IPC_CHANNELS.displayPort, (event, data) => {
    const port = event.ports[0];
    const announcement = parseDisplayPortAnnouncement(data);
    const attachment = announcement ? attachments.get(announcement.key) : undefined;
    if (!port) return;
    if (!announcement || !attachment || attachment.id !== announcement.id || attachment.detached || attachment.port) {
      port.close();
      return;
    }
    attachment.port = port;
    port.addEventListener('message', ({ data: frame }) => {
      if (attachment.detached || !(frame instanceof ArrayBuffer)) return;
      try {
        attachment.listener(frame);
      } catch (error) {
        log(`display listener failed: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        // Acknowledged when the listener returns (the contract's FrameListener rule), even if it threw.
        if (!attachment.detached) port.postMessage(FRAME_ACK);
      }
    });
    port.start();
  });

  return {
    listSandboxes: () => call(IPC_CHANNELS.listSandboxes) as Promise<readonly SandboxSummary[]>,
    open: (request: OpenRequest) => call(IPC_CHANNELS.open, request) as Promise<SandboxSummary>,
    pickAndOpenFile: () => call(IPC_CHANNELS.pickAndOpenFile) as Promise<SandboxSummary | null>,
    close: async (id: SandboxId) => {
      await call(IPC_CHANNELS.close, id);
    },
    sendInput: (id: SandboxId, events: readonly InputEvent[]) => ipc.send(IPC_CHANNELS.input, id, events),
    resize: (id: SandboxId, width: number, height: number) => ipc.send(IPC_CHANNELS.resize, id, width, height),

    onSandboxes(listener) {
      listListeners.add(listener);
      // "Once at once": the newest pushed list, else a fresh one — unless a push overtakes it.
      if (latest) {
        const list = latest;
        queueMicrotask(() => {
          if (listListeners.has(listener)) listener(list);
        });
      } else {
        const pushesBefore = pushes;
        call(IPC_CHANNELS.listSandboxes).then(
          (list) => {
            if (pushes === pushesBefore && listListeners.has(listener)) listener(list as readonly SandboxSummary[]);
          },
          (error: unknown) => log(`listSandboxes failed: ${error instanceof Error ? error.message : String(error)}`),
        );
      }
      return () => {
        listListeners.delete(listener);
      };
    },

    attachDisplay(id, listener) {
      const key = nextKey++;
      const attachment: Attachment = { id, listener, port: null, detached: false };
      attachments.set(key, attachment);
      const detach = () => {
        if (attachment.detached) return;
        attachment.detached = true;
        attachments.delete(key);
        // Closing our end tells main (MessagePortMain 'close') to detach the display.
        attachment.port?.close();
      };
      call(IPC_CHANNELS.attachDisplay, id, key).catch((error: unknown) => {
        log(`attachDisplay(${id}) failed: ${error instanceof Error ? error.message : String(error)}`);
        detach();
      });
      return detach;
    },
  };
}
