/**
 * `BelljarApi` over the test bridge's WebSocket (electron/contract/bridge-protocol.ts):
 * JSON calls answered by id, `sandboxes` events, binary frame messages that
 * are acknowledged once the display's listener has drawn them. No reconnect:
 * when the socket closes, pending calls reject and `onConnectionLost` says so.
 */
import type {
  BelljarApi,
  FrameListener,
  InputEvent,
  OpenRequest,
  SandboxId,
  SandboxSummary,
} from '../../../electron/contract/ipc.js';
import {
  BRIDGE_MAX_TEXT_BYTES,
  unpackBridgeFrame,
  type BridgeCall,
  type BridgeFrameAck,
  type BridgeMethod,
} from '../../../electron/contract/bridge-protocol.js';

export interface WsClientOptions {
  /** Called once, in plain words, when the connection closes or cannot be made. */
  onConnectionLost(message: string): void;
  /** Fire-and-forget calls (input, resize, attach) that failed; default: ignored. */
  onCallError?(method: BridgeMethod, message: string): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export function createWsClient(url: string, options: WsClientOptions): BelljarApi {
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  /** Messages sent before the socket opened, in order. */
  const queued: string[] = [];
  const pending = new Map<number, Pending>();
  const listListeners = new Set<(list: readonly SandboxSummary[]) => void>();
  const displays = new Map<SandboxId, Set<FrameListener>>();
  let latestList: readonly SandboxSummary[] | null = null;
  let nextId = 1;
  let lost: string | null = null;

  const send = (message: BridgeCall | BridgeFrameAck): void => {
    const text = JSON.stringify(message);
    if (socket.readyState === WebSocket.CONNECTING) queued.push(text);
    else if (socket.readyState === WebSocket.OPEN) socket.send(text);
  };

  const call = (method: BridgeMethod, params: readonly unknown[]): Promise<unknown> =>
    new Promise((resolve, reject) => {
      if (lost !== null) {
        reject(new Error(lost));
        return;
      }
      const id = nextId++;
      const message: BridgeCall = { id, method, params };
      if (JSON.stringify(message).length > BRIDGE_MAX_TEXT_BYTES) {
        reject(new Error('The request is too large.'));
        return;
      }
      pending.set(id, { resolve, reject });
      send(message);
    });

  /** A call whose answer nobody waits for; failures go to onCallError. */
  const fire = (method: BridgeMethod, params: readonly unknown[]): void => {
    call(method, params).catch((error: unknown) => {
      options.onCallError?.(method, error instanceof Error ? error.message : String(error));
    });
  };

  const deliverList = (list: readonly SandboxSummary[]): void => {
    latestList = list;
    for (const listener of listListeners) listener(list);
  };

  const onText = (text: string): void => {
    if (text.length > BRIDGE_MAX_TEXT_BYTES * 16) return; // a list this large is nonsense
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof message !== 'object' || message === null) return;
    const m = message as Record<string, unknown>;
    if (m['event'] === 'sandboxes' && Array.isArray(m['list'])) {
      deliverList(m['list'] as readonly SandboxSummary[]);
      return;
    }
    if (typeof m['id'] !== 'number') return;
    const waiting = pending.get(m['id']);
    if (!waiting) return;
    pending.delete(m['id']);
    if ('error' in m) waiting.reject(new Error(String(m['error'])));
    else waiting.resolve(m['result']);
  };

  const onFrame = (data: ArrayBuffer): void => {
    let unpacked: { sandboxId: string; frame: ArrayBuffer };
    try {
      unpacked = unpackBridgeFrame(data);
    } catch {
      return;
    }
    for (const listener of displays.get(unpacked.sandboxId) ?? []) {
      try {
        listener(unpacked.frame);
      } catch {
        // A listener's failure must not stall the display's flow control.
      }
    }
    // Acknowledge after drawing, even with no listener left, so the bridge never waits forever.
    send({ method: 'frameAck', params: [unpacked.sandboxId] });
  };

  socket.addEventListener('open', () => {
    for (const text of queued.splice(0)) socket.send(text);
  });
  socket.addEventListener('message', (event: MessageEvent<unknown>) => {
    if (typeof event.data === 'string') onText(event.data);
    else if (event.data instanceof ArrayBuffer) onFrame(event.data);
  });
  socket.addEventListener('close', (event) => {
    lost =
      event.code === 1000
        ? 'The connection to the Belljar service was closed.'
        : `Lost the connection to the Belljar service (code ${event.code}). Restart Belljar to continue.`;
    for (const waiting of pending.values()) waiting.reject(new Error(lost));
    pending.clear();
    options.onConnectionLost(lost);
  });

  return {
    listSandboxes: () => call('listSandboxes', []) as Promise<readonly SandboxSummary[]>,
    open: (request: OpenRequest) => call('open', [request]) as Promise<SandboxSummary>,
    pickAndOpenFile: () => call('pickAndOpenFile', []) as Promise<SandboxSummary | null>,
    close: async (id: SandboxId) => {
      await call('close', [id]);
    },
    sendInput: (id: SandboxId, events: readonly InputEvent[]) => fire('input', [id, events]),
    resize: (id: SandboxId, width: number, height: number) => fire('resize', [id, width, height]),
    onSandboxes(listener) {
      listListeners.add(listener);
      // "Called once at once": with the latest list, or with a fresh one.
      if (latestList) {
        const list = latestList;
        queueMicrotask(() => {
          if (listListeners.has(listener)) listener(list);
        });
      } else {
        call('listSandboxes', [])
          .then((list) => {
            if (listListeners.has(listener) && latestList === null) deliverList(list as readonly SandboxSummary[]);
          })
          .catch(() => undefined); // a lost connection is reported by onConnectionLost
      }
      return () => listListeners.delete(listener);
    },
    attachDisplay(id, listener) {
      let set = displays.get(id);
      if (!set) {
        set = new Set();
        displays.set(id, set);
        fire('attachDisplay', [id]);
      }
      set.add(listener);
      return () => {
        const current = displays.get(id);
        if (!current?.delete(listener) || current.size > 0) return;
        displays.delete(id);
        fire('detachDisplay', [id]);
      };
    },
  };
}
