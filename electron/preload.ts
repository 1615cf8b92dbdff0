// Preload: exposes the small `window.belljar` API and nothing else. Bundled
// to CommonJS (dist/electron/preload.cjs): sandboxed preloads cannot be ES
// modules or load files of their own.
import { contextBridge, ipcRenderer } from 'electron';
import { IPC_CHANNELS, type BelljarApi, type SandboxSummary } from './contract/ipc.js';

const api: BelljarApi = {
  listSandboxes: () => ipcRenderer.invoke(IPC_CHANNELS.listSandboxes) as Promise<readonly SandboxSummary[]>,
};

contextBridge.exposeInMainWorld('belljar', api);
