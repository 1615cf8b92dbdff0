import type { BelljarApi } from '../../../electron/contract/ipc.js';
import { BRIDGE_WS_PATH } from '../../../electron/contract/bridge-protocol.js';
import { createWsClient } from './ws-client.js';

export type TransportKind = 'preload' | 'websocket';

/**
 * The preload's `window.belljar` when Electron provides one; otherwise the
 * page was served by the test bridge, which speaks the same API over a
 * WebSocket on the page's own host.
 */
export function selectApi(onConnectionLost: (message: string) => void): { api: BelljarApi; kind: TransportKind } {
  if (window.belljar) return { api: window.belljar, kind: 'preload' };
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${BRIDGE_WS_PATH}`;
  return { api: createWsClient(url, { onConnectionLost }), kind: 'websocket' };
}
