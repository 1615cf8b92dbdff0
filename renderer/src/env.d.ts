/// <reference types="vite/client" />
import type { BelljarApi } from '../../electron/contract/ipc.js';

declare global {
  interface Window {
    /** Present in Electron (the preload exposes it); absent when served by the test bridge. */
    readonly belljar?: BelljarApi;
  }
}
