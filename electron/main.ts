/**
 * Electron main process: the composition root. It wires Electron's objects
 * into the modules under app/ (each tested without Electron) and the session
 * service (one VMM child process per sandbox). See docs/electron.md.
 */
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  MessageChannelMain,
  session,
  type IpcMainEvent,
  type IpcMainInvokeEvent,
  type MessagePortMain,
} from 'electron';
import { fileURLToPath } from 'node:url';
import { DisplayPorts } from './app/display-ports.js';
import { hardenApp, hardenSession, secureWebPreferences } from './app/hardening.js';
import { broadcastSandboxes, registerIpcHandlers } from './app/ipc-handlers.js';
import { parseLaunchItems } from './app/launch-items.js';
import { openLaunchItems } from './app/launch-open.js';
import { closeSandboxesWithWindow, installQuitGate, quitOnSignals } from './app/lifecycle.js';
import { TrustedWindows } from './app/sender.js';
import { claimSingleInstance, type LaunchData } from './app/single-instance.js';
import { SessionManager } from './sessions/session-manager.js';

const RENDERER_INDEX = fileURLToPath(new URL('../renderer/index.html', import.meta.url));
const PRELOAD = fileURLToPath(new URL('./preload.cjs', import.meta.url));
/** Renderer crashes in a row after which the window stays down instead of reloading. */
const MAX_RENDERER_RELOADS = 3;

const log = (message: string) => console.error(`belljar: ${message}`);
const launchOptions = (cwd: string) => ({ cwd, defaultApp: process.defaultApp === true });

/** The running app: sessions, IPC, the window. Returns what to do with a launch's items. */
function startPrimary(): (launch: LaunchData) => void {
  const sessions = new SessionManager();
  const trusted = new TrustedWindows(RENDERER_INDEX);
  const displays = new DisplayPorts<MessagePortMain>(sessions, () => new MessageChannelMain());
  const gate = installQuitGate(app, sessions, log);
  quitOnSignals(process, app);
  let window: BrowserWindow | null = null;

  registerIpcHandlers<IpcMainEvent | IpcMainInvokeEvent>(ipcMain, {
    sessions,
    log,
    isTrustedSender: (event) => trusted.isTrustedSender(event),
    attachDisplay: (event, id, key) => displays.attach(event.sender, id, key),
    async pickFile(event) {
      const owner = BrowserWindow.fromWebContents(event.sender);
      const options = { title: 'Open in a sandbox', properties: ['openFile' as const] };
      const choice = owner ? await dialog.showOpenDialog(owner, options) : await dialog.showOpenDialog(options);
      return choice.canceled ? null : (choice.filePaths[0] ?? null);
    },
  });
  broadcastSandboxes(sessions, () => trusted.list());

  const createWindow = (): BrowserWindow => {
    const created = new BrowserWindow({
      width: 1280,
      height: 860,
      minWidth: 640,
      minHeight: 480,
      title: 'Belljar',
      show: false,
      webPreferences: secureWebPreferences(PRELOAD, !app.isPackaged),
    });
    trusted.add(created.webContents);
    closeSandboxesWithWindow(created, sessions, log);
    created.once('ready-to-show', () => created.show());
    created.on('closed', () => {
      if (window === created) window = null;
    });
    let reloads = 0;
    created.webContents.on('render-process-gone', (_event, details) => {
      log(`the window's renderer is gone (${details.reason})`);
      if (details.reason !== 'clean-exit' && reloads++ < MAX_RENDERER_RELOADS) void created.loadFile(RENDERER_INDEX);
    });
    // Only ever our own file: remote content is never loaded into the window.
    void created.loadFile(RENDERER_INDEX);
    return created;
  };

  const ready = app.whenReady().then(() => {
    hardenSession(session.defaultSession, log);
    window = createWindow();
  });
  app.on('window-all-closed', () => app.quit());

  const showProblems = (problems: readonly string[]) => {
    const options = {
      type: 'warning' as const,
      title: 'Belljar',
      message: problems.length === 1 ? 'One item was not opened.' : `${problems.length} items were not opened.`,
      detail: problems.slice(0, 20).join('\n'),
    };
    void (window ? dialog.showMessageBox(window, options) : dialog.showMessageBox(options));
  };

  return (launch) => {
    void ready.then(async () => {
      if (gate.quitting) return;
      if (window) {
        if (window.isMinimized()) window.restore();
        window.focus();
      }
      const items = parseLaunchItems(launch.argv, launchOptions(launch.cwd));
      const outcome = await openLaunchItems(items, (request) => sessions.open(request));
      for (const problem of outcome.problems) log(`not opened: ${problem}`);
      if (outcome.problems.length > 0) showProblems(outcome.problems);
    });
  };
}

hardenApp(app);
const own: LaunchData = { argv: process.argv, cwd: process.cwd() };
let handleLaunch: (launch: LaunchData) => void = () => {};
if (claimSingleInstance(app, own, (launch) => handleLaunch(launch))) {
  handleLaunch = startPrimary();
  handleLaunch(own);
} else {
  // A second launch: the running app opens the items; say here, in our terminal, what it will refuse.
  for (const item of parseLaunchItems(own.argv, launchOptions(own.cwd)).refused) {
    log(`not opened: ${item.argument}: ${item.reason}`);
  }
  app.quit();
}
