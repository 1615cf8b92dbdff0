import { createContext, useContext } from 'react';
import type { BelljarApi } from '../../electron/contract/ipc.js';

/** The transport chosen at start-up (preload or WebSocket), for every component. */
export const ApiContext = createContext<BelljarApi | null>(null);

export function useApi(): BelljarApi {
  const api = useContext(ApiContext);
  if (!api) throw new Error('renderer: no BelljarApi provided');
  return api;
}
