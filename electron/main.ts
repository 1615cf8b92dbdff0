/**
 * Electron main process: owns the app window now, and the sandboxes (one VMM
 * child process each) as they arrive. Windows are hardened: context
 * isolation, sandboxed renderer, no Node integration, no navigation, no new
 * windows, every permission request denied.
 */
import { app, BrowserWindow, ipcMain, session } from 'electron';
import { fileURLToPath } from 'node:url';
import { IPC_CHANNELS, type SandboxSummary } from './contract/ipc.js';

const RENDERER_INDEX = fileURLToPath(new URL('../renderer/index.html', import.meta.url));
const PRELOAD = fileURLToPath(new URL('./preload.cjs', import.meta.url));

function createWindow(): BrowserWindow {
  const window = new BrowserWindow({
    width: 1280,
    height: 860,
    title: 'Belljar',
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
    },
  });
  window.webContents.on('will-navigate', (event) => event.preventDefault());
  window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  void window.loadFile(RENDERER_INDEX);
  return window;
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => BrowserWindow.getAllWindows()[0]?.focus());
  void app.whenReady().then(() => {
    session.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
    ipcMain.handle(IPC_CHANNELS.listSandboxes, (): SandboxSummary[] => []);
    createWindow();
  });
  app.on('window-all-closed', () => app.quit());
}
