// Preload: exposes the small `window.belljar` API and nothing else. Bundled
// to CommonJS (dist/electron/preload.cjs): sandboxed preloads cannot be ES
// modules or load files of their own. The API itself is in app/preload-api.ts.
import { contextBridge, ipcRenderer } from 'electron';
import { createBelljarApi } from './app/preload-api.js';

contextBridge.exposeInMainWorld(
  'belljar',
  createBelljarApi(ipcRenderer, (message) => console.warn(`belljar: ${message}`)),
);
